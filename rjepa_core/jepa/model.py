"""The R-JEPA world model (SPEC F6): context encoder, EMA target encoder, narrow predictor, hidden head.

    >>> import torch
    >>> from rjepa_core.config import rjepa_tiny
    >>> m = RJEPA(rjepa_tiny(hidden_size=16)).eval()
    >>> H = torch.randn(1, 4, 16); valid = torch.ones(1, 4, dtype=torch.bool); dom = torch.tensor([0])
    >>> ctx_valid = torch.tensor([[True, True, False, True]])
    >>> tgt_idx = torch.tensor([[2]]); tgt_valid = torch.tensor([[True]])
    >>> m.predict(H, valid, dom, ctx_valid, tgt_idx, tgt_valid).shape, m.encode_targets(H, valid, dom).shape
    (torch.Size([1, 1, 64]), torch.Size([1, 4, 64]))
    >>> m.to_hidden(m.predict(H, valid, dom, ctx_valid, tgt_idx, tgt_valid)).shape
    torch.Size([1, 1, 16])

Predictions live in the target encoder's (layer-normed) space; `to_hidden` maps them back to the
student's latent space for nudge / plan / the latent decoder.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from rjepa_core.config import ModelConfig
from rjepa_core.jepa.encoder import StepEncoder, resolve_question
from rjepa_core.jepa.predictor import Predictor


def gather_steps(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x (B,S,C), idx (B,T) long -> (B,T,C): the apply_masks of I-JEPA for step sequences."""
    return torch.gather(x, 1, idx[..., None].expand(-1, -1, x.shape[-1]))  # (B, T, C)


class RJEPA(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg.validate()
        self.context_encoder = StepEncoder(cfg)
        self.target_encoder = copy.deepcopy(self.context_encoder)
        for p in self.target_encoder.parameters():
            p.requires_grad_(False)
        self.predictor = Predictor(cfg)
        hidden = int(cfg.d_model * cfg.mlp_ratio)
        self.hidden_head = nn.Sequential(
            nn.LayerNorm(cfg.d_model), nn.Linear(cfg.d_model, hidden), nn.GELU(), nn.Linear(hidden, cfg.hidden_size)
        )

    @property
    def hidden_size(self) -> int:
        return self.cfg.hidden_size

    def _check(self, H: torch.Tensor) -> None:
        if H.shape[-1] != self.cfg.hidden_size:
            raise ValueError(
                f"latents have width {H.shape[-1]} but this R-JEPA was built for hidden size {self.cfg.hidden_size}: "
                "use latents of the same student LLM, or read them through its calibration adapter "
                "(`rjepa_core.transfer.AdaptedRJEPA` with the `calibration_adapter` asset of that llm)"
            )
        if H.shape[1] > self.cfg.max_steps:
            raise ValueError(
                f"chain has {H.shape[1]} steps but the model covers max_steps={self.cfg.max_steps}: "
                "segment the chain into fewer steps or train with a larger model.max_steps"
            )

    def _question(
        self, H: torch.Tensor, Q: torch.Tensor | None, q_valid: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(Q, q_valid) as the encoders take them: None without a question token (see `resolve_question`)."""
        return resolve_question(H, Q, q_valid) if self.cfg.question_token else (None, None)

    @torch.no_grad()
    def encode_targets(
        self,
        H: torch.Tensor,
        valid: torch.Tensor,
        domain_ids: torch.Tensor,
        step_types: torch.Tensor | None = None,
        Q: torch.Tensor | None = None,
        q_valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Target-encoder embeddings of every step, layer-normed without affine: (B, S, D)."""
        self._check(H)
        Q, q_valid = self._question(H, Q, q_valid)
        z = self.target_encoder(H, valid, domain_ids, step_types, Q, q_valid)  # (B, P+S, D)
        z = z[:, self.target_encoder.num_prefix :]  # (B, S, D): steps only
        return F.layer_norm(z, (z.shape[-1],))  # (B, S, D)

    def encode_context(
        self,
        H: torch.Tensor,
        ctx_valid: torch.Tensor,
        domain_ids: torch.Tensor,
        step_types: torch.Tensor | None = None,
        Q: torch.Tensor | None = None,
        q_valid: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Context-encoder tokens (B, P+S, D) and their key mask (B, P+S): register (+ question) + visible steps."""
        self._check(H)
        Q, q_valid = self._question(H, Q, q_valid)
        ctx = self.context_encoder(H, ctx_valid, domain_ids, step_types, Q, q_valid)  # (B, P+S, D)
        prefix = [ctx_valid.new_ones(H.shape[0], 1)] + ([q_valid[:, None]] if q_valid is not None else [])
        ctx_mask = torch.cat([*prefix, ctx_valid], dim=1)  # (B, P+S)
        return ctx, ctx_mask

    def predict(
        self,
        H: torch.Tensor,
        valid: torch.Tensor,
        domain_ids: torch.Tensor,
        ctx_valid: torch.Tensor,
        tgt_idx: torch.Tensor,
        tgt_valid: torch.Tensor,
        step_types: torch.Tensor | None = None,
        Q: torch.Tensor | None = None,
        q_valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predicted target embeddings (B, T, D) of the steps at tgt_idx from the visible steps only.

        ctx_valid (B,S) marks visible steps (a subset of `valid`); tgt_idx (B,T) long, padded with 0 where
        tgt_valid (B,T) is False. Padded rows of the output are meaningless and must be masked by the caller.
        Q (B,Dh) / q_valid (B,): question latents (used when the model has a question token).
        """
        ctx_valid = ctx_valid & valid  # (B, S)
        ctx, ctx_mask = self.encode_context(H, ctx_valid, domain_ids, step_types, Q, q_valid)  # (B,P+S,D), (B,P+S)
        return self.predictor(ctx, ctx_mask, tgt_idx, tgt_valid)  # (B, T, D)

    def to_hidden(self, pred: torch.Tensor) -> torch.Tensor:
        """Map predictions (..., D) back to the student's latent space (..., hidden_size)."""
        return self.hidden_head(pred)  # (..., Dh)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]
