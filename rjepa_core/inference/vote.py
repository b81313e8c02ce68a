"""Votes that use the world model (SPEC F11 RERANK, issue 12): JEPA-weighted and JEPA-filtered majority.

    >>> answers = ["7", "8", "8", "7", "7"]
    >>> losses = [0.9, 0.10, 0.12, 0.8, 0.85]          # the two "8" chains are far more lawful
    >>> jepa_vote(answers, losses, tau=0.05).best_index   # lawfulness-weighted votes: 8 wins
    1
    >>> answers[jepa_vote(answers, losses, tau=1e6).best_index]   # tau -> infinity: the majority vote again
    '7'
    >>> filtered_majority(answers, losses, drop_frac=0.4).best_index   # drop the 2 least lawful, then vote
    1

jepa_vote: every candidate votes for its (canonical) answer with weight softmax(-loss / tau) over the
K candidates; the answer with the largest total wins and, within it, its most lawful chain is
returned. tau interpolates between pure JEPA reranking (tau -> 0: the min-loss chain's answer wins)
and the majority vote (tau -> infinity). It is given in loss units; `relative_tau` turns a
scale-free value (fitted on validation problems) into one, using the spread of lawful chains' losses.

filtered_majority: the `drop_frac` least lawful candidates (highest JEPA-loss, at least one when
K >= 4) lose their vote, the rest vote; ties between answers go to the one holding the most
probable chain (as in the majority vote), else the most lawful. `jepa_last_filter_majority` is the
same vote with each chain's lawfulness read from its *last* step's surprise (the answer step) instead
of the mean over its steps; `jepa_excess_filter_majority` reads each chain's **excess surprise**, the
sum over its steps of the position-normalised surprise above 0 (how far its steps exceed what lawful
steps at their positions usually show; needs a checkpoint with a surprise normaliser): `vote_losses`
gives the numbers each vote method filters or weights by.

Candidates without an answer never vote. When nobody has an answer, the most lawful chain is returned.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

# the selection names used by the eval and the service
VOTE_METHODS = ("jepa_vote", "jepa_filter_majority", "jepa_last_filter_majority", "jepa_excess_filter_majority")
DEFAULT_TAU_REL = 0.5  # tau in units of the lawful chains' loss std, before a fit on validation problems
DEFAULT_DROP_FRAC = 0.25  # filtered majority: the least lawful quarter loses its vote


@dataclass
class VoteResult:
    best_index: int  # the chosen candidate
    answer_share: list[float]  # per candidate: its answer's share of the (weighted) vote, 0 without an answer
    weights: list[float] = field(default_factory=list)  # per candidate: its vote weight (sums to 1 over voters)


def answer_keys(answers: Sequence[str | None]) -> list[str | None]:
    """Canonical answers: "1,000", "1000.0" and "1000" vote together (the math validator's normal form)."""
    from rjepa_core.validators.math import normalize_answer

    return [normalize_answer(a) for a in answers]


def _check(answers: Sequence[str | None], losses: Sequence[float]) -> np.ndarray:
    if not answers:
        raise ValueError("a vote needs at least one candidate")
    loss = np.asarray(losses, dtype=np.float64)
    if loss.shape != (len(answers),):
        raise ValueError(f"{len(answers)} answers but {loss.size} JEPA-losses: score every candidate")
    if not np.isfinite(loss).all():
        raise ValueError("JEPA-losses must be finite numbers")
    return loss


def _shares(keys: list[str | None], weights: np.ndarray) -> np.ndarray:
    totals: dict[str, float] = {}
    for k, w in zip(keys, weights, strict=True):
        if k is not None:
            totals[k] = totals.get(k, 0.0) + float(w)
    mass = sum(totals.values())
    return np.array([totals[k] / mass if (k is not None and mass > 0) else 0.0 for k in keys])


def _pick(shares: np.ndarray, loss: np.ndarray, tiebreak: np.ndarray) -> int:
    """Largest share; among tied answers the one holding the best tiebreak chain; that chain is returned."""
    return int(max(range(len(shares)), key=lambda i: (round(float(shares[i]), 12), float(tiebreak[i]), -i)))


def jepa_vote(answers: Sequence[str | None], losses: Sequence[float], tau: float) -> VoteResult:
    """JEPA-weighted majority vote with temperature tau (loss units, > 0)."""
    loss = _check(answers, losses)
    if not tau > 0 or not math.isfinite(tau):
        raise ValueError(f"tau must be a positive finite number, got {tau}")
    keys = answer_keys(answers)
    voters = np.array([k is not None for k in keys])
    logits = np.where(voters, -loss / tau, -np.inf)  # (K,)
    if voters.any():
        w = np.exp(logits - logits[voters].max())
        w = w / w.sum()
    else:
        w = np.zeros_like(loss)
    shares = _shares(keys, w)
    return VoteResult(_pick(shares, loss, -loss), shares.tolist(), w.tolist())


def filtered_majority(
    answers: Sequence[str | None],
    losses: Sequence[float],
    drop_frac: float = DEFAULT_DROP_FRAC,
    logprobs: Sequence[float | None] | None = None,
) -> VoteResult:
    """Majority vote among the candidates left after dropping the drop_frac least lawful ones."""
    loss = _check(answers, losses)
    if not 0.0 <= drop_frac < 1.0:
        raise ValueError(f"drop_frac must be in [0, 1), got {drop_frac}")
    n = len(answers)
    n_drop = min(int(round(drop_frac * n)), n - 1)
    order = sorted(range(n), key=lambda i: (-loss[i], i))  # least lawful first
    keep = np.ones(n, dtype=bool)
    keep[order[:n_drop]] = False
    keys = [k if keep[i] else None for i, k in enumerate(answer_keys(answers))]
    w = keep.astype(np.float64) / keep.sum()
    shares = _shares(keys, w)
    lp = np.array([(x if x is not None else -np.inf) for x in (logprobs or [None] * n)], dtype=np.float64)
    # ties between answer clusters: the most probable chain (as the plain majority vote), then the most lawful
    tiebreak = np.where(np.isfinite(lp), lp, -1e300) - 1e-9 * loss if logprobs is not None else -loss
    return VoteResult(_pick(shares, loss, tiebreak), shares.tolist(), w.tolist())


def vote_losses(
    method: str,
    losses: Sequence[float],
    step_surprise: Sequence[Sequence[float] | None],
    step_z: Sequence[Sequence[float] | None] | None = None,
) -> list[float]:
    """The per-candidate numbers a vote method reads: the chain's JEPA-loss; for `jepa_last_filter_majority`
    its last step's surprise (the JEPA-loss where a chain has no steps); for `jepa_excess_filter_majority`
    the sum of its position-normalised surprises above 0 (`step_z`, required)."""
    if method not in VOTE_METHODS:
        raise ValueError(f"unknown vote method {method!r}; use one of {VOTE_METHODS}")
    if len(step_surprise) != len(losses):
        raise ValueError(f"{len(losses)} JEPA-losses but {len(step_surprise)} step-surprise rows")
    if method == "jepa_excess_filter_majority":
        if step_z is None or len(step_z) != len(losses) or any(z is None for z in step_z):
            raise ValueError(
                "jepa_excess_filter_majority reads the position-normalised surprise (step_z) of every candidate: "
                "it needs a checkpoint with a surprise normaliser (materialize jepa_checkpoint again), or choose "
                "another selection"
            )
        return [float(np.clip(np.asarray(z, dtype=np.float64), 0.0, None).sum()) for z in step_z]
    if method != "jepa_last_filter_majority":
        return [float(x) for x in losses]
    return [float(s[-1]) if s is not None and len(s) else float(x) for x, s in zip(losses, step_surprise, strict=True)]


def relative_tau(tau_rel: float, loss_scale: float | None) -> float:
    """tau in loss units from a scale-free tau_rel and the std of lawful chains' losses (calibration.std)."""
    if not tau_rel > 0:
        raise ValueError(f"tau_rel must be positive, got {tau_rel}")
    scale = loss_scale if (loss_scale is not None and loss_scale > 1e-12 and math.isfinite(loss_scale)) else 1.0
    return float(tau_rel * scale)
