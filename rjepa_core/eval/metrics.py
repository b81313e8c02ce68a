"""Evaluation metrics (SPEC F15): accuracy with a bootstrap interval, AUROC, oracle pass@K.

    >>> accuracy([True, False, True, True])
    0.75
    >>> lo, hi = bootstrap_ci([1, 0, 1, 1, 0, 1], n_resamples=1000, seed=0)
    >>> lo <= 4 / 6 <= hi
    True
    >>> auroc([0.9, 0.8, 0.1], [True, True, False])
    1.0
    >>> oracle_pass_at_k([[False, True, False], [False, False, False]], k=2)
    0.5

The bootstrap resamples *problems* (one value per problem), never chains, so chains of one problem
that share its difficulty do not count as independent evidence.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

N_RESAMPLES = 1000  # bootstrap resamples for every 95 % interval in the report


def accuracy(correct: Sequence[bool | float]) -> float:
    """Mean of per-problem correctness (bools, or fractions for averaged methods); nan when empty."""
    arr = np.asarray(correct, dtype=np.float64)
    return float(arr.mean()) if arr.size else float("nan")


def bootstrap_ci(
    values: Sequence[float], n_resamples: int = N_RESAMPLES, seed: int = 0, level: float = 0.95
) -> list[float]:
    """Percentile bootstrap interval [lo, hi] of the mean of per-problem values (seeded, reproducible)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, arr.size, size=(n_resamples, arr.size))  # (R, N) problems drawn with replacement
    means = arr[idx].mean(axis=1)  # (R,)
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [tail, 1.0 - tail])
    return [float(lo), float(hi)]


def paired_difference(
    a: Sequence[float], b: Sequence[float], n_resamples: int = N_RESAMPLES, seed: int = 0
) -> dict[str, float | list[float]]:
    """Mean of a - b over the same problems with a paired bootstrap interval (e.g. rerank minus majority)."""
    da, db = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if da.shape != db.shape:
        raise ValueError(f"paired difference needs one value per problem on both sides, got {da.shape} and {db.shape}")
    diff = da - db
    return {"mean": accuracy(diff), "ci95": bootstrap_ci(diff, n_resamples, seed)}


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Area under the ROC curve of `scores` (higher = more likely correct); None with a single class."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    if y.size != s.size:
        raise ValueError(f"{s.size} scores but {y.size} labels")
    keep = np.isfinite(s)
    y, s = y[keep], s[keep]
    if y.size == 0 or y.all() or not y.any():
        return None
    return float(roc_auc_score(y, s))


def mean_within_group_auroc(scores: Sequence[Sequence[float]], labels: Sequence[Sequence[bool]]) -> float | None:
    """Mean AUROC inside each group (the K candidates of one problem) that has both classes.

    This is what reranking needs: separating a problem's right chains from its wrong ones, whatever
    the problem's overall difficulty.
    """
    values = [a for s, y in zip(scores, labels, strict=True) if (a := auroc(s, y)) is not None]
    return float(np.mean(values)) if values else None


def oracle_pass_at_k(correct_per_problem: Sequence[Sequence[bool]], k: int) -> float:
    """Fraction of problems with at least one correct chain among their first k candidates."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    hits = [bool(any(list(c)[:k])) for c in correct_per_problem]
    return accuracy(hits)
