"""First-error localisation (SPEC F15): does the step R-JEPA points at match the first wrong step?

    >>> first_error_localisation([[0.1, 0.9, 0.2], [0.5, 0.1, 0.1, 0.1]], [1, 2])
    {'n': 2, 'min_steps': 2, 'hit_rate': 0.5, 'chance_rate': 0.2916..., 'within_one_rate': 0.5, ...}

For each incorrect chain whose first wrong step is labelled (the arithmetic re-check of
`rjepa_core.validators.steps.first_wrong_step`), a hit is `pick(scores) == first_wrong_step`, the pick
being the most surprising step (`argmax`, the default) or `first_above` of the position-normalised
surprise (the first step more surprising than usual at its position, `pick=first_above_pick(t)`).
Single-step chains are left out: there any pick is right and says nothing.

Three baselines come with every hit rate, because the first error is not uniformly placed (on ms2 it
is the first step in 59 % of wrong chains): `chance_rate`, a uniformly random step (mean 1/num_steps);
`matched_chance_rate`, a pick drawn independently of the chain with the same distribution over
positions as the rule's own picks (per chain length) — what the rule's positional habit alone would
score; `best_constant_rate`, the best fixed position per chain length, chosen on these very labels
(an upper bound for any rule that ignores the chain).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rjepa_core.eval.metrics import bootstrap_ci


def first_wrong_step_of(steps: list[str], meta: dict[str, Any] | None = None) -> int | None:
    """The labelled first wrong step: meta["first_wrong_step"] when present, else re-checked from the steps."""
    if meta and "first_wrong_step" in meta:
        value = meta["first_wrong_step"]
        return None if value is None else int(value)
    from rjepa_core.validators.steps import first_wrong_step

    return first_wrong_step(steps)


def argmax_pick(scores: Sequence[float]) -> int:
    return int(np.argmax(scores))


def first_above_pick(threshold: float) -> Callable[[Sequence[float]], int]:
    """The first step whose (position-normalised) score exceeds `threshold`, else the largest."""
    from rjepa_core.jepa.normalisation import first_above

    return lambda z: first_above(z, threshold)


def _positional_baselines(picks: Sequence[int], wrong: Sequence[int], lengths: Sequence[int]) -> tuple[float, float]:
    """(matched chance, best constant): per chain length, sum_j P(pick=j) P(wrong=j) and max_j P(wrong=j)."""
    matched = best = 0.0
    for n in sorted(set(lengths)):
        idx = [i for i, m in enumerate(lengths) if m == n]
        p_pick = np.bincount([picks[i] for i in idx], minlength=n) / len(idx)
        p_wrong = np.bincount([wrong[i] for i in idx], minlength=n) / len(idx)
        matched += len(idx) * float(p_pick @ p_wrong)
        best += len(idx) * float(p_wrong.max())
    return matched / len(picks), best / len(picks)


def first_error_localisation(
    surprises: Sequence[Sequence[float]],
    wrong_steps: Sequence[int | None],
    seed: int = 0,
    min_steps: int = 2,
    pick: Callable[[Sequence[float]], int] = argmax_pick,
) -> dict[str, Any]:
    """Hit rate of `pick` (argmax by default) on the labelled first wrong step, against the baselines above.

    Only chains with at least `min_steps` steps count. `within_one_chance_rate` is what a uniformly
    random step would score on the within-one criterion (|pick - wrong| <= 1).
    """
    if len(surprises) != len(wrong_steps):
        raise ValueError(f"{len(surprises)} surprise lists but {len(wrong_steps)} labels")
    if min_steps < 2:
        raise ValueError(f"min_steps must be >= 2 (one-step chains cannot be localised), got {min_steps}")
    hits, near, chance, near_chance = [], [], [], []
    picks, wrong, lengths = [], [], []
    for s, w in zip(surprises, wrong_steps, strict=True):
        n = len(s)
        if w is None or n < min_steps or not 0 <= w < n:
            continue
        top = int(pick(s))
        hits.append(float(top == w))
        near.append(float(abs(top - w) <= 1))
        chance.append(1.0 / n)
        near_chance.append((min(w + 1, n - 1) - max(w - 1, 0) + 1) / n)
        picks.append(top)
        wrong.append(int(w))
        lengths.append(n)
    if not hits:
        return {
            "n": 0,
            "min_steps": min_steps,
            "hit_rate": None,
            "chance_rate": None,
            "matched_chance_rate": None,
            "best_constant_rate": None,
            "within_one_rate": None,
            "within_one_chance_rate": None,
            "hit_rate_ci95": None,
        }
    matched, best = _positional_baselines(picks, wrong, lengths)
    return {
        "n": len(hits),
        "min_steps": min_steps,
        "hit_rate": float(np.mean(hits)),
        "chance_rate": float(np.mean(chance)),
        "matched_chance_rate": matched,
        "best_constant_rate": best,
        "within_one_rate": float(np.mean(near)),
        "within_one_chance_rate": float(np.mean(near_chance)),
        "hit_rate_ci95": bootstrap_ci(hits, seed=seed),
        "picks_by_position": np.bincount(picks).tolist(),
        "first_wrong_by_position": np.bincount(wrong).tolist(),
    }


MIN_FIT_CHAINS = 30  # labelled wrong chains needed to fit the localisation threshold (else the default)


def fit_localisation_threshold(
    step_z: Sequence[Sequence[float]], wrong_steps: Sequence[int | None], grid: Sequence[float] | None = None
) -> dict[str, Any]:
    """The `first_above` threshold that adds most to the positional habit on labelled wrong chains (validation's).

    The objective is `hit_rate - matched_chance_rate`: what the chain's surprise adds over a chain-blind
    pick with the same positions. The raw hit rate alone drifts to the lowest threshold where the first
    wrong step is usually the first step (on ms2's validation split it picked z > -1: step 1 in 9 chains
    of 10, barely above always answering step 1). Returns {"threshold", "hit_rate", "skill", "n", "fitted"};
    with fewer than MIN_FIT_CHAINS usable chains the label-free default (z > 0: above the position's
    mean) is kept and "fitted" is False. Ties go to the threshold nearest the default.
    """
    from rjepa_core.jepa.normalisation import DEFAULT_FIRST_ABOVE, FIRST_ABOVE_GRID

    grid = tuple(grid or FIRST_ABOVE_GRID)
    usable = [(z, w) for z, w in zip(step_z, wrong_steps, strict=True) if w is not None and 0 <= w < len(z)]
    usable = [(z, w) for z, w in usable if len(z) >= 2]
    if len(usable) < MIN_FIT_CHAINS:
        return {"threshold": DEFAULT_FIRST_ABOVE, "hit_rate": None, "skill": None, "n": len(usable), "fitted": False}
    zs, ws = [z for z, _ in usable], [w for _, w in usable]
    rows = {t: first_error_localisation(zs, ws, pick=first_above_pick(t)) for t in grid}
    skill = {t: r["hit_rate"] - r["matched_chance_rate"] for t, r in rows.items()}
    best = max(grid, key=lambda t: (round(skill[t], 12), -abs(t - DEFAULT_FIRST_ABOVE)))
    return {
        "threshold": float(best),
        "hit_rate": rows[best]["hit_rate"],
        "skill": skill[best],
        "n": len(usable),
        "fitted": True,
        "grid": {str(t): {"hit_rate": rows[t]["hit_rate"], "skill": skill[t]} for t in grid},
    }
