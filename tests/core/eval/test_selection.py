import numpy as np
import pytest

from rjepa_core.eval.selection import (
    METHODS,
    SCORED_METHODS,
    EvalCandidate,
    Weights,
    candidate_scores,
    choose,
    fit_weights,
    random_correctness,
    vote_counts,
)


def cand(i, answer, correct, logprob=-10.0, tokens=10, jepa=0.5, verifier=0.5, probe=0.5):
    surprise = None if jepa is None else [jepa] * 3
    z = None if jepa is None else [jepa - 0.5] * 3  # a stand-in position-normalised surprise
    return EvalCandidate(f"c{i}", answer, correct, logprob, tokens, 3, jepa, surprise, verifier, probe, step_z=z)


def test_majority_vote_groups_equal_numbers_written_differently():
    group = [cand(0, "1,000", True), cand(1, "7", False), cand(2, "1000.0", True), cand(3, "7", False)]
    assert vote_counts(group) == [2, 2, 2, 2]
    group.append(cand(4, "1000", True))
    assert vote_counts(group) == [3, 2, 3, 2, 3]
    assert group[choose("majority", group)].correct


def test_majority_vote_tie_is_broken_by_log_probability():
    group = [
        cand(0, "7", False, logprob=-9.0),
        cand(1, "8", True, logprob=-3.0),
        cand(2, "7", False, -8.0),
        cand(3, "8", True, logprob=-12.0),
    ]
    assert choose("majority", group) == 1  # 2 votes each; the "8" cluster holds the most probable chain
    group[1].logprob = -20.0
    assert choose("majority", group) == 2  # now the "7" cluster does, and its best chain is returned


def test_majority_vote_never_elects_missing_answers():
    group = [cand(0, None, False, logprob=-1.0), cand(1, None, False, logprob=-1.0), cand(2, "5", True, -9.0)]
    assert choose("majority", group) == 2
    assert candidate_scores("majority", group).tolist() == [0.0, 0.0, pytest.approx(1 / 3)]


def test_logprob_sum_and_mean_differ_by_length():
    group = [cand(0, "1", False, logprob=-10.0, tokens=5), cand(1, "2", True, logprob=-12.0, tokens=40)]
    assert choose("logprob_sum", group) == 0
    assert choose("logprob_mean", group) == 1


def test_jepa_picks_min_loss_and_pure_jepa_composite_agrees():
    group = [cand(i, str(i), i == 2, jepa=j) for i, j in enumerate([0.9, 0.7, 0.2, 0.4])]
    assert choose("jepa", group) == 2
    assert choose("composite", group, Weights(0.0, 1.0, 0.0)) == 2
    assert choose("composite", group, Weights(1.0, 0.0, 0.0)) == 0  # equal log-probs: ties go to the first


def test_every_method_returns_one_valid_index_per_problem():
    rng = np.random.default_rng(0)
    groups = [
        [
            cand(
                i,
                str(rng.integers(3)),
                bool(rng.random() < 0.4),
                float(rng.normal(-10, 2)),
                int(rng.integers(5, 50)),
                float(rng.random()),
                float(rng.random()),
                float(rng.random()),
            )
            for i in range(k)
        ]
        for k in (1, 2, 5, 8)
    ]
    for method in SCORED_METHODS:
        picks = [choose(method, g, tau=0.3) for g in groups]
        assert len(picks) == len(groups)
        assert all(0 <= p < len(g) for p, g in zip(picks, groups, strict=True))
        assert all(candidate_scores(method, g, tau=0.3).shape == (len(g),) for g in groups)
    assert set(SCORED_METHODS) < set(METHODS)


def test_unknown_method_and_missing_scores_fail_clearly():
    group = [cand(0, "1", True, jepa=None)]
    with pytest.raises(ValueError, match="unknown selection method"):
        choose("oracle", group)
    with pytest.raises(ValueError, match="score them first"):
        choose("jepa", group)


