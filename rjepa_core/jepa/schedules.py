"""Pure schedules of the training step (SPEC F9): resuming at step k needs no replay.

>>> from rjepa_core.config import OptimConfig
>>> cfg = OptimConfig(lr=1e-3, min_lr=0.0, warmup_steps=10, total_steps=110)
>>> lr_at(0, cfg), lr_at(10, cfg), round(lr_at(60, cfg), 6), lr_at(110, cfg)
(0.0, 0.001, 0.0005, 0.0)
>>> momentum_at(0, 100), momentum_at(100, 100)
(0.996, 1.0)
"""

from __future__ import annotations

import math

from rjepa_core.config import OptimConfig


def lr_at(step: int, cfg: OptimConfig) -> float:
    """Linear warmup from 0 to cfg.lr over warmup_steps, then cosine down to min_lr at total_steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * step / cfg.warmup_steps
    span = max(cfg.total_steps - cfg.warmup_steps, 1)
    t = min(max((step - cfg.warmup_steps) / span, 0.0), 1.0)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + math.cos(math.pi * t))


def momentum_at(step: int, total: int, start: float = 0.996, end: float = 1.0) -> float:
    """EMA momentum rising linearly from start (step 0) to end (step total), clamped past the end."""
    t = min(max(step / max(total, 1), 0.0), 1.0)
    return start + (end - start) * t
