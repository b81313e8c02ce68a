"""NUDGE and PLAN on a tiny real student and a tiny R-JEPA: the decisions follow the rule they state.

Nothing here depends on the models being good: the tests check that NUDGE keeps exactly the line
closest to R-JEPA's prediction (recomputed independently), never nudges below its threshold, stops
nudging when the budget is spent, and that PLAN's steps are the decoder's words for R-JEPA's
predicted latents (recomputed independently).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rjepa_core.config import ScoreConfig, rjepa_tiny
from rjepa_core.inference.nudge import NudgeConfig, NudgeThreshold, fit_threshold, nudge, prefix_surprises
from rjepa_core.inference.plan import PlanConfig, plan
from rjepa_core.jepa.decoder import DecoderConfig, StepPair, train_decoder
from rjepa_core.jepa.model import RJEPA
from rjepa_core.jepa.scoring import JEPAScorer, predict_masked

HIDDEN = 64


@pytest.fixture(scope="module")
def scorer():
    torch.manual_seed(0)
    return JEPAScorer(RJEPA(rjepa_tiny(hidden_size=HIDDEN, question_token=True, max_steps=16)), ScoreConfig())


@pytest.fixture(scope="module")
def prompt(tiny_student):
    return tiny_student.prompt_for("What is 3 + 4?")


@pytest.fixture(scope="module")
def decoder(tiny_student):
    """A decoder that writes "3 + 4 = 7" whatever the latent (one text learned from many random latents)."""
    ids = tiny_student.tokenizer("3 + 4 = 7", add_special_tokens=False)["input_ids"]
    Z = np.random.default_rng(1).standard_normal((32, HIDDEN)).astype(np.float32)
    pairs = [StepPair(z, ids) for z in Z]
    cfg = DecoderConfig(d_model=32, n_layers=1, n_heads=2, steps=150, batch_size=16, val_every=50, patience=10,
                        warmup_steps=10, max_tokens=16, dropout=0.0)  # fmt: skip
    return train_decoder(pairs, pairs[:4], cfg)


def _cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_next_steps_returns_single_lines(tiny_student, prompt):
    lines = tiny_student.next_steps(prompt, k=3, temperature=0.9, max_new_tokens=12, seed=0)
    assert len(lines) == 3
    for line in lines:
        assert "\n" not in line.text and line.num_tokens <= 12
        assert math.isfinite(line.logprob) and line.logprob <= 0


def test_no_nudge_below_an_infinite_threshold(tiny_student, scorer, prompt):
    cfg = NudgeConfig(m=3, max_new_tokens=40, step_tokens=10, max_steps=3, temperature=0.9)
    result = nudge(tiny_student, scorer, prompt, cfg, threshold=NudgeThreshold.constant(float("inf")))
    assert result.nudged_steps == [] and result.tokens_used == result.chain_tokens
    assert all("kept" in t.reason and not t.alternatives for t in result.trace)
    assert [t.text for t in result.trace] == result.steps


@pytest.mark.parametrize("teacher_forced", [True, False])
def test_every_step_above_threshold_keeps_the_line_closest_to_the_prediction(
    tiny_student, scorer, prompt, teacher_forced
):
    cfg = NudgeConfig(
        m=3, max_new_tokens=40, step_tokens=10, max_steps=3, budget_tokens=10_000, temperature=0.9,
        teacher_forced=teacher_forced,
    )  # fmt: skip
    result = nudge(tiny_student, scorer, prompt, cfg, threshold=NudgeThreshold.constant(-1e9))
    assert result.trace, "the tiny student wrote no step"
    assert result.tokens_used > result.chain_tokens  # alternatives were sampled
    assert result.latents == ("teacher_forced" if teacher_forced else "captured") and result.latent_fallbacks == 0
    # recompute every decision from the kept chain: the kept step is the alternative closest to the prediction.
    # Teacher-forced, the question latent is the one of the first line written (it depends a little on that
    # line's first token); captured, the kept steps' latents and q are those NUDGE recorded while sampling.
    first = result.trace[0].alternatives[0].text
    q = np.asarray(tiny_student.extract([(prompt, [first])])[0].q, np.float32) if teacher_forced else result.q
    for t in result.trace:
        if teacher_forced:
            ex = tiny_student.extract([(prompt, result.steps[: t.index + 1])])[0]  # the chain as it stood then
            H = np.asarray(ex.H, np.float32)
        else:
            H = result.H[: t.index + 1]
        assert t.alternatives and t.alternatives[0].text == (t.original or t.text)
        cosines = [a.cosine for a in t.alternatives]
        assert t.chosen == int(np.argmax(cosines))
        assert t.text == t.alternatives[t.chosen].text and t.nudged == (t.chosen != 0)
        _, pred = predict_masked(scorer.model, H[: t.index], [t.index], None, q)
        assert _cos(H[t.index], pred[0]) == pytest.approx(max(cosines), abs=1e-3)


def test_a_spent_budget_stops_nudging(tiny_student, scorer, prompt):
    cfg = NudgeConfig(m=4, max_new_tokens=30, step_tokens=10, max_steps=2, budget_tokens=1, temperature=0.9)
    result = nudge(tiny_student, scorer, prompt, cfg, threshold=NudgeThreshold.constant(-1e9))
    assert result.nudged_steps == [] and all("budget" in t.reason for t in result.trace)


def test_alpha_needs_a_decoder_and_records_the_predicted_text(tiny_student, scorer, prompt, decoder):
    with pytest.raises(ValueError, match="decoder"):
        nudge(tiny_student, scorer, prompt, NudgeConfig(alpha=1.0), threshold=NudgeThreshold.constant(0))
    cfg = NudgeConfig(
        m=2, alpha=2.0, max_new_tokens=20, step_tokens=10, max_steps=1, budget_tokens=10_000, temperature=0.9
    )
    result = nudge(tiny_student, scorer, prompt, cfg, threshold=NudgeThreshold.constant(1e-9), decoder=decoder)
    t = result.trace[0]
    assert t.predicted_text == "3 + 4 = 7" and 0 < t.alpha_eff <= 2.0


def test_fit_threshold_is_a_per_position_quantile(scorer):
    rng = np.random.default_rng(0)
    chains = [(rng.standard_normal((3, HIDDEN)).astype(np.float32), None, "math") for _ in range(40)]
    th = fit_threshold(scorer, chains, quantile=0.75)
    pairs = prefix_surprises(scorer, chains)
    assert len(th.by_position) == 3 and th.n_steps == 120
    for p in range(3):
        at = np.array([s for q, s in pairs if q == p])
        assert np.mean(at > th.at(p)) <= 0.25 + 1e-9 and np.mean(at >= th.at(p)) >= 0.25 - 1e-9
    assert th.at(7) == th.overall
    assert NudgeThreshold.from_dict(th.to_dict()) == th


def test_plan_steps_are_the_decoded_predictions(tiny_student, scorer, prompt, decoder):
    given = ["3 + 4 = 7"]
    result = plan(tiny_student, scorer.model, decoder, prompt, given, PlanConfig(k=2, max_new_tokens=12))
    ex = tiny_student.extract([(prompt, given)])[0]
    _, pred = predict_masked(scorer.model, np.asarray(ex.H, np.float32), [1, 2], None, np.asarray(ex.q, np.float32))
    assert [p.decoded for p in result.plan] == decoder.decode(pred, tiny_student.tokenizer) == ["3 + 4 = 7"] * 2
    assert [p.index for p in result.plan] == [1, 2]
    assert result.text.startswith("Step 1: 3 + 4 = 7\nStep 2: 3 + 4 = 7\nStep 3: 3 + 4 = 7")
    assert result.steps[:3] == ["3 + 4 = 7"] * 3 and all(-1 <= p.cosine <= 1 for p in result.plan)


def test_plan_from_the_question_alone_and_by_the_student(tiny_student, scorer, prompt, decoder):
    cfg = PlanConfig(k=1, verbalise="student", continue_generation=False, max_new_tokens=10, temperature=0.9)
    result = plan(tiny_student, scorer.model, decoder, prompt, [], cfg, hinted_prompt=lambda hint: prompt + hint)
    assert result.given_steps == [] and result.tokens_used > 0
    assert all(p.decoded == "3 + 4 = 7" for p in result.plan)
    with pytest.raises(ValueError, match="hinted_prompt"):
        plan(tiny_student, scorer.model, decoder, prompt, [], cfg)
    with pytest.raises(ValueError, match="max_steps"):
        plan(tiny_student, scorer.model, decoder, prompt, ["1 + 1 = 2"], PlanConfig(k=16))
    no_q = RJEPA(rjepa_tiny(hidden_size=HIDDEN, question_token=False))
    with pytest.raises(ValueError, match="question token"):
        plan(tiny_student, no_q, decoder, prompt, [], PlanConfig(k=1))


def test_plan_continues_after_decoded_steps_that_state_no_answer(tiny_student, scorer, prompt, decoder):
    """Decoded steps end in a number ("3 + 4 = 7") but state no answer line: the student must still continue."""
    result = plan(tiny_student, scorer.model, decoder, prompt, [], PlanConfig(k=1, max_new_tokens=6, temperature=0.9))
    assert result.tokens_used > 0 and result.text.startswith("Step 1: 3 + 4 = 7")