def test_random_correctness_is_seeded_and_close_to_the_expectation():
    groups = [[cand(i, "x", i < c, jepa=0.1) for i in range(4)] for c in (0, 1, 2, 4)]
    r = random_correctness(groups, draws=2000, seed=5)
    assert r.shape == (4,)
    assert r[0] == 0.0 and r[3] == 1.0
    assert r[1] == pytest.approx(0.25, abs=0.04) and r[2] == pytest.approx(0.5, abs=0.04)
    assert (random_correctness(groups, draws=2000, seed=5) == r).all()


def test_fit_weights_finds_the_informative_term():
    rng = np.random.default_rng(1)
    groups = []
    for _ in range(20):
        ok = rng.permutation([True, False, False, False])
        # JEPA-loss separates right from wrong; log-prob is misleading (right chains are least probable)
        groups.append(
            [
                cand(
                    i,
                    str(i),
                    bool(o),
                    logprob=-30.0 if o else float(rng.normal(-10, 1)),
                    jepa=0.1 if o else 0.5 + float(rng.random()),
                )
                for i, o in enumerate(ok)
            ]
        )
    w, acc = fit_weights(groups)
    assert acc == 1.0
    assert w.beta > 0 and w.beta >= w.alpha


def _lawful_minority_groups(n: int) -> list[list[EvalCandidate]]:
    """Problems where 3 of 5 chains agree on a wrong answer and the 2 right ones are far more lawful."""
    groups = []
    for p in range(n):
        wrong = [EvalCandidate(f"{p}w{i}", "8", False, logprob=-1.0, jepa_loss=0.9 + 0.01 * i) for i in range(3)]
        for c in wrong:
            c.step_surprise = [c.jepa_loss]
        right = [EvalCandidate(f"{p}r{i}", "7", True, logprob=-2.0, jepa_loss=0.1 + 0.01 * i) for i in range(2)]
        for c in right:
            c.step_surprise = [c.jepa_loss]
        groups.append(wrong + right)
    return groups


def test_cross_validated_selection_fits_the_vote_temperature_on_other_folds():
    from rjepa_core.eval.selection import cross_validated_selection

    groups = _lawful_minority_groups(6)
    out = cross_validated_selection(groups, [0, 0, 1, 1, 2, 2])
    # majority elects the wrong cluster everywhere; a lawfulness-weighted vote elects the right one
    assert out["majority"] == 0.0 and out["logprob_sum"] == 0.0
    assert out["jepa"] == 1.0 and out["jepa_vote"] == 1.0 and out["n_problems"] == 6
    assert all(t < 10.0 for t in out["jepa_vote_tau_rel_by_fold"].values()), out["jepa_vote_tau_rel_by_fold"]
    curve = {r["tau_rel"]: r["accuracy"] for r in out["jepa_vote_by_tau"]}
    assert curve[0.03] == 1.0 and curve[10.0] == 0.0  # flat temperature = majority vote
    with pytest.raises(ValueError, match="fold ids"):
        cross_validated_selection(groups, [0, 1])


def test_cross_validated_selection_measures_the_excess_filter_with_a_norm_from_other_folds():
    from rjepa_core.eval.selection import cross_validated_selection

    # 2 wrong "8" chains (one with a very surprising step) against 2 right "7" chains: majority ties and the
    # wrong chains' higher log-prob breaks the tie; dropping the most excess-surprising chain elects "7"
    groups = []
    for p in range(6):
        losses = {"w0": 0.9, "w1": 0.3, "r0": 0.2, "r1": 0.25}
        groups.append(
            [
                EvalCandidate(
                    f"{p}{k}",
                    "8" if k[0] == "w" else "7",
                    k[0] == "r",
                    logprob=-1.0 if k[0] == "w" else -2.0,
                    jepa_loss=v,
                    step_surprise=[v, v / 2],
                )  # fmt: skip
                for k, v in losses.items()
            ]
        )
    out = cross_validated_selection(groups, [0, 0, 1, 1, 2, 2])
    assert out["majority"] == 0.0
    assert out["jepa_excess_filter_majority"] == 1.0
    # without step surprises the step-wise filters are left out, not reported as 0
    for g in groups:
        for c in g:
            c.step_surprise = None
    out = cross_validated_selection(groups, [0, 0, 1, 1, 2, 2])
    assert "jepa_excess_filter_majority" not in out and "jepa_last_filter_majority" not in out
    assert out["jepa_filter_majority"] == 1.0


