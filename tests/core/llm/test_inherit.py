"""A child version inherits the parent's student chains of a problem only when it would sample the same."""

from __future__ import annotations

from rjepa_core.data.datasets import DatasetConfig, build_problems
from rjepa_core.data.sources import SourceSpec
from rjepa_core.llm.inherit import inherit_chains
from rjepa_core.llm.prompting import examples_of
from rjepa_core.pipeline import sample_student_chains

SAMPLING = {"k": 2, "k_test": 3, "temperature": 0.7, "max_new_tokens": 6, "seed": 5, "greedy_test": True}


def _parent(tiny_student):
    cfg = DatasetConfig(
        version="p",
        sources=[SourceSpec(kind="reasoning_gym", task="chain_sum", size=10, seed=3)],
        few_shot=1,
        test_frac=0.4,
    )
    problems = build_problems(cfg, [])
    chains = sample_student_chains(tiny_student, problems, **SAMPLING)
    examples = examples_of(problems)
    return problems, chains, (lambda p: tiny_student.prompt_for(p.statement, examples)), len(examples)


def test_chains_sampled_with_the_same_settings_are_inherited_whole_and_relabelled(tiny_student):
    problems, chains, prompt_of, shots = _parent(tiny_student)
    child = [p.model_copy(deep=True) for p in reversed(problems)]
    answered = next(c for c in chains if c.final_answer and not c.is_valid)
    regraded = next(p for p in child if p.problem_id == answered.problem_id)
    regraded.answer_gold = answered.final_answer  # the child's gold differs: its inherited chains are relabelled
    got, covered, report = inherit_chains(chains, child, prompt_of, few_shot=shots, **SAMPLING)
    assert covered == {p.problem_id for p in problems if not p.train_only}
    assert [(c.cot_id, c.meta["text"]) for c in got] == [(c.cot_id, c.meta["text"]) for c in chains]  # same order
    assert report == {
        "inherited_problems": len(covered),
        "inherited_chains": len(chains),
        "resampled_problems": {},
        "unchecked": [],
    }
    assert next(c for c in got if c.cot_id == answered.cot_id).is_valid and not answered.is_valid
    assert chains[0].meta["seed"] == 5 and chains[0].meta["max_new_tokens"] == 6  # the parent is untouched


def test_any_sampling_difference_samples_the_problem_again_and_says_why(tiny_student):
    problems, chains, prompt_of, shots = _parent(tiny_student)
    sampled = [p for p in problems if not p.train_only]
    n_test = sum(p.split == "test" for p in sampled)
    assert 0 < n_test < len(sampled)
    cases = {
        "temperature": ({**SAMPLING, "temperature": 1.0}, prompt_of, len(sampled)),
        "seed": ({**SAMPLING, "seed": 6}, prompt_of, len(sampled)),
        "max_new_tokens": ({**SAMPLING, "max_new_tokens": 7}, prompt_of, len(sampled)),
        "prompt_sha": (SAMPLING, lambda p: prompt_of(p) + " ", len(sampled)),
        "not 4 sampled chains": ({**SAMPLING, "k_test": 4}, prompt_of, n_test),  # train/val (k=2) still fit
        "greedy chain": ({**SAMPLING, "greedy_test": False}, prompt_of, n_test),
    }
    for why, (sampling, prompts, n) in cases.items():
        got, covered, report = inherit_chains(chains, problems, prompts, few_shot=shots, **sampling)
        assert report["resampled_problems"] == {why: n}, why
        assert len(covered) == len(sampled) - n and {c.problem_id for c in got} == covered
    moved = [p.model_copy(update={"split": "val" if p.split == "test" else p.split}) for p in problems]
    assert inherit_chains(chains, moved, prompt_of, few_shot=shots, **SAMPLING)[2]["resampled_problems"]


def test_chains_sampled_before_the_settings_were_recorded_say_what_went_unchecked(tiny_student):
    problems, chains, prompt_of, shots = _parent(tiny_student)
    legacy = [c.model_copy(update={"meta": {k: v for k, v in c.meta.items() if k != "prompt_sha"}}) for c in chains]
    got, covered, report = inherit_chains(legacy, problems, prompt_of, few_shot=shots, **SAMPLING)
    assert len(got) == len(chains) and report["unchecked"] == ["prompt_sha"]
