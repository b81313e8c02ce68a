import math

import torch
import torch.nn.functional as F

from rjepa_core.config import LossConfig
from rjepa_core.jepa.losses import covariance_penalty, info_nce, jepa_losses, token_loss, variance_hinge


def _data(B=8, T=3, D=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    tgt = F.layer_norm(torch.randn(B, T, D, generator=g), (D,))
    return torch.randn(B, T, D, generator=g), tgt


def test_all_terms_finite_and_separate():
    pred, tgt = _data()
    pred.requires_grad_(True)
    tv = torch.ones(8, 3, dtype=torch.bool)
    tv[0, 2] = False
    is_valid = torch.tensor([True] * 6 + [False] * 2)
    cfg = LossConfig(vicreg_cov_weight=0.04, infonce_weight=0.5, hard_negatives=True)
    hp, ht = torch.randn(8, 3, 5), torch.randn(8, 3, 5)
    out = jepa_losses(cfg, pred, tgt, tv, is_valid, hp, ht)
    for k in ("jepa", "var", "cov", "infonce", "hidden"):
        assert isinstance(out[k], float) and math.isfinite(out[k])
    assert out["infonce"] > 0 and out["cov"] > 0 and out["hidden"] > 0
    expected = out["jepa"] + 0.1 * out["var"] + 0.04 * out["cov"] + 0.5 * out["infonce"] + 0.1 * out["hidden"]
    assert abs(float(out["total"].detach()) - expected) < 1e-4
    out["total"].backward()
    assert pred.grad is not None and pred.grad[0, 2].abs().sum() == 0  # padded target gets no gradient
    assert pred.grad[6:].abs().sum() == 0  # invalid chains are never regressed on: only their targets are negatives
    assert pred.grad[:6].abs().sum() > 0
    plain = jepa_losses(LossConfig(var_weight=0, infonce_weight=0.5), pred, tgt, tv, is_valid)
    assert plain["jepa"] == out["jepa"]


def test_regression_excludes_invalid_chains():
    pred, tgt = _data()
    tv = torch.ones(8, 3, dtype=torch.bool)
    good = pred.clone()
    good[:4] = tgt[:4]
    only_first = torch.tensor([True] * 4 + [False] * 4)
    assert jepa_losses(LossConfig(), good, tgt, tv, only_first)["jepa"] < 1e-6


def test_loss_kinds():
    pred, tgt = _data()
    assert torch.allclose(token_loss(pred, tgt, "l1"), (pred - tgt).abs().mean(-1))
    assert torch.allclose(token_loss(pred, tgt, "l2"), (pred - tgt).pow(2).mean(-1))
    assert token_loss(tgt, tgt, "cosine").abs().max() < 1e-5
    assert torch.allclose(token_loss(-tgt, tgt, "cosine"), torch.full((8, 3), 2.0), atol=1e-5)


def test_variance_hinge_detects_collapse():
    torch.manual_seed(0)  # std 2 ± 0.2 over 64 rows: far from the hinge at 1 whatever the draw
    spread = torch.randn(64, 16) * 2
    collapsed = torch.ones(64, 16) * 0.3 + 1e-3 * torch.randn(64, 16)
    assert variance_hinge(spread, 1.0) < 0.05
    assert variance_hinge(collapsed, 1.0) > 0.9
    assert covariance_penalty(torch.randn(256, 8)) < covariance_penalty(torch.randn(256, 1).repeat(1, 8))


def test_info_nce_prefers_matching_pairs():
    _, tgt = _data(B=6)
    tv = torch.ones(6, 3, dtype=torch.bool)
    valid = torch.ones(6, dtype=torch.bool)
    matched = info_nce(tgt, tgt, tv, valid, 0.07, False)
    shuffled = info_nce(tgt.roll(1, 0), tgt, tv, valid, 0.07, False)
    assert matched < 0.1 < shuffled


def test_energy_margin_pays_only_for_wrong_chains_predicted_as_well_as_right_ones():
    _, tgt = _data(B=4, T=2)
    tv = torch.ones(4, 2, dtype=torch.bool)
    is_valid = torch.tensor([True, True, False, False])
    cfg = LossConfig(hard_negatives=True, energy_weight=1.0, energy_margin=0.1)
    apart = tgt.clone()
    apart[2:] = tgt[2:] + 1.0  # wrong chains mispredicted by 1.0 per dimension: energy gap 1.0 > margin
    assert jepa_losses(cfg, apart, tgt, tv, is_valid)["energy"] == 0.0
    same = (tgt + 0.01).requires_grad_(True)  # every chain off by 0.01: each pair pays the margin
    out = jepa_losses(cfg, same, tgt, tv, is_valid)
    assert abs(out["energy"] - 0.1) < 1e-5
    out["total"].backward()
    assert same.grad[2:].abs().sum() > 0  # the wrong chains' predictions are pushed away from their targets
    off = jepa_losses(LossConfig(), same, tgt, tv, is_valid)
    assert off["energy"] == 0.0 and float(out["total"].detach()) > float(off["total"].detach())


def test_energy_margin_needs_a_pair_and_hard_negatives():
    from rjepa_core.jepa.losses import energy_margin

    e = torch.tensor([0.2, 0.3])
    assert float(energy_margin(e, torch.ones(2, dtype=torch.bool), torch.ones(2, dtype=torch.bool), 0.1)) == 0.0
    unmasked = torch.tensor([True, False])  # the invalid row has no masked step: no pair
    assert float(energy_margin(e, unmasked, torch.tensor([True, False]), 0.1)) == 0.0
    import pytest

    with pytest.raises(ValueError, match="hard_negatives"):
        LossConfig(energy_weight=1.0).validate()


def test_same_problem_pairs_ignore_other_problems():
    from rjepa_core.jepa.losses import energy_margin

    e = torch.tensor([0.5, 0.2, 0.5, 0.9])  # rows 0, 2 validated; 1, 3 invalid
    has, valid = torch.ones(4, dtype=torch.bool), torch.tensor([True, False, True, False])
    group = torch.tensor([0, 0, 1, 1])  # problem 0: wrong chain predicted better (pays); problem 1: apart
    assert abs(float(energy_margin(e, has, valid, 0.1, group)) - (0.1 + 0.3 + 0.0) / 2) < 1e-6
    assert abs(float(energy_margin(e, has, valid, 0.1)) - (0.4 + 0.0 + 0.4 + 0.0) / 4) < 1e-6
    unknown = torch.full((4,), -1)
    assert float(energy_margin(e, has, valid, 0.1, unknown)) == 0.0