def test_last_step_filter_reads_the_answer_steps_surprise():
    from rjepa_core.inference.vote import vote_losses

    # by mean loss the two "8" chains look lawful; their answer steps are the surprising ones
    group = [
        EvalCandidate("a", "7", True, logprob=-5.0, jepa_loss=0.6, step_surprise=[0.9, 0.3]),
        EvalCandidate("b", "8", False, logprob=-4.0, jepa_loss=0.3, step_surprise=[0.1, 0.5]),
        EvalCandidate("c", "8", False, logprob=-4.5, jepa_loss=0.35, step_surprise=[0.1, 0.6]),
        EvalCandidate("d", "7", True, logprob=-6.0, jepa_loss=0.65, step_surprise=[1.0, 0.3]),
    ]
    assert group[choose("jepa_filter_majority", group)].answer == "8"  # drops d (mean 0.65): 8 holds 2 of 3
    assert group[choose("jepa_last_filter_majority", group)].answer == "7"  # drops c (answer step 0.6): 7 holds 2 of 3
    assert vote_losses("jepa_last_filter_majority", [0.6, 0.2], [[0.9, 0.3], None]) == [0.3, 0.2]
    assert vote_losses("jepa_vote", [0.6, 0.2], [[0.9, 0.3], None]) == [0.6, 0.2]
    with pytest.raises(ValueError, match="unknown vote method"):
        vote_losses("best", [0.1], [None])
    with pytest.raises(ValueError, match="step_surprise"):
        choose("jepa_last_filter_majority", [EvalCandidate("x", "1", True, jepa_loss=0.1)] * 2)


def test_excess_filter_drops_the_chains_whose_steps_exceed_lawful_ones_most():
    from rjepa_core.inference.vote import vote_losses

    # mean losses say "b" is the least lawful; the position-normalised surprise says "c" has the most excess
    group = [
        EvalCandidate("a", "7", True, logprob=-5.0, jepa_loss=0.3, step_surprise=[0.3, 0.3], step_z=[0.0, 0.5]),
        EvalCandidate("b", "7", True, logprob=-4.0, jepa_loss=0.9, step_surprise=[0.9, 0.9], step_z=[-0.5, 0.2]),
        EvalCandidate("c", "8", False, logprob=-4.5, jepa_loss=0.4, step_surprise=[0.4, 0.4], step_z=[2.0, 1.0]),
        EvalCandidate("d", "8", False, logprob=-6.0, jepa_loss=0.2, step_surprise=[0.2, 0.2], step_z=[0.1, -1.0]),
    ]
    # excess = sum of z above 0: a 0.5, b 0.2, c 3.0, d 0.1 -> c loses its vote; 7 holds 2 of 3
    assert vote_losses("jepa_excess_filter_majority", [0.3, 0.9], [[0.3], [0.9]], [[0.0, 0.5], [-0.5, 0.2]]) == [
        0.5,
        0.2,
    ]
    assert group[choose("jepa_excess_filter_majority", group)].answer == "7"
    assert group[choose("jepa_filter_majority", group)].answer == "8"  # drops b (mean 0.9): 8 holds 2 of 3
    with pytest.raises(ValueError, match="surprise normaliser"):
        vote_losses("jepa_excess_filter_majority", [0.1], [[0.1]], [None])
    with pytest.raises(ValueError, match="surprise normaliser"):
        choose("jepa_excess_filter_majority", [EvalCandidate("x", "1", True, jepa_loss=0.1, step_surprise=[0.1])] * 2)
