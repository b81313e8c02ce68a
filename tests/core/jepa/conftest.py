"""Shared fixtures: one briefly trained tiny R-JEPA on synthetic lawful chains (hidden 32)."""

from __future__ import annotations

import pytest

from rjepa_core.config import RJEPAConfig, rjepa_tiny
from rjepa_core.jepa.trainer import TrainResult, train
from tests.core.jepa.synthetic import lawful_chains

HIDDEN = 32


def tiny_config(**overrides) -> RJEPAConfig:
    cfg = RJEPAConfig(model=rjepa_tiny(hidden_size=HIDDEN, max_steps=16))
    base = {
        "optim": {"total_steps": 200, "warmup_steps": 20, "lr": 3e-3},
        "train": {"batch_size": 32, "val_every": 50, "patience": 0, "checkpoint_every": 0},
    }
    for k, v in overrides.items():
        base[k] = {**base.get(k, {}), **v}
    return cfg.replace(**base)


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> tuple[RJEPAConfig, TrainResult]:
    cfg = tiny_config()
    out = tmp_path_factory.mktemp("trained")
    res = train(cfg, lawful_chains(400, 6, HIDDEN, seed=0), lawful_chains(64, 6, HIDDEN, seed=1), out, device="cpu")
    return cfg, res
