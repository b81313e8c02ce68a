import numpy as np
import torch

from rjepa_core.config import rjepa_tiny
from rjepa_core.jepa.collate import pad_batch
from rjepa_core.jepa.model import RJEPA

HIDDEN = 24


def _model(**kw) -> RJEPA:
    torch.manual_seed(0)
    return RJEPA(rjepa_tiny(HIDDEN, max_steps=16, **kw)).eval()


def _chains(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, HIDDEN)).astype(np.float32) for n in lengths]


def test_shapes_and_only_target_positions_returned():
    m = _model()
    b = pad_batch(_chains([5, 3]), [0, 2], [[1, 2, 3], [2]])
    pred = m.predict(b.H, b.valid, b.domain_ids, b.ctx_valid, b.tgt_idx, b.tgt_valid)
    assert pred.shape == (2, 3, 64)  # (B, T, D): one row per target slot, not per step
    assert m.encode_targets(b.H, b.valid, b.domain_ids).shape == (2, 5, 64)
    assert m.to_hidden(pred).shape == (2, 3, HIDDEN)
    tgt = m.encode_targets(b.H, b.valid, b.domain_ids)
    # layer-normed without affine: zero mean, unit variance over D
    assert torch.allclose(tgt.mean(-1), torch.zeros(2, 5), atol=1e-5)
    assert not any(p.requires_grad for p in m.target_encoder.parameters())


def test_padded_batch_equals_singles():
    m = _model()
    chains = _chains([6, 2, 4])
    targets = [[2, 3], [1], [0]]
    b = pad_batch(chains, [0, 1, 3], targets)
    batched = m.predict(b.H, b.valid, b.domain_ids, b.ctx_valid, b.tgt_idx, b.tgt_valid)
    tgt_b = m.encode_targets(b.H, b.valid, b.domain_ids)
    for i, (h, t, d) in enumerate(zip(chains, targets, [0, 1, 3], strict=True)):
        s = pad_batch([h], [d], [t])
        single = m.predict(s.H, s.valid, s.domain_ids, s.ctx_valid, s.tgt_idx, s.tgt_valid)
        assert torch.allclose(batched[i, : len(t)], single[0], atol=1e-5)
        tgt_s = m.encode_targets(s.H, s.valid, s.domain_ids)
        assert torch.allclose(tgt_b[i, : h.shape[0]], tgt_s[0], atol=1e-5)


def test_masked_steps_never_reach_the_context_encoder():
    m = _model()
    h = _chains([6])[0]
    b = pad_batch([h], [0], [[2, 3]])
    h2 = h.copy()
    h2[2] += 100.0  # a masked step, wildly perturbed
    h2[3] = -h2[3]
    b2 = pad_batch([h2], [0], [[2, 3]])
    ctx1, _ = m.encode_context(b.H, b.ctx_valid, b.domain_ids)
    ctx2, _ = m.encode_context(b2.H, b2.ctx_valid, b2.domain_ids)
    visible = torch.cat([torch.tensor([True]), b.ctx_valid[0]])  # register + visible steps
    assert torch.equal(ctx1[0, visible], ctx2[0, visible])
    p1 = m.predict(b.H, b.valid, b.domain_ids, b.ctx_valid, b.tgt_idx, b.tgt_valid)
    p2 = m.predict(b2.H, b2.valid, b2.domain_ids, b2.ctx_valid, b2.tgt_idx, b2.tgt_valid)
    assert torch.equal(p1, p2)
    # a visible step does change the prediction
    h3 = h.copy()
    h3[0] += 5.0
    b3 = pad_batch([h3], [0], [[2, 3]])
    p3 = m.predict(b3.H, b3.valid, b3.domain_ids, b3.ctx_valid, b3.tgt_idx, b3.tgt_valid)
    assert not torch.allclose(p1, p3)


def test_domain_and_position_matter_and_empty_context_is_finite():
    m = _model()
    h = _chains([1])[0]
    b0 = pad_batch([h], [0], [[0]])  # single-step chain: no visible step at all
    b1 = pad_batch([h], [1], [[0]])
    p0 = m.predict(b0.H, b0.valid, b0.domain_ids, b0.ctx_valid, b0.tgt_idx, b0.tgt_valid)
    p1 = m.predict(b1.H, b1.valid, b1.domain_ids, b1.ctx_valid, b1.tgt_idx, b1.tgt_valid)
    assert torch.isfinite(p0).all() and not torch.allclose(p0, p1)


def test_step_type_embedding_optional():
    m = _model(use_step_type=True, num_step_types=3)
    b = pad_batch(_chains([4]), [0], [[1]])
    types = torch.tensor([[0, 1, 2, 1]])
    a = m.predict(b.H, b.valid, b.domain_ids, b.ctx_valid, b.tgt_idx, b.tgt_valid, step_types=types)
    z = m.predict(b.H, b.valid, b.domain_ids, b.ctx_valid, b.tgt_idx, b.tgt_valid)
    assert a.shape == z.shape and not torch.allclose(a, z)


def test_wrong_width_is_a_clear_error():
    m = _model()
    b = pad_batch([np.zeros((3, HIDDEN + 1), np.float32)], [0], [[1]])
    try:
        m.encode_targets(b.H, b.valid, b.domain_ids)
    except ValueError as e:
        assert f"hidden size {HIDDEN}" in str(e) and "calibration adapter" in str(e)
    else:
        raise AssertionError("width mismatch not detected")
