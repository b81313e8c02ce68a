"""The question token: every step predicted from the problem's question latent too (model.question_token)."""

import numpy as np
import pytest
import torch

from rjepa_core.config import MaskConfig
from rjepa_core.eval.metrics import auroc
from rjepa_core.jepa.checkpoint import load_checkpoint
from rjepa_core.jepa.collate import Chain, Collator, as_chain, pad_batch
from rjepa_core.jepa.masks import make_masker
from rjepa_core.jepa.model import RJEPA
from rjepa_core.jepa.scoring import JEPAScorer, predict_masked
from rjepa_core.jepa.trainer import train
from rjepa_core.schemas import LatentSequence
from tests.core.jepa.conftest import HIDDEN, tiny_config
from tests.stats import null_auroc_sd


def _world(seed: int = 7):
    """Two fixed maps from a problem's question to its two steps: the 'right answer' of each problem."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(HIDDEN, HIDDEN)) / np.sqrt(HIDDEN), rng.normal(size=(HIDDEN, HIDDEN)) / np.sqrt(HIDDEN)


def _chain(q_for_steps: np.ndarray, q: np.ndarray, maps, rng, valid: bool = True) -> Chain:
    A, B = maps
    H = np.stack([q_for_steps @ A, q_for_steps @ B]) + 0.05 * rng.normal(size=(2, HIDDEN))
    return Chain(H.astype(np.float16), "math", valid, q.astype(np.float16))


def _problems(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, HIDDEN))


def test_masker_counts_the_question_as_context():
    masker = make_masker(MaskConfig(kind="contiguous", min_context=1))
    g = torch.Generator().manual_seed(0)
    assert masker.length_needed(0) == 2 and masker.length_needed(1) == 1
    assert masker(1, g, extra_context=1) == [0]  # a one-step chain is predicted from its question alone
    with pytest.raises(ValueError, match="at least 2 steps"):
        masker(1, g)
    for kind in ("random", "hierarchical", "conclusion"):
        assert make_masker(MaskConfig(kind=kind))(1, g, extra_context=1) == [0]
    assert masker(3, g) != [0, 1, 2]  # without a question one step always stays visible


def test_question_token_conditions_predictions_only_when_present():
    torch.manual_seed(0)
    cfg = tiny_config(model={"question_token": True}).model
    model = RJEPA(cfg).eval()
    rng = np.random.default_rng(0)
    H = rng.normal(size=(3, HIDDEN)).astype(np.float32)
    q1, q2 = rng.normal(size=(2, HIDDEN)).astype(np.float32)  # (not constant: the input LayerNorm zeroes those)
    p1, _ = predict_masked(model, H, [1], "math", q1)
    p2, _ = predict_masked(model, H, [1], "math", q2)
    p0, _ = predict_masked(model, H, [1], "math", None)
    assert not np.allclose(p1, p2, atol=1e-4) and not np.allclose(p0, p1, atol=1e-4)
    # a masked-out question token carries nothing: its values cannot leak into predictions
    b = pad_batch([H, H], [0, 0], [[1], [1]], questions=[q1, q2])
    b.q_valid[:] = False
    out = model.predict(b.H, b.valid, b.domain_ids, b.ctx_valid, b.tgt_idx, b.tgt_valid, None, b.Q, b.q_valid)
    torch.testing.assert_close(out[0], out[1])
    np.testing.assert_allclose(out[0].detach().numpy(), p0, atol=1e-5)
    # without the flag the model has no question parameters and ignores Q
    plain = RJEPA(tiny_config().model).eval()
    assert not any("question" in n for n, _ in plain.named_parameters())
    a, _ = predict_masked(plain, H, [1], "math", q1)
    c, _ = predict_masked(plain, H, [1], "math", q2)
    np.testing.assert_allclose(a, c)


def test_collator_trains_one_step_chains_that_carry_a_question():
    rng = np.random.default_rng(0)
    one_step = [Chain(rng.normal(size=(1, 8)).astype(np.float16), "math", True, np.ones(8, np.float16))]
    with_q = Collator(make_masker(MaskConfig()), use_questions=True)(one_step * 2, step=0)
    assert with_q.tgt_idx.tolist() == [[0], [0]] and not with_q.ctx_valid.any() and with_q.q_valid.all()
    with pytest.raises(ValueError, match="shorter than 2 steps"):
        Collator(make_masker(MaskConfig()), use_questions=False)(one_step, step=0)
    with pytest.raises(ValueError, match="question latent of width 4"):
        pad_batch([np.zeros((2, 8))], [0], [[1]], questions=[np.zeros(4)])


def test_as_chain_takes_the_question_latent_of_a_latent_sequence():
    seq = LatentSequence(
        cot_id="c",
        problem_id="p",
        llm_tag="t",
        layer_idx=-2,
        hidden_size=4,
        num_steps=1,
        step_spans=[(3, 5)],
        token_ids=[1, 2, 3, 4, 5],
        H=np.zeros((1, 4), np.float16),
        Q=np.ones(4, np.float16),
    ).check()
    np.testing.assert_array_equal(as_chain(seq).q, np.ones(4))
    with pytest.raises(ValueError, match="question latent Q has shape"):
        seq.model_copy(update={"Q": np.ones(3)}).check()


N_TEST = 80  # test problems: 80 right + 80 wrong-problem chains, so a random AUROC is 0.5 ± 0.046


def test_question_conditioned_model_spots_right_steps_for_the_wrong_problem(tmp_path):
    """Chains that are internally lawful but answer another problem: only the question can tell them apart.

    Random scores give AUROC 0.5 ± null_auroc_sd(80, 80) = 0.046. With the question token the model
    must reach 0.5 + 7 sd ≈ 0.82 (it gets ~0.95 here); without it the two classes are the same
    distribution of step pairs, so the AUROC must stay within 4 sd of chance (|AUROC - 0.5| < 0.18):
    a model that used the question wrongly, or leaked labels, fails one side or the other.
    """
    maps, rng = _world(), np.random.default_rng(1)
    qs = _problems(300, seed=2)
    train_chains = [_chain(q, q, maps, rng) for q in qs[:260]]
    val_chains = [_chain(q, q, maps, rng) for q in qs[260:]]
    test_q = _problems(N_TEST, seed=3)
    right = [_chain(q, q, maps, rng) for q in test_q]
    wrong = [_chain(test_q[(i + 1) % N_TEST], q, maps, rng, valid=False) for i, q in enumerate(test_q)]
    labels = [True] * N_TEST + [False] * N_TEST
    overrides = {"optim": {"total_steps": 300, "warmup_steps": 20, "lr": 3e-3}}
    aurocs = {}
    for flag in (True, False):
        cfg = tiny_config(model={"question_token": flag}, **overrides)
        res = train(cfg, train_chains, val_chains, tmp_path / str(flag), device="cpu")
        scorer = JEPAScorer.from_checkpoint(load_checkpoint(res.checkpoint_dir))
        chains = right + wrong
        scores = scorer.score([c.H for c in chains], ["math"] * len(chains), [c.q for c in chains])
        aurocs[flag] = auroc([-s.jepa_loss for s in scores], labels)
    sd = null_auroc_sd(N_TEST, N_TEST)
    assert aurocs[True] > 0.5 + 7 * sd, aurocs
    assert abs(aurocs[False] - 0.5) < 4 * sd, aurocs  # the steps agree with each other: without the question, chance


def test_scorer_checks_question_latents():
    torch.manual_seed(0)
    scorer = JEPAScorer(RJEPA(tiny_config(model={"question_token": True}).model))
    H = np.random.default_rng(0).normal(size=(2, HIDDEN)).astype(np.float32)
    with pytest.raises(ValueError, match="question latent must be 32 finite numbers"):
        scorer.score([H], ["math"], [np.zeros(5)])
    with pytest.raises(ValueError, match="1 chains but 2 question latents"):
        scorer.score([H], ["math"], [None, None])
    q = np.full(HIDDEN, np.nan)
    with pytest.raises(ValueError, match="finite"):
        scorer.score([H], ["math"], [q])
    with_q = scorer.score([H], ["math"], [np.arange(HIDDEN, dtype=np.float32)])[0].jepa_loss
    assert with_q != scorer.score([H], ["math"])[0].jepa_loss


def test_batches_number_the_chains_problems():
    from types import SimpleNamespace

    rows = [SimpleNamespace(H=np.zeros((3, 8), np.float16), problem_id=p) for p in ("a", None, "a", "b")]
    b = Collator(make_masker(MaskConfig()))(rows, step=0)
    assert b.group.tolist() == [0, -1, 0, 1]
    assert as_chain(rows[3]).group == "b"
