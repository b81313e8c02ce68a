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

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

from rjepa_core.schemas import ChainOfThought, LatentSequence, Problem, stable_id
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


def parent_of(layout, version: str) -> str | None:
    """The parent the version's dataset was built from (its manifest, written by `gold_cots`), or None."""
    manifest = Path(layout.manifest_path(version))
    return json.loads(manifest.read_text()).get("parent") if manifest.exists() else None


# --- committed latents -------------------------------------------------------------------------------------------
# A partition's committed latent set records, beside it, one key per chain naming everything its latents depend
# on: the student's registry entry, the problem's statement, the version's prompt examples and the chain itself.
# A child version's `latents` step commits its parent's sequences of the chains whose keys are equal instead of
# forwarding them again (gold chains above all: the student chains' come from sampling already).


def latent_provenance_path(layout, llm_tag: str, version: str) -> Path:
    d = Path(layout.latents_dir(llm_tag, version))
    return d.parent / f"{d.name}.provenance.json"  # not hidden: object storage mirrors it with the set


def latent_keys(spec, problems, cots) -> dict[str, str]:
    """{cot_id: key} of the chains whose problem is in `problems`; equal keys, equal latents."""
    from rjepa_core.captured import fingerprint
    from rjepa_core.llm.prompting import examples_of

    by_id = {p.problem_id: p for p in problems}
    context = stable_id(
        json.dumps(spec.to_dict(), sort_keys=True, default=str),
        json.dumps([e.to_dict() for e in examples_of(problems)], sort_keys=True),
    )
    return {
        c.cot_id: stable_id(context, by_id[c.problem_id].statement, fingerprint(c))
        for c in cots
        if c.problem_id in by_id
    }


def clear_latent_provenance(layout, llm_tag: str, version: str) -> None:
    """Before the set is replaced: without the record nothing of it is reused."""
    latent_provenance_path(layout, llm_tag, version).unlink(missing_ok=True)


def write_latent_provenance(layout, spec, version: str, problems, cots) -> Path:
    """After the set was committed: the key of every chain it holds."""
    from rjepa_core.io import atomic_write_json

    keys = latent_keys(spec, problems, cots)
    return atomic_write_json(latent_provenance_path(layout, spec.llm_tag, version), {"chains": keys})


def inheritable_latents(layout, spec, version: str, problems, cots) -> dict[str, LatentSequence]:
    """{cot_id: sequence} of the parent's committed latents that `version`'s chains may commit as they are:
    the parent named in the version's dataset manifest, chains whose key equals the one recorded with the
    parent's set. Split and label are the child's own."""
    parent = parent_of(layout, version)
    path = latent_provenance_path(layout, spec.llm_tag, parent) if parent else None
    if path is None or not path.exists():
        return {}
    from rjepa_core.store.latents import LatentStore

    recorded = json.loads(path.read_text()).get("chains") or {}
    mine = latent_keys(spec, problems, cots)
    wanted = {i for i, k in mine.items() if recorded.get(i) == k}
    if not wanted:
        return {}
    chain = {c.cot_id: c for c in cots}
    split = {p.problem_id: p.split for p in problems}
    out = {}
    for s in LatentStore(layout).read(spec.llm_tag, parent):
        c = chain.get(s.cot_id)
        if s.cot_id in wanted and s.num_steps == len(c.steps) and s.layer_idx == spec.layer_idx:
            out[s.cot_id] = s.model_copy(update={"is_valid": c.is_valid, "split": split[c.problem_id]})
    return out
