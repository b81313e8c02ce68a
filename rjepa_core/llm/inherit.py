"""A child dataset version inherits its parent's student chains instead of sampling the same problems again.

    >>> chains, covered, report = inherit_chains(parent_chains, problems, prompt_of, k=4, k_test=8,
    ...     temperature=0.7, max_new_tokens=80, seed=0, greedy_test=True, few_shot=2)
    >>> to_sample = [p for p in problems if p.problem_id not in covered]

A problem's chains are inherited only when they are what the child would sample for it: the same split,
K (k_test on test) sampled chains numbered 0..K-1 plus the greedy one the child asks for, and every chain
recording the child's temperature, number of prompt examples, token budget, seed and prompt (sha of the
rendered prompt, so a changed example, template or statement re-samples). Chains sampled before a key was
recorded in their meta cannot be checked on it: the report names such keys under `unchecked`. Inherited
chains keep the parent's order and are relabelled against the child's problem (the validators may have changed
since).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable

from rjepa_core.schemas import ChainOfThought, Problem, stable_id
from rjepa_core.validators.gold import label_chain

RECORDED = ("max_new_tokens", "seed", "prompt_sha")  # meta keys of chains sampled since inheritance exists


def inherit_chains(
    parent_chains: Iterable[ChainOfThought],
    problems: Iterable[Problem],
    prompt_of: Callable[[Problem], str],
    *,
    k: int,
    k_test: int | None,
    temperature: float,
    max_new_tokens: int,
    seed: int,
    greedy_test: bool,
    few_shot: int,
) -> tuple[list[ChainOfThought], set[str], dict]:
    """(inherited chains, ids of the problems they cover, report) for the sampled problems of `problems`."""
    parent_chains = list(parent_chains)
    by_problem: dict[str, list[ChainOfThought]] = defaultdict(list)
    for c in parent_chains:
        by_problem[c.problem_id].append(c)
    kids: dict[str, Problem] = {}
    covered: set[str] = set()
    mismatched: dict[str, int] = defaultdict(int)
    unchecked: set[str] = set()
    for p in problems:
        chains = by_problem.get(p.problem_id)
        if p.train_only or not chains:
            continue
        want = {
            "split": p.split,
            "few_shot": few_shot,
            "max_new_tokens": max_new_tokens,
            "seed": seed,
            "prompt_sha": stable_id(prompt_of(p)),
        }
        why = _mismatch(chains, p, want, k, k_test, temperature, greedy_test, unchecked)
        if why:
            mismatched[why] += 1
            continue
        covered.add(p.problem_id)
        kids[p.problem_id] = p
    # in the parent's order, so a child that adds only test problems trains on its parent's sequence order
    out = [label_chain(kids[c.problem_id], c.model_copy(deep=True)) for c in parent_chains if c.problem_id in kids]
    report = {
        "inherited_problems": len(covered),
        "inherited_chains": len(out),
        "resampled_problems": dict(sorted(mismatched.items())),  # why the parent's chains did not fit
        "unchecked": sorted(unchecked),
    }
    return out, covered, report


def _mismatch(chains, p: Problem, want: dict, k, k_test, temperature, greedy_test, unchecked: set[str]) -> str:
    """Why `chains` are not what the child would sample for `p` ("" when they are)."""
    sampled = [c for c in chains if not c.meta.get("greedy")]
    greedy = [c for c in chains if c.meta.get("greedy")]
    kk = k_test if (p.split == "test" and k_test) else k
    if sorted(c.meta.get("sample_index") for c in sampled) != list(range(kk)):
        return f"not {kk} sampled chains"
    if len(greedy) != (1 if greedy_test and p.split == "test" else 0):
        return "greedy chain"
    for c in chains:
        if c.meta.get("temperature") != (0.0 if c.meta.get("greedy") else temperature):
            return "temperature"
        for key, value in want.items():
            if key not in c.meta and key in RECORDED:
                unchecked.add(key)
            elif c.meta.get(key) != value:
                return key
    return ""
