"""LLM registry (SPEC F3): one YAML per `llm_tag` in `configs/llms/`.

    >>> from rjepa_core.llm.registry import load_registry, DEFAULT_LLM_TAG
    >>> spec = load_registry()[DEFAULT_LLM_TAG]
    >>> spec.source, spec.hidden_size, spec.layer_idx
    ('embedded:smollm2', 576, 14)

Adding a student is adding a YAML file; the Dagster sensor turns each tag into a partition.

A base model (no instruction tuning) needs worked examples before it writes "Step k:" lines: its entry
can carry them (`few_shot:`, shown when the dataset version brings none of its own) and force the plain
prompt (`prompt_format: plain`) even when its tokenizer ships a chat template:

    >>> gemma = load_registry()["gemma3-270m"]
    >>> gemma.prompt_format, len(gemma.examples())
    ('plain', 3)
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_LLM_TAG = "smollm2-135m"
DTYPES = ("auto", "float32", "bfloat16", "float16")
QUANTIZATIONS = ("awq", "gptq", "bnb-4bit", "bnb-8bit")
KINDS = ("causal", "encoder")
QUESTION_POOLINGS = ("token", "span")  # how a chain's question latent is taken (see llm.extraction)
POOLINGS = ("mean", "last", "mean_last")  # how a step's token states become its latent (see llm.extraction)
EMBEDDED_SOURCES = ("embedded:smollm2", "embedded:minilm", "embedded:gemma3")
PROMPT_FORMATS = ("auto", "plain", "chat")  # see llm.prompting.render
_STEP_PREFIX = re.compile(r"\s*step\s*\d+\s*:", re.IGNORECASE)  # the prompt adds "Step k:" itself


@dataclass
class LLMSpec:
    llm_tag: str  # name of the student; partition key of the per-LLM latents
    source: str  # HF hub id, local folder, path to a .gguf file, or "embedded:smollm2" / "embedded:minilm"
    gguf_file: str | None = None  # GGUF file name inside `source` when source is a folder or hub id
    layer_idx: int = -2  # decoder layer whose output is pooled; negative counts from the end (-1 = last)
    pooling: str = "mean"  # per step: mean of its tokens | last token | mean_last (both, twice the width)
    # the chain's question latent: "token" = the state just before the first step, "span" = pooled (like a
    # step) over the question's own tokens in the prompt
    question_pooling: str = "token"
    dtype: str = "auto"  # auto (bf16 on CUDA, fp32 elsewhere) | float32 | bfloat16 | float16
    batch_size: int = 8  # chains per forward pass for extraction and generation
    hidden_size: int | None = None  # declared latent width, checked against the model on load
    max_length: int = 1024  # longest prompt + chain (tokens) accepted for extraction
    quantization: str | None = None  # awq | gptq | bnb-4bit | bnb-8bit | None
    kind: str = "causal"  # "causal" LM, or "encoder" (BERT-like, latent source only, cannot generate)
    # student chains' step latents are recorded while they are sampled (no second forward, llm.capture);
    # false = teacher-forced extraction of every chain, as for gold and external ones
    latents_from_sampling: bool = True
    # clamp the hooked layer's per-token states to ±latent_clip before pooling (and before the float16 copy of
    # capture): Gemma-3's residual stream has a massive-activation channel beyond float16's range (inf latents)
    latent_clip: float | None = None
    # auto = chat turns when the tokenizer has a chat template, else plain text | plain | chat (llm.prompting)
    prompt_format: str = "auto"
    # worked examples [{statement, steps: [..], answer}] shown before every problem when the dataset version
    # has none of its own (`few_shot: N` in its config wins): a base model needs them to follow the format
    few_shot: list[dict[str, Any]] = field(default_factory=list)
    description: str = ""  # free text shown in the UI

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, where: str = "LLMSpec") -> None:
        def bad(field: str, msg: str) -> ValueError:
            return ValueError(f"{where}: field {field!r} {msg}")

        if not isinstance(self.llm_tag, str) or not self.llm_tag.strip():
            raise bad("llm_tag", "must be a non-empty string")
        if any(c in self.llm_tag for c in "/\\| "):
            raise bad("llm_tag", f"{self.llm_tag!r} must not contain '/', '\\', '|' or spaces (it names folders)")
        if not isinstance(self.source, str) or not self.source.strip():
            raise bad("source", "must be a hub id, a local folder, a .gguf path or embedded:smollm2")
        if self.source.startswith("embedded:") and self.source not in EMBEDDED_SOURCES:
            raise bad("source", f"{self.source!r} is not one of {EMBEDDED_SOURCES}")
        if not isinstance(self.layer_idx, int) or isinstance(self.layer_idx, bool):
            raise bad("layer_idx", f"must be an integer, got {self.layer_idx!r}")
        if self.pooling not in POOLINGS:
            raise bad("pooling", f"is {self.pooling!r}; use one of {POOLINGS}")
        if self.question_pooling not in QUESTION_POOLINGS:
            raise bad("question_pooling", f"is {self.question_pooling!r}; use one of {QUESTION_POOLINGS}")
        if self.dtype not in DTYPES:
            raise bad("dtype", f"is {self.dtype!r}; use one of {DTYPES}")
        for name in ("batch_size", "max_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise bad(name, f"must be a positive integer, got {value!r}")
        if self.hidden_size is not None and (not isinstance(self.hidden_size, int) or self.hidden_size < 1):
            raise bad("hidden_size", f"must be a positive integer or null, got {self.hidden_size!r}")
        if self.quantization is not None and self.quantization not in QUANTIZATIONS:
            raise bad("quantization", f"is {self.quantization!r}; use one of {QUANTIZATIONS} or null")
        if self.kind not in KINDS:
            raise bad("kind", f"is {self.kind!r}; use one of {KINDS}")
        if not isinstance(self.latents_from_sampling, bool):
            raise bad("latents_from_sampling", f"must be true or false, got {self.latents_from_sampling!r}")
        if self.latent_clip is not None and (
            not isinstance(self.latent_clip, int | float) or isinstance(self.latent_clip, bool) or self.latent_clip <= 0
        ):
            raise bad("latent_clip", f"must be a positive number or null, got {self.latent_clip!r}")
        if self.prompt_format not in PROMPT_FORMATS:
            raise bad("prompt_format", f"is {self.prompt_format!r}; use one of {PROMPT_FORMATS}")
        if not isinstance(self.few_shot, list):
            raise bad("few_shot", f"must be a list of {{statement, steps, answer}} mappings, got {self.few_shot!r}")
        for i, ex in enumerate(self.few_shot):
            steps = ex.get("steps") if isinstance(ex, dict) else None
            if (
                not isinstance(ex, dict)
                or set(ex) - {"statement", "steps", "answer"}
                or not isinstance(ex.get("statement"), str)
                or not ex["statement"].strip()
                or not isinstance(steps, list)
                or not steps
                or not all(isinstance(t, str | int | float) and str(t).strip() for t in steps)
                or any(_STEP_PREFIX.match(str(t)) for t in steps)
                or not isinstance(ex.get("answer"), str | int | float)
            ):
                raise bad(
                    "few_shot",
                    f"item {i} is {ex!r}; each example needs exactly `statement` (text), `steps` (a non-empty "
                    "list of step texts, without the 'Step k:' prefix) and `answer`",
                )

    def examples(self) -> list:
        """The entry's worked examples as `llm.prompting.Example`s (empty when it has none)."""
        from rjepa_core.llm.prompting import Example

        return [Example.from_dict(e) for e in self.few_shot]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_spec(path: str | Path) -> LLMSpec:
    """Read and validate one registry YAML; errors name the file and the field."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of LLMSpec fields, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(LLMSpec)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{path}: unknown field(s) {unknown}; allowed fields are {sorted(known)}")
    for required in ("llm_tag", "source"):
        if required not in data:
            raise ValueError(f"{path}: field {required!r} is required")
    spec = LLMSpec.__new__(LLMSpec)
    for f in dataclasses.fields(LLMSpec):
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = f.default if f.default is not dataclasses.MISSING else None
        setattr(spec, f.name, data.get(f.name, default))
    spec.validate(where=str(path))
    return spec


def default_registry_dir() -> Path:
    """`$RJEPA_LLM_REGISTRY`, else ./configs/llms, else the repository's configs/llms."""
    env = os.environ.get("RJEPA_LLM_REGISTRY")
    if env:
        return Path(env)
    local = Path("configs/llms")
    if local.is_dir():
        return local
    return Path(__file__).resolve().parents[2] / "configs" / "llms"


