"""Thresholds for statistical tests that hold on any float path (thread count, BLAS build, CPU kernels).

    >>> null_wins_threshold(200)            # a coin-flip scorer reaches it with probability < 1e-4
    127
    >>> round(null_auroc_sd(80, 80), 3)     # spread of a random scorer's AUROC on 80 + 80 cases
    0.046

A test of a learned property compares a count (wins, hits) or an AUROC with what a *broken* model
would give (random scores: wins ~ Binomial(n, 1/2), AUROC ~ 0.5 ± null_auroc_sd). The threshold is
placed far enough above that null for a broken model to fail almost surely, and the test's case is
made large or strong enough that a working model clears the threshold by several of its own standard
deviations, so rounding differences between machines cannot flip the verdict. Each test's docstring
states both numbers.
"""

from __future__ import annotations

import math

from scipy.stats import binom

ALPHA = 1e-4  # chance that a broken (random) model passes a test built on these thresholds


def null_wins_threshold(n: int, p: float = 0.5, alpha: float = ALPHA) -> int:
    """Smallest count t with P(Binomial(n, p) >= t) < alpha: what a random scorer does not reach."""
    return int(binom.isf(alpha, n, p)) + 1


def null_auroc_sd(n_pos: int, n_neg: int) -> float:
    """Standard deviation of the AUROC of random scores (Mann-Whitney null, no ties)."""
    return math.sqrt((n_pos + n_neg + 1) / (12.0 * n_pos * n_neg))
