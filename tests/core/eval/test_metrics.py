import numpy as np
import pytest

from rjepa_core.eval.metrics import (
    accuracy,
    auroc,
    bootstrap_ci,
    mean_within_group_auroc,
    oracle_pass_at_k,
    paired_difference,
)


def test_accuracy_is_the_mean_and_nan_when_empty():
    assert accuracy([True, False, True, True]) == 0.75
    assert accuracy([0.5, 1.0]) == 0.75
    assert np.isnan(accuracy([]))


def test_bootstrap_ci_contains_the_estimate_is_seeded_and_narrows_with_more_problems():
    rng = np.random.default_rng(0)
    small = rng.random(40) < 0.6
    lo, hi = bootstrap_ci(small, seed=3)
    assert lo <= accuracy(small) <= hi
    assert bootstrap_ci(small, seed=3) == [lo, hi]
    assert 0.0 <= lo < hi <= 1.0
    big = np.tile(small, 25)  # same rate, 25x the problems
    lo2, hi2 = bootstrap_ci(big, seed=3)
    assert hi2 - lo2 < (hi - lo) / 2


def test_bootstrap_ci_of_a_constant_is_that_constant():
    assert bootstrap_ci([1, 1, 1, 1]) == [1.0, 1.0]


def test_auroc_hand_computed_values():
    assert auroc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert auroc([0.1, 0.2, 0.9, 0.8], [True, True, False, False]) == 0.0
    # pairs (pos, neg): (0.35, 0.1) ok, (0.35, 0.4) wrong, (0.8, 0.1) ok, (0.8, 0.4) ok -> 3/4
    assert auroc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == pytest.approx(0.75)
    assert auroc([0.5, 0.5], [True, False]) == 0.5


def test_auroc_is_none_with_one_class_and_ignores_non_finite_scores():
    assert auroc([0.1, 0.2], [True, True]) is None
    assert auroc([], []) is None
    assert auroc([0.9, float("nan"), 0.1], [True, True, False]) == 1.0
    with pytest.raises(ValueError, match="labels"):
        auroc([0.1], [True, False])


def test_within_group_auroc_skips_single_class_groups():
    scores = [[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]]
    labels = [[True, False], [True, False], [True, True]]
    assert mean_within_group_auroc(scores, labels) == pytest.approx(0.5)
    assert mean_within_group_auroc([[0.1]], [[True]]) is None


def test_oracle_pass_at_k_uses_the_first_k_candidates():
    groups = [[False, True, False], [False, False, True], [False, False, False]]
    assert oracle_pass_at_k(groups, 1) == 0.0
    assert oracle_pass_at_k(groups, 2) == pytest.approx(1 / 3)
    assert oracle_pass_at_k(groups, 3) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        oracle_pass_at_k(groups, 0)


def test_paired_difference_mean_and_interval():
    a = [1, 1, 1, 0, 1, 1, 0, 1]
    b = [0, 1, 0, 0, 1, 0, 0, 1]
    d = paired_difference(a, b, seed=1)
    assert d["mean"] == pytest.approx(3 / 8)
    lo, hi = d["ci95"]
    assert lo <= 3 / 8 <= hi
    with pytest.raises(ValueError, match="one value per problem"):
        paired_difference([1, 0], [1])
