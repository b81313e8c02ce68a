"""Sources with a forced `split:`: held-out problems that enlarge a parent's test split without leaking."""

from __future__ import annotations

import pytest

from rjepa_core.data.datasets import DatasetConfig, build_problems, load_dataset_config
from rjepa_core.llm.prompting import examples_of
from tests.core.data.test_train_only import add4, computation


def test_a_forced_test_source_adds_only_test_problems_and_keeps_the_parent_as_it_was():
    parent_cfg = DatasetConfig(
        version="a", sources=[add4(40, 1), add4(60, 1000, train_only=True)], few_shot=2, test_frac=0.3
    )
    parent = build_problems(parent_cfg, [])
    before = [(p.problem_id, p.split, p.train_only) for p in parent]
    # seed 1 again: its first 40 items are the parent's own problems and must be dropped, not moved to test
    child_cfg = DatasetConfig(version="b", parent="a", sources=[add4(80, 1, split="test")], few_shot=2, test_frac=0.3)
    child = build_problems(child_cfg, [p.model_copy(deep=True) for p in parent])
    assert [(p.problem_id, p.split, p.train_only) for p in child[: len(parent)]] == before
    new = child[len(parent) :]
    assert 0 < len(new) <= 40 and {p.split for p in new} == {"test"} and not any(p.train_only for p in new)
    seen = [computation(p) for p in child]
    assert len(seen) == len(set(seen))  # no new test sum repeats a training (or any other) problem's chain
    assert examples_of(child) == examples_of(parent)  # same prompt: the parent's chains stay valid for the child


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{kind: reasoning_gym, task: chain_sum, split: holdout}", "split must be one of train, val, test"),
        ("{kind: reasoning_gym, task: chain_sum, split: test, train_only: true}", "either train_only or"),
    ],
)
def test_a_bad_forced_split_is_refused_with_what_to_write(tmp_path, source, message):
    path = tmp_path / "bad.yaml"
    path.write_text(f"sources:\n  - {source}\n")
    with pytest.raises(ValueError, match=message):
        load_dataset_config(path)


def test_the_ms3_config_extends_ms2_with_test_problems_only():
    cfg = load_dataset_config("configs/datasets/ms3.yaml")
    assert cfg.parent == "ms2" and [s.split for s in cfg.sources] == ["test"]
