"""A/B gate (SPEC F14): candidate vs deployed checkpoint on the same candidates, paired by problem.

    >>> res = compare(candidate_scorer, deployed_scorer, problems, chains, H, Q, k=8, metric="jepa_selection")
    >>> res["difference"]["mean"], res["difference"]["ci95"], res["n_problems"]
    >>> decide(res, min_improvement=0.02)
    (False, 'candidate − deployed = +0.000 [−0.100, +0.100] on 30 problems, not above +0.020')

Both checkpoints score the **same** test problems of one partition and the **same first K sampled
candidates** of each problem; each problem gets one value per checkpoint and the difference is the
paired bootstrap of `eval.metrics.paired_difference` (problems resampled, never chains). Metrics:

- `jepa_selection`: 1 if the candidate with the lowest JEPA-loss is correct (what RERANK by JEPA serves);
- `within_problem_auroc`: AUROC of −JEPA-loss for correctness among one problem's candidates (problems
  whose K candidates are all right or all wrong carry no information and are left out, for both sides).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rjepa_core.eval.evaluation import _latents_of, _ordered_candidates
from rjepa_core.eval.metrics import auroc, paired_difference
from rjepa_core.learning.config import GATE_METRICS
from rjepa_core.schemas import ChainOfThought, Problem


def fixed_groups(
    problems: Sequence[Problem], chains: Sequence[ChainOfThought], k: int
) -> list[tuple[str, list[ChainOfThought]]]:
    """(problem_id, its first k sampled candidates) for every test problem with at least 2, in problem order."""
    groups, _ = _ordered_candidates(chains)
    out = []
    for p in problems:
        g = groups.get(p.problem_id, [])[:k]
        if p.split == "test" and len(g) >= 2:
            out.append((p.problem_id, g))
    return out


def _per_problem(scorer, groups, H, Q, domains: dict[str, str], metric: str) -> list[float | None]:
    flat = [c for _, g in groups for c in g]
    scores = scorer.score(
        _latents_of(flat, H, "test"),
        [domains.get(c.problem_id, "other") for c in flat],
        [Q.get(c.cot_id) for c in flat],
    )
    losses = iter(float(s.jepa_loss) for s in scores)
    values: list[float | None] = []
    for _, g in groups:
        loss = np.array([next(losses) for _ in g])  # (K,)
        correct = [bool(c.is_valid) for c in g]
        if metric == "jepa_selection":
            values.append(float(correct[int(np.argmin(loss))]))  # first minimum: ties go to the earlier sample
        else:
            values.append(auroc(-loss, correct))  # None when the problem's candidates are all right or all wrong
    return values


def compare(
    candidate,
    deployed,
    problems: Sequence[Problem],
    chains: Sequence[ChainOfThought],
    H: dict[str, np.ndarray],
    Q: dict[str, np.ndarray] | None = None,
    *,
    k: int = 8,
    metric: str = "jepa_selection",
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Per-problem metric of both scorers on the same candidates and their paired bootstrap difference."""
    if metric not in GATE_METRICS:
        raise ValueError(f"unknown gate metric {metric!r}: use one of {GATE_METRICS}")
    groups = fixed_groups(problems, [c for c in chains if not c.meta.get("greedy")], k)
    if not groups:
        raise ValueError("the evaluation partition has no test problem with >= 2 sampled candidates: "
                         "materialize student_chains and latents for it first")  # fmt: skip
    Q, domains = Q or {}, {p.problem_id: p.domain for p in problems}
    cand = _per_problem(candidate, groups, H, Q, domains, metric)
    dep = _per_problem(deployed, groups, H, Q, domains, metric)
    keep = [i for i in range(len(groups)) if cand[i] is not None and dep[i] is not None]
    if not keep:
        raise ValueError(f"no test problem has both right and wrong candidates: {metric} is undefined here; "
                         "use metric jepa_selection")  # fmt: skip
    a = [float(cand[i]) for i in keep]  # type: ignore[arg-type]
    b = [float(dep[i]) for i in keep]  # type: ignore[arg-type]
    return {
        "metric": metric,
        "k": k,
        "n_problems": len(keep),
        "n_candidates": sum(len(groups[i][1]) for i in keep),
        "problem_ids": [groups[i][0] for i in keep],
        "candidate": float(np.mean(a)),
        "deployed": float(np.mean(b)),
        "difference": paired_difference(a, b, n_resamples=n_resamples, seed=seed),
        "bootstrap": n_resamples,
        "seed": seed,
    }


def decide(result: dict[str, Any], min_improvement: float) -> tuple[bool, str]:
    """(promote?, why): promote only if the mean paired difference is above `min_improvement`."""
    d = result["difference"]
    lo, hi = d["ci95"]
    text = (
        f"candidate − deployed {result['metric']} = {d['mean']:+.3f} [{lo:+.3f}, {hi:+.3f}] on "
        f"{result['n_problems']} problems (K={result['k']})"
    )
    if d["mean"] > min_improvement:
        return True, f"{text}, above {min_improvement:+.3f}: promoted"
    return False, f"{text}, not above {min_improvement:+.3f}: the deployed checkpoint is kept"
