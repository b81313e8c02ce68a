"""The latent adapter between two students (SPEC F13) and an R-JEPA that reads latents through one.

    >>> import torch
    >>> from rjepa_core.config import rjepa_tiny
    >>> from rjepa_core.jepa.model import RJEPA
    >>> ad = LatentAdapter(in_width=24, ref_width=16, seed=0)      # a new student of width 24, reference 16
    >>> ad.to_ref(torch.randn(3, 24)).shape, ad.from_ref(torch.randn(3, 16)).shape
    (torch.Size([3, 16]), torch.Size([3, 24]))
    >>> m = AdaptedRJEPA(RJEPA(rjepa_tiny(hidden_size=16)), ad)
    >>> m.cfg.hidden_size                                         # what a JEPAScorer around it checks
    24

x_ref = W_in (x - c_in) + c_ref and y = W_out (y_ref - c_ref) + c_in, with the centres c_in (the new
student's mean latent) and c_ref (the reference student's) fixed buffers: only the two matrices are ever
trained, so neither a bias nor a shrinking scale can make every mapped latent the same (the collapse a
JEPA fit through a frozen target encoder invites). Equal widths start at the identity (centres zero:
exactly the identity); different widths at a semi-orthogonal W_in (orthonormal rows or columns) scaled
to match the two students' total variance, with W_out its transpose (its pseudo-inverse).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from torch import nn

from rjepa_core.jepa.model import RJEPA


def semi_orthogonal(rows: int, cols: int, seed: int) -> torch.Tensor:
    """(rows, cols) with orthonormal rows (rows <= cols) or columns (rows > cols); the identity when square."""
    if rows == cols:
        return torch.eye(rows)
    g = torch.Generator().manual_seed(int(seed))
    a = torch.randn(max(rows, cols), min(rows, cols), generator=g)  # (big, small)
    q, r = torch.linalg.qr(a)  # (big, small) orthonormal columns
    q = q * torch.sign(torch.diagonal(r))[None]  # a unique Q: the Haar-distributed one
    return q if rows > cols else q.T  # (rows, cols)


class LatentAdapter(nn.Module):
    def __init__(self, in_width: int, ref_width: int, seed: int = 0, scale: float = 1.0):
        super().__init__()
        self.in_width, self.ref_width = int(in_width), int(ref_width)
        self.W_in = nn.Linear(self.in_width, self.ref_width, bias=False)  # new student -> reference space
        self.W_out = nn.Linear(self.ref_width, self.in_width, bias=False)  # reference space -> new student
        self.register_buffer("c_in", torch.zeros(self.in_width))  # mean latent of the new student
        self.register_buffer("c_ref", torch.zeros(self.ref_width))  # mean latent of the reference student
        with torch.no_grad():
            w = semi_orthogonal(self.ref_width, self.in_width, seed)  # (ref, in)
            self.W_in.weight.copy_(w * scale)
            self.W_out.weight.copy_(w.T / scale)

    @property
    def is_identity(self) -> bool:
        """True when the adapter maps every latent to itself (same width, identity matrices, equal centres)."""
        if self.in_width != self.ref_width:
            return False
        eye = torch.eye(self.in_width)
        return bool(
            torch.equal(self.W_in.weight.detach().cpu(), eye)
            and torch.equal(self.W_out.weight.detach().cpu(), eye)
            and torch.equal(self.c_in.cpu(), self.c_ref.cpu())
        )

    def set_centres(self, c_in: np.ndarray | torch.Tensor, c_ref: np.ndarray | torch.Tensor) -> LatentAdapter:
        with torch.no_grad():
            self.c_in.copy_(torch.as_tensor(np.asarray(c_in, dtype=np.float32)))
            self.c_ref.copy_(torch.as_tensor(np.asarray(c_ref, dtype=np.float32)))
        return self

    def set_maps(self, w_in: np.ndarray | torch.Tensor, w_out: Any = None) -> LatentAdapter:
        """Set W_in (ref, in) and W_out (in, ref); W_out defaults to the pseudo-inverse of W_in."""
        w_in_t = torch.as_tensor(np.asarray(w_in, dtype=np.float32))  # (ref, in)
        w_out_t = torch.linalg.pinv(w_in_t) if w_out is None else torch.as_tensor(np.asarray(w_out, dtype=np.float32))
        with torch.no_grad():
            self.W_in.weight.copy_(w_in_t)
            self.W_out.weight.copy_(w_out_t)
        return self

    def to_ref(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in_width) latents of the new student -> (..., ref_width) in the reference's space."""
        return self.W_in(x - self.c_in) + self.c_ref  # (..., ref)

    def from_ref(self, y: torch.Tensor) -> torch.Tensor:
        """(..., ref_width) reference-space latents (to_hidden / nudge / decoder outputs) -> (..., in_width)."""
        return self.W_out(y - self.c_ref) + self.c_in  # (..., in)


class AdaptedRJEPA(nn.Module):
    """A reference R-JEPA that takes and returns the new student's latents: W_in before both encoders
    (steps and question latent), W_out after `to_hidden`. Same call surface as RJEPA, so `JEPAScorer`,
    `predict_masked`, nudge and plan use it unchanged."""

    def __init__(self, model: RJEPA, adapter: LatentAdapter):
        super().__init__()
        if adapter.ref_width != model.cfg.hidden_size:
            raise ValueError(
                f"the adapter maps into width {adapter.ref_width} but the reference checkpoint reads "
                f"{model.cfg.hidden_size}: re-materialize `calibration_adapter` against this checkpoint"
            )
        self.model, self.adapter = model, adapter
        self.cfg = dataclasses.replace(model.cfg, hidden_size=adapter.in_width)

    @property
    def hidden_size(self) -> int:
        return self.cfg.hidden_size

    def _in(self, H: torch.Tensor | None) -> torch.Tensor | None:
        return None if H is None else self.adapter.to_ref(H)

    def encode_targets(self, H, valid, domain_ids, step_types=None, Q=None, q_valid=None) -> torch.Tensor:
        return self.model.encode_targets(self._in(H), valid, domain_ids, step_types, self._in(Q), q_valid)

    def encode_context(self, H, ctx_valid, domain_ids, step_types=None, Q=None, q_valid=None):
        return self.model.encode_context(self._in(H), ctx_valid, domain_ids, step_types, self._in(Q), q_valid)

    def predict(self, H, valid, domain_ids, ctx_valid, tgt_idx, tgt_valid, step_types=None, Q=None, q_valid=None):
        return self.model.predict(
            self._in(H), valid, domain_ids, ctx_valid, tgt_idx, tgt_valid, step_types, self._in(Q), q_valid
        )  # (B, T, D)

    def to_hidden(self, pred: torch.Tensor) -> torch.Tensor:
        return self.adapter.from_ref(self.model.to_hidden(pred))  # (..., in_width)
