"""First-error localisation (SPEC F15): does the most surprising step match the first wrong step?

    >>> first_error_localisation([[0.1, 0.9, 0.2], [0.5, 0.1, 0.1, 0.1]], [1, 2])
    {'n': 2, 'min_steps': 2, 'hit_rate': 0.5, 'chance_rate': 0.2916..., 'within_one_rate': 0.5, ...}

For each incorrect chain whose first wrong step is labelled (the arithmetic re-check of
`rjepa_core.validators.steps.first_wrong_step`), a hit is `argmax(step_surprise) == first_wrong_step`.
Chance is what a uniformly random step would score: the mean of 1/num_steps over the same chains.
Single-step chains are left out: there the argmax cannot be wrong and says nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def first_error_localisation(
    surprises: Sequence[Sequence[float]], wrong_steps: Sequence[int | None], seed: int = 0, min_steps: int = 2
) -> dict[str, Any]:
    """Hit rate of argmax surprise on the labelled first wrong step, against chance (1/num_steps).

    Only chains with at least `min_steps` steps count. `within_one_chance_rate` is what a uniformly
    random step would score on the within-one criterion (|pick - wrong| <= 1).
    """
    if len(surprises) != len(wrong_steps):
        raise ValueError(f"{len(surprises)} surprise lists but {len(wrong_steps)} labels")
    if min_steps < 2:
        raise ValueError(f"min_steps must be >= 2 (one-step chains cannot be localised), got {min_steps}")
    hits, near, chance, near_chance = [], [], [], []
    for s, w in zip(surprises, wrong_steps, strict=True):
        n = len(s)
        if w is None or n < min_steps or not 0 <= w < n:
            continue
        top = int(np.argmax(s))
        hits.append(float(top == w))
        near.append(float(abs(top - w) <= 1))
        chance.append(1.0 / n)
        near_chance.append((min(w + 1, n - 1) - max(w - 1, 0) + 1) / n)
    if not hits:
        return {
            "n": 0,
            "min_steps": min_steps,
            "hit_rate": None,
            "chance_rate": None,
            "within_one_rate": None,
            "within_one_chance_rate": None,
            "hit_rate_ci95": None,
        }
    return {
        "n": len(hits),
        "min_steps": min_steps,
        "hit_rate": float(np.mean(hits)),
        "chance_rate": float(np.mean(chance)),
        "within_one_rate": float(np.mean(near)),
        "within_one_chance_rate": float(np.mean(near_chance)),
        "hit_rate_ci95": bootstrap_ci(hits, seed=seed),
    }
