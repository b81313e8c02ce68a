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


def test_first_above_picks_the_first_unusual_step_and_its_baselines_are_hand_computed():
    from rjepa_core.eval.localisation import first_above_pick

    # z-scores of 4 wrong 3-step chains; first wrong steps 0, 0, 1, 2
    z = [[0.5, 2.0, 1.0], [-0.2, 0.3, 0.1], [-1.0, 0.4, 2.5], [-0.5, -0.1, -0.3]]
    wrong = [0, 0, 1, 2]
    argmax = first_error_localisation(z, wrong)
    first = first_error_localisation(z, wrong, pick=first_above_pick(0.0))
    # argmax picks 1, 1, 2, 1 (no hit); first step above z=0 picks 0, 1, 1, and 1 (none above: argmax)
    assert argmax["hit_rate"] == 0.0 and first["hit_rate"] == 0.5
    assert first["picks_by_position"] == [1, 3] and first["first_wrong_by_position"] == [2, 1, 1]
    # same pick distribution drawn at random: P(pick) . P(wrong) = (1/4)(2/4) + (3/4)(1/4)
    assert first["matched_chance_rate"] == pytest.approx(0.25 * 0.5 + 0.75 * 0.25)
    assert first["best_constant_rate"] == pytest.approx(0.5)  # always step 0
    assert first["chance_rate"] == pytest.approx(1 / 3)


def test_baselines_are_per_chain_length():
    # two lengths: a rule that picks step 0 of 2-step chains and step 2 of 3-step chains
    z = [[1.0, 0.0], [1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]
    out = first_error_localisation(z, [0, 1, 2, 2])
    assert out["hit_rate"] == 0.75
    # length 2: P(pick 0)=1, P(wrong 0)=1/2 -> 1/2; length 3: P(pick 2)=1, P(wrong 2)=1 -> 1; pooled 3/4
    assert out["matched_chance_rate"] == pytest.approx(0.75) and out["best_constant_rate"] == pytest.approx(0.75)


def test_the_threshold_is_fitted_by_hit_rate_and_needs_enough_chains():
    from rjepa_core.eval.localisation import MIN_FIT_CHAINS, fit_localisation_threshold
    from rjepa_core.jepa.normalisation import DEFAULT_FIRST_ABOVE

    # half the chains go wrong at step 0 (z 1.2), half at step 1 (z 1.2 after 0.7): thresholds 1.0 and 1.5
    # find both; 0.0 and 0.5 always answer step 0 (hit rate 0.5, but no better than a chain-blind pick)
    z = [[1.2, 0.3, 0.9], [0.7, 1.2, 0.9]] * (MIN_FIT_CHAINS // 2)
    wrong = [0, 1] * (MIN_FIT_CHAINS // 2)
    fit = fit_localisation_threshold(z, wrong, grid=(0.0, 0.5, 1.0, 1.5))
    assert fit["fitted"] and fit["threshold"] == 1.0 and fit["n"] == MIN_FIT_CHAINS
    assert fit["hit_rate"] == 1.0 and fit["skill"] == pytest.approx(0.5)
    assert fit["grid"]["0.5"] == {"hit_rate": 0.5, "skill": 0.0}
    few = fit_localisation_threshold(z[:3], wrong[:3])
    assert not few["fitted"] and few["threshold"] == DEFAULT_FIRST_ABOVE and few["n"] == 3
    # ties go to the threshold nearest the label-free default
    tie = fit_localisation_threshold([[2.0, 0.0]] * MIN_FIT_CHAINS, [0] * MIN_FIT_CHAINS, grid=(-1.0, 0.0, 1.0))
    assert tie["threshold"] == DEFAULT_FIRST_ABOVE
