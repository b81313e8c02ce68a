import numpy as np
import pytest

from rjepa_core.eval.selection import EvalCandidate, choose, fit_tau
from rjepa_core.inference.vote import filtered_majority, jepa_vote, relative_tau


def test_jepa_vote_moves_from_reranking_to_majority_as_tau_grows():
    answers = ["7", "7", "7", "8", "8"]
    losses = [1.0, 1.1, 0.9, 0.1, 0.2]
    assert answers[jepa_vote(answers, losses, tau=0.05).best_index] == "8"  # lawfulness wins
    assert answers[jepa_vote(answers, losses, tau=100.0).best_index] == "7"  # the plain majority
    r = jepa_vote(answers, losses, tau=100.0)
    assert sum(r.weights) == pytest.approx(1.0)
    assert r.answer_share[0] == pytest.approx(3 / 5, abs=1e-2)


def test_the_chosen_chain_is_the_most_lawful_of_the_winning_answer():
    answers = ["5", "5", "5", "9"]
    losses = [0.6, 0.3, 0.5, 0.4]
    assert jepa_vote(answers, losses, tau=10.0).best_index == 1
    assert filtered_majority(answers, losses, drop_frac=0.0).best_index in (0, 1, 2)


def test_answers_written_differently_vote_together_and_missing_answers_never_vote():
    answers = ["1,000", "1000.0", None, "12"]
    losses = [0.5, 0.5, 0.0, 0.45]
    r = jepa_vote(answers, losses, tau=1.0)
    assert r.best_index in (0, 1)
    assert r.answer_share[2] == 0.0 and r.weights[2] == 0.0
    assert jepa_vote([None, None], [0.3, 0.1], tau=1.0).best_index == 1  # nobody answered: most lawful chain


def test_filtered_majority_drops_the_least_lawful_quarter():
    answers = ["3", "3", "4", "4", "4", "3", "3", "4"]
    losses = [0.1, 0.2, 0.9, 0.8, 0.7, 0.3, 0.25, 0.15]
    # 4 votes each before the filter; the two least lawful ("4" at 0.9 and 0.8) lose their vote
    r = filtered_majority(answers, losses)
    assert answers[r.best_index] == "3" and r.best_index == 0
    assert sum(w > 0 for w in r.weights) == 6


@pytest.mark.parametrize(
    "call",
    [
        lambda: jepa_vote([], [], tau=1.0),
        lambda: jepa_vote(["1"], [0.1, 0.2], tau=1.0),
        lambda: jepa_vote(["1"], [float("nan")], tau=1.0),
        lambda: jepa_vote(["1"], [0.1], tau=0.0),
        lambda: filtered_majority(["1"], [0.1], drop_frac=1.0),
        lambda: relative_tau(-1.0, 1.0),
    ],
)
def test_bad_arguments_say_what_is_wrong(call):
    with pytest.raises(ValueError):
        call()


def test_relative_tau_uses_the_loss_scale_and_falls_back_to_one():
    assert relative_tau(0.5, 2.0) == 1.0
    assert relative_tau(0.5, None) == 0.5 and relative_tau(0.5, 0.0) == 0.5


def _group(rng, lawful_signal: float):
    """8 candidates; correct ones have lower JEPA-loss by `lawful_signal` std; wrong ones share a popular answer."""
    correct = rng.random(8) < 0.35
    answers = ["42" if c else ("13" if rng.random() < 0.7 else str(rng.integers(100))) for c in correct]
    loss = rng.normal(1.0, 0.1, 8) - lawful_signal * 0.1 * correct
    return [
        EvalCandidate(f"c{i}", a, bool(c), -10.0, 10, 3, float(x), None, None, None)
        for i, (a, c, x) in enumerate(zip(answers, correct, loss, strict=True))
    ]


def test_fit_tau_follows_the_signal():
    rng = np.random.default_rng(0)
    strong = [_group(rng, 4.0) for _ in range(120)]
    tau_rel, acc, rows = fit_tau(strong, loss_scale=0.1)
    majority = np.mean([g[choose("majority", g)].correct for g in strong])
    assert tau_rel <= 1.0 and acc > majority + 0.15  # lawfulness beats the wrong-but-popular answer
    null = [_group(rng, 0.0) for _ in range(120)]
    tau_null, _, _ = fit_tau(null, loss_scale=0.1)
    assert tau_null >= 1.0  # no signal: the fit stays near the majority vote
    assert [r["tau_rel"] for r in rows] == sorted(r["tau_rel"] for r in rows)
    with pytest.raises(ValueError):
        fit_tau([], 0.1)
