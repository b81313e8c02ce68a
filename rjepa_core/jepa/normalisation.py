"""Position-normalised surprise (issue 12): each step's surprise as a z-score at its (position, length).

Raw step surprise is not comparable across positions: the first step has no context before it, the
last one is predicted from everything, so `argmax(surprise)` prefers some positions whatever the chain
says. `SurpriseNorm` learns, without labels, the mean and spread of surprise at each (step position,
chain length) cell from reference chains (the validation split's candidates), shrunk toward the
position-only and then the global statistics when a cell has few chains:

    >>> norm = SurpriseNorm.fit([[3.0, 1.0], [3.2, 1.2], [2.8, 0.8]], prior_weight=0.0)
    >>> [round(x, 2) for x in norm.z([3.0, 1.4])]     # step 2 is the unusual one once positions are fair
    [0.0, 2.45]

Positions and lengths past `max_len` share the last cell.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAX_LEN = 8  # chains longer than this share the statistics of length MAX_LEN
PRIOR_WEIGHT = 10.0  # pseudo-chains of the coarser statistics mixed into each cell


def _moments(values: list[float]) -> tuple[int, float, float]:
    a = np.asarray(values, dtype=np.float64)
    return int(a.size), float(a.mean()) if a.size else 0.0, float(a.var()) if a.size else 0.0


def _shrink(n: int, mean: float, var: float, prior: tuple[float, float], weight: float) -> tuple[float, float]:
    """Cell moments mixed with `weight` pseudo-observations of the prior (mean, var)."""
    pm, pv = prior
    total = n + weight
    if total <= 0:
        return pm, pv
    m = (n * mean + weight * pm) / total
    v = (n * (var + (mean - m) ** 2) + weight * (pv + (pm - m) ** 2)) / total
    return m, v


@dataclass
class SurpriseNorm:
    cells: dict[str, tuple[float, float]] = field(default_factory=dict)  # "pos,len" -> (mean, std)
    global_stats: tuple[float, float] = (0.0, 1.0)
    max_len: int = MAX_LEN
    n_chains: int = 0

    @classmethod
    def fit(
        cls, surprises: Sequence[Sequence[float]], max_len: int = MAX_LEN, prior_weight: float = PRIOR_WEIGHT
    ) -> SurpriseNorm:
        rows = [list(map(float, s)) for s in surprises if len(s)]
        if not rows:
            raise ValueError("SurpriseNorm.fit needs at least one chain with step surprises")
        flat = [x for r in rows for x in r]
        if not np.isfinite(flat).all():
            raise ValueError("step surprises must be finite")
        _, gm, gv = _moments(flat)
        by_pos: dict[int, list[float]] = {}
        by_cell: dict[tuple[int, int], list[float]] = {}
        for r in rows:
            length = min(len(r), max_len)
            for i, x in enumerate(r):
                pos = min(i, max_len - 1)
                by_pos.setdefault(pos, []).append(x)
                by_cell.setdefault((pos, length), []).append(x)
        pos_prior = {p: _shrink(*_moments(v), (gm, gv), prior_weight) for p, v in by_pos.items()}
        cells = {}
        for (p, length), v in by_cell.items():
            m, var = _shrink(*_moments(v), pos_prior[p], prior_weight)
            cells[f"{p},{length}"] = (m, float(np.sqrt(max(var, 1e-12))))
        return cls(cells, (gm, float(np.sqrt(max(gv, 1e-12)))), max_len, len(rows))

    def z(self, surprise: Sequence[float]) -> list[float]:
        """z-scores of one chain's step surprises against its (position, length) cells."""
        length = min(len(surprise), self.max_len)
        out = []
        for i, x in enumerate(surprise):
            m, sd = self.cells.get(f"{min(i, self.max_len - 1)},{length}", self.global_stats)
            out.append(float((x - m) / sd))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "cells": {k: list(v) for k, v in self.cells.items()},
            "global": list(self.global_stats),
            "max_len": self.max_len,
            "n_chains": self.n_chains,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SurpriseNorm:
        return cls(
            {k: (float(v[0]), float(v[1])) for k, v in d["cells"].items()},
            (float(d["global"][0]), float(d["global"][1])),
            int(d["max_len"]),
            int(d.get("n_chains", 0)),
        )


# The first step more surprising than usual at its position is the likeliest *first* mistake: later steps
# built on a wrong value are surprising too, so the argmax often lands after the first error.
DEFAULT_FIRST_ABOVE = 0.0  # z above the position's mean (label-free default when no threshold was fitted)
FIRST_ABOVE_GRID = (-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0, 1.5, 2.0)  # thresholds fitted on validation chains


def first_above(step_z: Sequence[float], threshold: float = DEFAULT_FIRST_ABOVE) -> int:
    """The first step whose position-normalised surprise exceeds `threshold`; the most surprising when none does.

    >>> first_above([0.4, 1.2, -0.3], 0.5), first_above([0.1, 0.2, -0.3], 0.5)
    (1, 1)
    """
    z = np.asarray(step_z, dtype=np.float64)
    if z.ndim != 1 or z.size == 0:
        raise ValueError(f"first_above needs one z-score per step, got shape {z.shape}")
    above = np.flatnonzero(z > threshold)
    return int(above[0]) if above.size else int(np.argmax(z))
