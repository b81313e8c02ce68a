"""train_only sources: gold chains that train the world model, never sampled, shown as examples or tested."""

from __future__ import annotations

import pytest

from rjepa_core.data.datasets import DatasetConfig, build_gold_cots, build_problems, load_dataset_config, manifest
from rjepa_core.data.sources import SourceSpec
from rjepa_core.llm.prompting import RANK_KEY
from rjepa_core.pipeline import sample_student_chains

ADD4 = {"min_terms": 4, "max_terms": 4, "min_digits": 1, "max_digits": 1, "allow_parentheses": False}


def add4(size: int, seed: int, **kw) -> SourceSpec:
    return SourceSpec(kind="reasoning_gym", task="basic_arithmetic", size=size, seed=seed, params=ADD4, **kw)


def computation(p) -> tuple[str, ...]:
    return tuple("".join(s.split()) for s in p.meta["gold_steps"])


def test_train_only_problems_are_train_gold_and_never_repeat_a_regular_problem():
    regular = DatasetConfig(version="a", sources=[add4(40, 1)], few_shot=2, test_frac=0.3)
    # the train-only source draws from the same generator as the regular one with an overlapping seed set:
    # seed 1 again gives the very same 40 problems first, which must all be dropped
    both = DatasetConfig(
        version="b",
        sources=[add4(40, 1), add4(120, 1, train_only=True), add4(80, 2, train_only=True)],
        few_shot=2,
        test_frac=0.3,
    )
    a, b = build_problems(regular, []), build_problems(both, [])
    extra = [p for p in b if p.train_only]
    assert 0 < len(extra) < 200 - 40 + 1
    assert [(p.problem_id, p.split) for p in a] == [(p.problem_id, p.split) for p in b if not p.train_only]
    assert {p.split for p in extra} == {"train"} and all(p.meta["gold_steps"] for p in extra)
    seen = [computation(p) for p in b]
    assert len(seen) == len(set(seen))  # no computation twice, and none of the regular problems' again
    assert not any(RANK_KEY in p.meta for p in extra)  # examples stay the regular problems' own
    assert [p.problem_id for p in a if RANK_KEY in p.meta] == [p.problem_id for p in b if RANK_KEY in p.meta]
    cots = build_gold_cots(b)
    assert manifest(both, b, cots)["num_train_only_problems"] == len(extra)
    assert sum(c.is_valid for c in cots if c.problem_id in {p.problem_id for p in extra}) == len(extra)


def test_the_student_is_never_sampled_on_train_only_problems(tiny_student):
    problems = build_problems(DatasetConfig(version="c", sources=[add4(4, 3), add4(6, 4, train_only=True)]), [])
    extra = {p.problem_id for p in problems if p.train_only}
    assert extra
    chains = sample_student_chains(tiny_student, problems, k=1, k_test=1, greedy_test=False, max_new_tokens=4)
    assert {c.problem_id for c in chains} == {p.problem_id for p in problems} - extra


def test_train_only_must_be_a_boolean(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("sources:\n  - {kind: reasoning_gym, task: chain_sum, train_only: 'yes'}\n")
    with pytest.raises(ValueError, match="train_only must be true or false"):
        load_dataset_config(path)
