import pytest

from rjepa_core.eval.localisation import first_error_localisation, first_wrong_step_of


def test_hit_rate_against_chance_hand_computed():
    out = first_error_localisation([[0.1, 0.9, 0.2], [0.5, 0.1, 0.1, 0.1]], [1, 2])
    assert out["n"] == 2
    assert out["hit_rate"] == 0.5
    assert out["chance_rate"] == pytest.approx((1 / 3 + 1 / 4) / 2)
    assert out["within_one_rate"] == 0.5
    lo, hi = out["hit_rate_ci95"]
    assert lo <= 0.5 <= hi


def test_unlabelled_single_step_and_out_of_range_chains_are_left_out():
    out = first_error_localisation([[0.3], [0.1, 0.2], [0.4, 0.1], [0.1, 0.9]], [0, None, 5, 1])
    assert out["n"] == 1 and out["hit_rate"] == 1.0 and out["chance_rate"] == 0.5
    empty = first_error_localisation([], [])
    assert empty["n"] == 0 and empty["hit_rate"] is None


def test_first_wrong_step_comes_from_meta_or_the_arithmetic_recheck():
    steps = ["3 * 4 = 12 apples", "12 - 5 = 8 left", "8 + 1 = 9"]
    assert first_wrong_step_of(steps, {"first_wrong_step": 2}) == 2
    assert first_wrong_step_of(steps, {"first_wrong_step": None}) is None
    assert first_wrong_step_of(steps, {}) == 1
