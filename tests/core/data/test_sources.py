"""F1 sources and cumulative dataset versions on real reasoning-gym data and real files."""

from __future__ import annotations

import json

import pytest

from rjepa_core.data.arithmetic import arithmetic_steps
from rjepa_core.data.datasets import DatasetConfig, build_gold_cots, build_problems, load_dataset_config, manifest
from rjepa_core.data.sources import SourceSpec, gsm8k_rationale, load_source

GSM_ROW = {
    "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?",
    "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
    "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72",
}


@pytest.mark.parametrize(
    "expr, steps, value",
    [
        ("4 - 1 - 7", ["4 - 1 = 3", "3 - 7 = -4"], "-4"),
        ("( 2 + -8 ) + 4", ["2 + -8 = -6", "-6 + 4 = -2"], "-2"),
        ("-( 5 + -8 + -6 )", ["5 + -8 = -3", "-3 + -6 = -9", "-(-9) = 9"], "9"),
        ("2 + 3 * 4", ["3 * 4 = 12", "2 + 12 = 14"], "14"),
        ("7 / 2", ["7 / 2 = 3.5"], "3.5"),
        ("5", ["The value is 5"], "5"),
    ],
)
def test_arithmetic_steps(expr, steps, value):
    assert arithmetic_steps(expr) == (steps, value)


def test_arithmetic_rejects_bad_input():
    with pytest.raises(ValueError, match="division by zero"):
        arithmetic_steps("7 / 0 * 8")
    with pytest.raises(ValueError, match="not an arithmetic expression"):
        arithmetic_steps("2 +")


def test_reasoning_gym_source_is_seeded_and_consistent():
    spec = SourceSpec(
        kind="reasoning_gym",
        task="chain_sum",
        size=10,
        seed=3,
        params={"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 1},
    )
    a, b = load_source(spec), load_source(spec)
    assert [i.problem.problem_id for i in a] == [i.problem.problem_id for i in b]
    for item in a:
        assert item.problem.source == "reasoning_gym:chain_sum" and item.problem.domain == "math"
        # the derived chain ends on the generator's own answer
        assert item.gold_steps[-1].split("=")[-1].strip() == item.problem.answer_gold


def test_gsm8k_file_with_annotations(tmp_path):
    path = tmp_path / "gsm.jsonl"
    path.write_text(json.dumps(GSM_ROW) + "\n")
    (item,) = load_source(SourceSpec(kind="gsm8k", path=str(path)))
    assert item.problem.answer_gold == "72"
    assert len(item.gold_steps) == 2 and "<<48/2=24>>" in item.gold_steps[0]
    steps, final = gsm8k_rationale(GSM_ROW["answer"])
    assert final == "72" and len(steps) == 2


def test_bad_files_get_clear_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "x"}\n')
    with pytest.raises(ValueError, match="needs `question` and `answer`"):
        load_source(SourceSpec(kind="gsm8k", path=str(bad)))
    bad.write_text("{not json\n")
    with pytest.raises(ValueError, match="invalid JSON"):
        load_source(SourceSpec(kind="gsm8k", path=str(bad)))
    with pytest.raises(ValueError, match="unknown source kind"):
        SourceSpec(kind="nope")
    with pytest.raises(ValueError, match="needs `path:`"):
        SourceSpec(kind="csv")


def test_csv_and_json_sources(tmp_path):
    csv_path = tmp_path / "p.csv"
    csv_path.write_text("q,a\nWhat is 2+2?,4\nWhat is 3*3?,9\n")
    items = load_source(SourceSpec(kind="csv", path=str(csv_path), columns={"statement": "q", "answer": "a"}))
    assert [i.problem.answer_gold for i in items] == ["4", "9"]
    js = tmp_path / "p.json"
    js.write_text(json.dumps([{"question": "1+1?", "answer": "2", "rationale": "Step 1: 1+1=2"}]))
    (item,) = load_source(SourceSpec(kind="json", path=str(js)))
    assert item.gold_steps == ["1+1=2"]


def test_humaneval_and_math_sources(tmp_path):
    items = load_source(SourceSpec(kind="humaneval", size=3))
    assert len(items) == 3 and items[0].problem.domain == "code" and "test" in items[0].problem.meta
    math = tmp_path / "math.jsonl"
    math.write_text(
        json.dumps(
            {
                "problem": "Compute 1/2+1/2.",
                "solution": "We add. So the sum is $\\boxed{1}$.",
                "level": "Level 1",
                "type": "Algebra",
            }
        )
        + "\n"
    )
    (item,) = load_source(SourceSpec(kind="math", path=str(math)))
    assert item.problem.answer_gold == "1" and item.problem.difficulty == "Level 1"


def test_versions_are_cumulative_and_split_by_problem(tmp_path):
    v1 = DatasetConfig(version="v1", sources=[SourceSpec(kind="reasoning_gym", task="chain_sum", size=12, seed=1)])
    v2 = DatasetConfig(
        version="v2", parent="v1", sources=[SourceSpec(kind="reasoning_gym", task="chain_sum", size=12, seed=2)]
    )
    p1 = build_problems(v1, [])
    p2 = build_problems(v2, p1)
    assert {p.problem_id for p in p1} <= {p.problem_id for p in p2}
    assert len({p.problem_id for p in p2}) == len(p2)
    cots = build_gold_cots(p2)
    assert cots and all(c.origin == "gold" for c in cots)
    assert all("<<" not in s for c in cots for s in c.steps)
    man = manifest(v2, p2, cots)
    assert man["num_problems"] == len(p2) and man["parent"] == "v1"
    assert sum(man["by_split"].values()) == len(p2)


def test_dataset_config_validation(tmp_path):
    path = tmp_path / "v3.yaml"
    path.write_text("version: v4\nsources: []\n")
    with pytest.raises(ValueError, match="must match the file name"):
        load_dataset_config(path)
    path.write_text("sources: [{kind: reasoning_gym}]\n")
    with pytest.raises(ValueError, match="needs `task:`"):
        load_dataset_config(path)
    with pytest.raises(ValueError, match="may only use"):
        DatasetConfig(version="../x", sources=[])


def test_shipped_dataset_configs_load():
    for name in ("v1", "v2"):
        cfg = load_dataset_config(f"configs/datasets/{name}.yaml")
        assert cfg.version == name and cfg.sources
