"""Calibrated 0-1 lawfulness score against the validation distribution (SPEC F10).

    >>> cal = Calibration.from_losses([0.2, 0.4, 0.6, 0.8])
    >>> cal.score01(0.1), cal.score01(0.5), cal.score01(0.9)
    (1.0, 0.5, 0.0)
    >>> Calibration.from_dict(cal.to_dict()) == cal
    True

score01(loss) = 1 - F(loss), F the empirical CDF of the JEPA-losses of validated held-out chains:
the fraction of lawful validation chains that the chain beats. Higher = more lawful; it falls
monotonically as the loss grows. It is stored as JSON in the checkpoint's meta ("calibration").

This module sits below `scoring` (which imports `Calibration`): `fit_calibration` takes any scorer with a
`score(seqs, domains, questions)` method (`JEPAScorer`, or one reading latents through a cross-LLM
adapter) and never imports the scoring module back.

Not to be confused with the cross-LLM latent adapters of `rjepa_core.transfer` (SPEC F13), which map one
student's latents into another's space: this is only the 0-1 scale of one checkpoint's JEPA-loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from rjepa_core.jepa.collate import as_chain

MAX_POINTS = 2001  # quantiles kept: enough for a smooth CDF, small enough for meta.json


@dataclass
class Calibration:
    losses: list[float]  # sorted JEPA-losses of validated validation chains (or evenly spaced quantiles of them)
    mean: float  # mean of the validation losses
    std: float  # std of the validation losses
    count: int  # chains the calibration was fitted on

    @classmethod
    def from_losses(cls, losses: Sequence[float], max_points: int = MAX_POINTS) -> Calibration:
        arr = np.sort(np.asarray(losses, dtype=np.float64))
        if arr.size == 0 or not np.isfinite(arr).all():
            raise ValueError("calibration needs at least one finite validation loss: score some validated chains")
        if arr.size > max_points:
            arr = np.quantile(arr, np.linspace(0.0, 1.0, max_points))
        full = np.asarray(losses, dtype=np.float64)
        return cls([float(x) for x in arr], float(full.mean()), float(full.std()), int(full.size))

    def cdf(self, loss: float) -> float:
        """Fraction of validation losses <= loss."""
        return float(np.searchsorted(np.asarray(self.losses), loss, side="right") / len(self.losses))

    def score01(self, loss: float) -> float:
        return 1.0 - self.cdf(loss)

    def zscore(self, loss: float) -> float:
        return (loss - self.mean) / self.std if self.std > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"losses": self.losses, "mean": self.mean, "std": self.std, "count": self.count}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        return cls([float(x) for x in d["losses"]], float(d["mean"]), float(d["std"]), int(d["count"]))


class ChainScorer(Protocol):
    """What calibration needs of a scorer: chain JEPA-losses (`rjepa_core.jepa.scoring.JEPAScorer` is one)."""

    def score(self, seqs: Sequence[np.ndarray], domains: Sequence[str | None], questions: Sequence[Any]) -> list[Any]:
        """One result with a `.jepa_loss` per chain."""
        ...


def fit_calibration(scorer: ChainScorer, val_seqs: Sequence[Any]) -> Calibration:
    """Score the validated chains of val_seqs (LatentSequence, Chain or arrays) and keep their loss CDF."""
    chains = [c for c in map(as_chain, val_seqs) if c.is_valid]
    if not chains:
        raise ValueError("fit_calibration needs validated chains (is_valid=True) from the validation split")
    scores = scorer.score([c.H for c in chains], [c.domain for c in chains], [c.q for c in chains])
    return Calibration.from_losses([s.jepa_loss for s in scores])
