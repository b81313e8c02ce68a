from __future__ import annotations

from pathlib import Path

import pytest

from rjepa_core.llm.registry import DEFAULT_LLM_TAG, LLMSpec, load_registry, load_spec, resolve_spec

REPO_REGISTRY = Path(__file__).resolve().parents[3] / "configs" / "llms"


def test_shipped_registry():
    reg = load_registry(REPO_REGISTRY)
    assert set(reg) >= {"smollm2-135m", "minilm-l6", "qwen3-8b", "qwen3-8b-awq", "qwen3-32b", "llama-3.1-8b"}
    assert DEFAULT_LLM_TAG in reg
    smol = reg["smollm2-135m"]
    assert (smol.source, smol.hidden_size, smol.layer_idx, smol.batch_size) == ("embedded:smollm2", 576, 14, 8)
    assert smol.latents_from_sampling is True  # student chains' latents are captured while sampling
    assert (reg["minilm-l6"].kind, reg["minilm-l6"].hidden_size) == ("encoder", 384)
    assert reg["qwen3-8b-awq"].quantization == "awq"
    assert (reg["qwen3-32b"].hidden_size, reg["llama-3.1-8b"].source) == (5120, "meta-llama/Llama-3.1-8B-Instruct")
    assert load_registry() == reg  # the relative default finds the repository's registry


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("llm_tag: x\nsource: a/b\ndtype: int8\n", "field 'dtype'"),
        ("llm_tag: x\nsource: a/b\nbatchsize: 4\n", "unknown field"),
        ("llm_tag: x\n", "field 'source' is required"),
        ("llm_tag: x\nsource: a/b\nquantization: q4\n", "field 'quantization'"),
        ("llm_tag: a/b\nsource: a/b\n", "field 'llm_tag'"),
        ("llm_tag: x\nsource: embedded:gpt5\n", "field 'source'"),
        ("llm_tag: x\nsource: a/b\nbatch_size: 0\n", "field 'batch_size'"),
        ("llm_tag: x\nsource: a/b\npooling: max\n", "field 'pooling'"),
        ("llm_tag: x\nsource: a/b\nlatents_from_sampling: maybe\n", "field 'latents_from_sampling'"),
        ("- just\n- a list\n", "expected a mapping"),
        ("llm_tag: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_spec_errors_name_file_and_field(tmp_path, body, match):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(ValueError, match=match) as err:
        load_spec(path)
    assert str(path) in str(err.value)


def test_duplicate_tags_rejected(tmp_path):
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text("llm_tag: same\nsource: org/model\n")
    with pytest.raises(ValueError, match="already defined"):
        load_registry(tmp_path)


def test_resolve_spec(tmp_path):
    assert resolve_spec("qwen3-8b", REPO_REGISTRY).source == "Qwen/Qwen3-8B"
    assert resolve_spec("org/some-model", REPO_REGISTRY).llm_tag == "org--some-model"
    assert resolve_spec(str(tmp_path), REPO_REGISTRY).llm_tag == tmp_path.name
    assert resolve_spec("/x/model.Q4.gguf", REPO_REGISTRY).llm_tag == "model.Q4"
    spec = LLMSpec(llm_tag="t", source="s")
    assert resolve_spec(spec) is spec
