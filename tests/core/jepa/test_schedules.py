import pytest
import torch
from torch import nn

from rjepa_core.config import OptimConfig
from rjepa_core.jepa.ema import ema_update
from rjepa_core.jepa.schedules import lr_at, momentum_at


def test_lr_warmup_then_cosine():
    cfg = OptimConfig(lr=1e-3, min_lr=1e-5, warmup_steps=10, total_steps=110)
    assert lr_at(0, cfg) == 0.0
    assert lr_at(5, cfg) == pytest.approx(5e-4)
    assert lr_at(10, cfg) == pytest.approx(1e-3)
    assert lr_at(60, cfg) == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5))
    assert lr_at(110, cfg) == pytest.approx(1e-5) and lr_at(500, cfg) == pytest.approx(1e-5)
    values = [lr_at(s, cfg) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_momentum_schedule():
    assert momentum_at(0, 100) == pytest.approx(0.996)
    assert momentum_at(50, 100) == pytest.approx(0.998)
    assert momentum_at(100, 100) == 1.0 and momentum_at(1000, 100) == 1.0
    assert momentum_at(10, 20, start=0.9, end=0.99) == pytest.approx(0.945)


def test_ema_moves_target_toward_context():
    torch.manual_seed(0)
    ctx, tgt = nn.Linear(4, 4), nn.Linear(4, 4)
    before = (tgt.weight - ctx.weight).norm()
    old = tgt.weight.detach().clone()
    ema_update(tgt, ctx, 0.9)
    assert torch.allclose(tgt.weight, 0.9 * old + 0.1 * ctx.weight)
    assert (tgt.weight - ctx.weight).norm() < before
    frozen = tgt.weight.detach().clone()
    ema_update(tgt, ctx, 1.0)
    assert torch.equal(tgt.weight, frozen)
