"""Step encoder of R-JEPA (SPEC F6): student latents -> contextual step embeddings.

    >>> import torch
    >>> from rjepa_core.config import rjepa_tiny
    >>> enc = StepEncoder(rjepa_tiny(hidden_size=16))
    >>> H = torch.randn(2, 5, 16); valid = torch.ones(2, 5, dtype=torch.bool)
    >>> enc(H, valid, torch.tensor([0, 1])).shape          # register token + 5 steps
    torch.Size([2, 6, 64])

Every sequence starts with a learned register token carrying the domain embedding. It is always
visible, so attention never runs over an empty key set (a chain whose steps are all hidden still has
a context: its domain and the positions asked for), and it gives the predictor a chain-level summary.
With `question_token`, the question latent Q (the student's state after reading the prompt) follows
as a second always-visible token (masked out for chains that have none). Hidden steps are zeroed
before the projection and excluded as attention keys, so they cannot leak.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rjepa_core.config import ModelConfig


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).view(B, N, 3, self.num_heads, C // self.num_heads)  # (B, N, 3, h, c)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, h, N, c)
        attn_mask = key_mask[:, None, None, :]  # (B, 1, 1, N): True = may be attended to
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B, h, N, c)
        y = y.transpose(1, 2).reshape(B, N, C)  # (B, N, C)
        return F.dropout(self.out(y), self.dropout, self.training)


class Block(nn.Module):
    """Pre-LN transformer block."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), key_mask)  # (B, N, C)
        return x + self.mlp(self.norm2(x))  # (B, N, C)


class Transformer(nn.Module):
    def __init__(self, dim: int, depth: int, num_heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x, key_mask)  # (B, N, C)
        return self.norm(x)  # (B, N, C)


def resolve_question(
    H: torch.Tensor, Q: torch.Tensor | None, q_valid: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Question latents Q (B, Dh) and their mask q_valid (B,) for steps H (B, S, Dh): zeros and all False
    when Q is None, all True when only q_valid is None."""
    B = H.shape[0]
    if Q is None:
        return H.new_zeros(B, H.shape[-1]), torch.zeros(B, dtype=torch.bool, device=H.device)
    if Q.shape != (B, H.shape[-1]):
        raise ValueError(f"question latents must have shape {(B, H.shape[-1])} (one per chain), got {tuple(Q.shape)}")
    if q_valid is None:
        q_valid = torch.ones(B, dtype=torch.bool, device=H.device)
    return Q, q_valid


class StepEncoder(nn.Module):
    """LayerNorm + projection of student latents, embeddings, register token, transformer."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        D = cfg.d_model
        # Student latents carry a few huge outlier dimensions: normalise before projecting.
        self.in_norm = nn.LayerNorm(cfg.hidden_size)
        self.proj = nn.Linear(cfg.hidden_size, D)
        self.pos = nn.Embedding(cfg.max_steps, D)
        self.domain = nn.Embedding(len(cfg.domains), D)
        self.step_type = nn.Embedding(cfg.num_step_types, D) if cfg.use_step_type else None
        self.register = nn.Parameter(torch.zeros(1, 1, D))
        self.question = nn.Parameter(torch.zeros(1, 1, D)) if cfg.question_token else None  # token-type embedding
        self.transformer = Transformer(D, cfg.depth, cfg.num_heads, cfg.mlp_ratio, cfg.dropout)
        nn.init.trunc_normal_(self.pos.weight, std=0.02)
        nn.init.trunc_normal_(self.domain.weight, std=0.02)
        nn.init.trunc_normal_(self.register, std=0.02)
        if self.question is not None:
            nn.init.trunc_normal_(self.question, std=0.02)
        if self.step_type is not None:
            nn.init.trunc_normal_(self.step_type.weight, std=0.02)

    def forward(
        self,
        H: torch.Tensor,
        visible: torch.Tensor,
        domain_ids: torch.Tensor,
        step_types: torch.Tensor | None = None,
        Q: torch.Tensor | None = None,
        q_valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """H (B,S,Dh), visible (B,S) bool, domain_ids (B,) -> (B, P+S, D), P = `num_prefix` tokens.

        Index 0 is the register token; with `question_token`, index 1 is the question token built from
        Q (B,Dh), present where q_valid (B,) is True (Q None = no chain has one).
        """
        B, S, _ = H.shape
        x = self.proj(self.in_norm(H))  # (B, S, D)
        x = torch.where(visible[..., None], x, torch.zeros_like(x))  # (B, S, D): hidden steps carry nothing
        pos = torch.arange(S, device=H.device)  # (S,)
        dom = self.domain(domain_ids)[:, None, :]  # (B, 1, D)
        x = x + self.pos(pos)[None] + dom  # (B, S, D)
        if self.step_type is not None:
            types = step_types if step_types is not None else torch.zeros(B, S, dtype=torch.long, device=H.device)
            x = x + self.step_type(types)  # (B, S, D)
        reg = self.register.expand(B, 1, -1) + dom  # (B, 1, D)
        prefix, prefix_mask = [reg], [visible.new_ones(B, 1)]
        if self.question is not None:
            Q, q_valid = resolve_question(H, Q, q_valid)
            q = self.proj(self.in_norm(Q))[:, None] + self.question + dom  # (B, 1, D)
            prefix.append(torch.where(q_valid[:, None, None], q, torch.zeros_like(q)))
            prefix_mask.append(q_valid[:, None])
        tokens = torch.cat([*prefix, x], dim=1)  # (B, P+S, D)
        key_mask = torch.cat([*prefix_mask, visible], dim=1)  # (B, P+S)
        return self.transformer(tokens, key_mask)  # (B, P+S, D)

    @property
    def num_prefix(self) -> int:
        """Tokens before the steps: the register, and the question token when the model has one."""
        return 1 + (self.question is not None)
