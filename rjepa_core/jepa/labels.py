"""Which student chains are JEPA targets and which are negatives (config `train.labels`).

    >>> from rjepa_core.schemas import ChainOfThought
    >>> cots = [ChainOfThought(cot_id=i, problem_id="p", steps=["s"], final_answer=a, is_valid=False,
    ...                        origin="student:x") for i, a in (("a", "5"), ("b", "5.0"), ("c", "7"))]
    >>> majority_labels(cots)
    {'a': True, 'b': True, 'c': False}

- "validator" (default): the validator's verdict on each chain against the gold answer.
- "majority": no verdict at all. A sampled student chain is a target when its answer is its problem's most
  frequent one among the sampled chains, a negative otherwise; problems whose top answer is tied give no
  label, and student chains without a label (greedy ones, tied problems) are left out. Gold chains stay
  targets. This is self-consistency turned into training data: with the energy margin it teaches the world
  model what majority-consistent reasoning looks like, without reading a single student label.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from rjepa_core.validators.math import normalize_answer

LABELS = ("validator", "majority")


def majority_labels(chains: Sequence[Any]) -> dict[str, bool]:
    """cot_id -> "agrees with its problem's top answer" (answers compared as majority vote compares them);
    `chains` are the sampled candidates (greedy ones should be left out by the caller)."""
    by_problem: dict[str, list[Any]] = {}
    for c in chains:
        by_problem.setdefault(c.problem_id, []).append(c)
    out: dict[str, bool] = {}
    for group in by_problem.values():
        keys = {c.cot_id: normalize_answer(c.final_answer) for c in group}
        counts = Counter(k for k in keys.values() if k is not None).most_common(2)
        if not counts or (len(counts) == 2 and counts[0][1] == counts[1][1]):
            continue
        for c in group:
            out[c.cot_id] = keys[c.cot_id] == counts[0][0]
    return out


def relabelled(seqs: Sequence[Any], labels: dict[str, bool]) -> list[Any]:
    """The latent sequences under `labels`: gold chains as they are, each labelled chain with its label
    (`is_valid`), every other non-gold chain left out."""
    out = []
    for s in seqs:
        if s.origin == "gold":
            out.append(s)
        elif s.cot_id in labels:
            out.append(s.model_copy(update={"is_valid": labels[s.cot_id]}))
    return out


def training_labels(seqs: Sequence[Any], how: str, chains: Sequence[Any] | None) -> list[Any]:
    """`seqs` labelled the way config `train.labels` says; `chains` (ChainOfThought records of the partition)
    are needed for "majority"."""
    if how == "validator":
        return list(seqs)
    if how != "majority":
        raise ValueError(f"train.labels is {how!r}; use one of {LABELS}")
    if chains is None:
        raise ValueError("train.labels: majority needs the partition's student chains (their answers) to vote on")
    sampled = [c for c in chains if not c.meta.get("greedy") and c.origin != "gold"]
    return relabelled(seqs, majority_labels(sampled))
