"""EMA update of the target encoder (SPEC F9): target <- m * target + (1 - m) * context.

>>> from torch import nn
>>> ctx, tgt = nn.Linear(2, 2), nn.Linear(2, 2)
>>> ema_update(tgt, ctx, momentum=0.0)       # momentum 0 copies the context weights
>>> bool((tgt.weight == ctx.weight).all())
True
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def ema_update(target: nn.Module, context: nn.Module, momentum: float) -> None:
    """In-place EMA of every parameter; buffers are copied. Both modules must have the same structure."""
    t_params = list(target.parameters())
    c_params = list(context.parameters())
    if len(t_params) != len(c_params):
        raise ValueError("target and context encoders differ in structure; rebuild the target as a deep copy")
    torch._foreach_mul_(t_params, momentum)
    torch._foreach_add_(t_params, c_params, alpha=1.0 - momentum)
    for tb, cb in zip(target.buffers(), context.buffers(), strict=True):
        tb.copy_(cb)
