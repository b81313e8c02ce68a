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
    gemma = reg["gemma3-270m"]
    assert (gemma.source, gemma.hidden_size, gemma.dtype, gemma.prompt_format) == (
        "embedded:gemma3",
        640,
        "float32",
        "plain",
    )
    assert 0 <= gemma.layer_idx < 18 and smol.few_shot == [] and smol.examples() == []


def test_gemma_examples_are_worked_and_never_a_dataset_problem():
    """The base model's worked examples are arithmetic that checks out, and none of them is a problem of a
    shipped dataset version (so no test problem is ever shown to the student as an example)."""
    from rjepa_core.data.datasets import build_problems, load_dataset_configs

    examples = load_registry(REPO_REGISTRY)["gemma3-270m"].examples()
    assert len(examples) >= 2 and any(len(e.steps) >= 2 for e in examples)
    for e in examples:
        for step in e.steps:
            lhs, rhs = step.split("=")
            assert eval(lhs) == int(rhs), step  # noqa: S307 - the YAML's own arithmetic, digits and + - * only
        assert e.steps[-1].split("=")[1].strip() == e.answer
    configs = load_dataset_configs(REPO_REGISTRY.parent / "datasets")
    statements: set[str] = set()
    parents: dict[str, list] = {}
    for name in ("v1", "v2"):
        cfg = configs[name]
        parents[name] = build_problems(cfg, parent_problems=parents.get(cfg.parent, []) if cfg.parent else [])
        statements |= {p.statement.strip() for p in parents[name]}
    assert len(statements) > 100
    assert not statements & {e.statement for e in examples}


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
        ("llm_tag: x\nsource: a/b\nprompt_format: jinja\n", "field 'prompt_format'"),
        ("llm_tag: x\nsource: a/b\nfew_shot: 3\n", "field 'few_shot'"),
        ("llm_tag: x\nsource: a/b\nfew_shot: [{statement: one plus one}]\n", "field 'few_shot'.*item 0"),
        ("llm_tag: x\nsource: a/b\nfew_shot: [{statement: q, steps: [], answer: 2}]\n", "field 'few_shot'"),
        ("llm_tag: x\nsource: a/b\nfew_shot: [{statement: q, steps: ['Step 1: 1 + 1 = 2'], answer: 2}]\n", "few_shot"),
        ("llm_tag: x\nsource: a/b\nfew_shot: [{statement: q, steps: ['1 + 1 = 2'], answer: 2, why: x}]\n", "few_shot"),
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
