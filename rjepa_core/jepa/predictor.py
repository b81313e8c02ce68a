"""Narrow predictor of R-JEPA (SPEC F6): context tokens + mask tokens -> predictions at target steps only.

    >>> import torch
    >>> from rjepa_core.config import rjepa_tiny
    >>> cfg = rjepa_tiny(hidden_size=16)
    >>> pred = Predictor(cfg)
    >>> ctx = torch.randn(2, 6, cfg.d_model); ctx_mask = torch.ones(2, 6, dtype=torch.bool)
    >>> tgt_idx = torch.tensor([[1, 2], [4, 0]]); tgt_valid = torch.tensor([[True, True], [True, False]])
    >>> pred(ctx, ctx_mask, tgt_idx, tgt_valid).shape
    torch.Size([2, 2, 64])

As in I-JEPA, the predictor runs over [visible context tokens ; one learned mask token per target],
the mask tokens told where they stand by a position embedding gathered with the target indices, and
returns only the mask-token outputs. Hidden steps stay out of the key set, so only visible steps,
the register token and the other mask tokens inform a prediction.
"""

from __future__ import annotations

import torch
from torch import nn

from rjepa_core.config import ModelConfig
from rjepa_core.jepa.encoder import Transformer


class Predictor(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        P = cfg.pred_d_model
        self.embed = nn.Linear(cfg.d_model, P)
        # Positions 0..num_prefix-1 are the register (and question) tokens; step i sits at i + num_prefix.
        self.num_prefix = 1 + bool(cfg.question_token)
        self.pos = nn.Embedding(cfg.max_steps + self.num_prefix, P)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, P))
        self.transformer = Transformer(P, cfg.pred_depth, cfg.pred_num_heads, cfg.mlp_ratio, cfg.dropout)
        self.out = nn.Linear(P, cfg.d_model)
        nn.init.trunc_normal_(self.pos.weight, std=0.02)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward(
        self,
        ctx: torch.Tensor,
        ctx_mask: torch.Tensor,
        tgt_idx: torch.Tensor,
        tgt_valid: torch.Tensor,
    ) -> torch.Tensor:
        """ctx (B,P+S,D) from the context encoder, ctx_mask (B,P+S), tgt_idx/tgt_valid (B,T) -> (B,T,D)."""
        B, N, _ = ctx.shape
        T = tgt_idx.shape[1]
        x = self.embed(ctx) + self.pos(torch.arange(N, device=ctx.device))[None]  # (B, P+S, P)
        m = self.mask_token.expand(B, T, -1) + self.pos(tgt_idx + self.num_prefix)  # (B, T, P)
        tokens = torch.cat([x, m], dim=1)  # (B, P+S+T, P)
        key_mask = torch.cat([ctx_mask, tgt_valid], dim=1)  # (B, P+S+T)
        y = self.transformer(tokens, key_mask)  # (B, P+S+T, P)
        return self.out(y[:, N:])  # (B, T, D): target positions only