def load_registry(directory: str | Path = "configs/llms") -> dict[str, LLMSpec]:
    """All specs of a registry folder, keyed by llm_tag (a relative default falls back to the repo's)."""
    directory = Path(directory)
    if not directory.is_dir() and not directory.is_absolute() and str(directory) == "configs/llms":
        directory = default_registry_dir()
    if not directory.is_dir():
        raise FileNotFoundError(f"LLM registry folder {directory} does not exist")
    specs: dict[str, LLMSpec] = {}
    for path in sorted(directory.glob("*.y*ml")):
        spec = load_spec(path)
        if spec.llm_tag in specs:
            raise ValueError(f"{path}: llm_tag {spec.llm_tag!r} is already defined by another file in {directory}")
        specs[spec.llm_tag] = spec
    return specs


def resolve_spec(spec_or_name: LLMSpec | str, directory: str | Path | None = None) -> LLMSpec:
    """A spec from a registry tag, a YAML path, or a source (hub id / folder / .gguf)."""
    if isinstance(spec_or_name, LLMSpec):
        return spec_or_name
    name = str(spec_or_name)
    if name.endswith((".yaml", ".yml")) and Path(name).is_file():
        return load_spec(name)
    registry_dir = Path(directory) if directory is not None else default_registry_dir()
    if registry_dir.is_dir():
        registry = load_registry(registry_dir)
        if name in registry:
            return registry[name]
    if name.startswith("embedded:"):
        return LLMSpec(llm_tag=name.split(":", 1)[1], source=name)
    if name.endswith(".gguf"):
        tag = Path(name).stem
    elif Path(name).exists():
        tag = Path(name).resolve().name
    else:  # hub id "org/model"
        tag = name.rstrip("/").replace("/", "--")
    tag = "".join("_" if c in "/\\| " else c for c in tag)
    return LLMSpec(llm_tag=tag or "llm", source=name)
