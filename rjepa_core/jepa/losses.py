"""R-JEPA loss terms (SPEC F8), each returned separately so every one can be logged.

    >>> import torch
    >>> from rjepa_core.config import LossConfig
    >>> pred, tgt = torch.randn(4, 3, 8), torch.randn(4, 3, 8)
    >>> tgt_valid = torch.ones(4, 3, dtype=torch.bool); is_valid = torch.ones(4, dtype=torch.bool)
    >>> out = jepa_losses(LossConfig(), pred, tgt, tgt_valid, is_valid)
    >>> sorted(out)
    ['cov', 'energy', 'hidden', 'infonce', 'jepa', 'total', 'var']
    >>> out["total"].requires_grad, isinstance(out["jepa"], float)
    (False, True)

- jepa: L1 (default) / L2 / cosine between predictions and layer-normed targets on masked steps of
  validated chains only.
- var: VICReg variance hinge on predictions, mean over dimensions of relu(gamma - std), the std of
  each dimension taken over all valid target tokens of the batch. Large when predictions collapse.
- cov: VICReg covariance, squared off-diagonal covariances of predictions / D.
- infonce: chain-level contrast. Each validated chain's mean prediction must pick its own mean target
  among the batch's other chains (in-batch negatives) and, with hard negatives on, the invalid chains
  of the batch, whose targets sit close to lawful ones.
- energy: margin between chains. A chain's energy is its mean masked-step loss; every (validated, invalid)
  pair of the batch pays relu(margin - (E_invalid - E_valid)). The regression alone only learns what
  lawful chains look like; this term also asks that a wrong chain be harder to predict — the score the
  reranker reads. It uses the validator's verdicts on training problems (as hard-negative InfoNCE does),
  never a label at scoring time.
- hidden: the to_hidden head against the raw student latents of the masked steps. Its input is
  detached so the head fits the predictor and never pulls the JEPA space toward raw latents, whose
  outlier dimensions would dominate the gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rjepa_core.config import LossConfig


def token_loss(pred: torch.Tensor, tgt: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-token distance (...,) between predictions and targets (..., D)."""
    if kind == "l1":
        return (pred - tgt).abs().mean(-1)  # (...)
    if kind == "l2":
        return (pred - tgt).pow(2).mean(-1)  # (...)
    if kind == "cosine":
        return 1.0 - F.cosine_similarity(pred, tgt, dim=-1)  # (...)
    raise ValueError(f"unknown loss kind {kind!r}; use l1, l2 or cosine")


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x (...) over mask (...) True entries; 0 when the mask is empty."""
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp(min=1.0)


def variance_hinge(z: torch.Tensor, gamma: float, eps: float = 1e-4) -> torch.Tensor:
    """z (N, D) -> mean over D of relu(gamma - std_d); 0 for fewer than 2 rows."""
    if z.shape[0] < 2:
        return z.new_zeros(())
    std = torch.sqrt(z.var(dim=0) + eps)  # (D,)
    return F.relu(gamma - std).mean()


def covariance_penalty(z: torch.Tensor) -> torch.Tensor:
    """z (N, D) -> sum of squared off-diagonal covariances / D; 0 for fewer than 2 rows."""
    N, D = z.shape
    if N < 2:
        return z.new_zeros(())
    zc = z - z.mean(0)  # (N, D)
    cov = zc.T @ zc / (N - 1)  # (D, D)
    off = cov - torch.diag(torch.diag(cov))  # (D, D)
    return off.pow(2).sum() / D


def pooled(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over valid tokens: x (B,T,D), mask (B,T) -> (B, D)."""
    m = mask[..., None].to(x.dtype)  # (B, T, 1)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)  # (B, D)


def info_nce(
    pred: torch.Tensor,
    tgt: torch.Tensor,
    tgt_valid: torch.Tensor,
    is_valid: torch.Tensor,
    tau: float,
    hard_negatives: bool,
) -> torch.Tensor:
    """Chain-level InfoNCE: validated rows are queries; columns are every row (or validated rows only)."""
    q = F.normalize(pooled(pred, tgt_valid), dim=-1)  # (B, D)
    k = F.normalize(pooled(tgt, tgt_valid), dim=-1)  # (B, D)
    rows = torch.nonzero(is_valid).squeeze(1)  # (Bv,)
    cols = torch.arange(pred.shape[0], device=pred.device) if hard_negatives else rows  # (C,)
    if rows.numel() == 0 or cols.numel() < 2:
        return pred.new_zeros(())
    logits = q[rows] @ k[cols].T / tau  # (Bv, C)
    labels = (cols[None, :] == rows[:, None]).float().argmax(1)  # (Bv,): column of each row's own target
    return F.cross_entropy(logits, labels)


def chain_energies(pred: torch.Tensor, tgt: torch.Tensor, tgt_valid: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean masked-step loss of each chain: pred/tgt (B,T,D), tgt_valid (B,T) -> (B,)."""
    m = tgt_valid.to(pred.dtype)  # (B, T)
    return (token_loss(pred, tgt, kind) * m).sum(1) / m.sum(1).clamp(min=1.0)  # (B,)


def energy_margin(
    energy: torch.Tensor,
    has_target: torch.Tensor,
    is_valid: torch.Tensor,
    margin: float,
    group: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over (validated, invalid) pairs of relu(margin - (E_invalid - E_valid)); 0 without such a pair.

    energy (B,), has_target (B,) rows with at least one masked step, is_valid (B,); with group (B,) long
    (-1 = unknown), only pairs of the same known group count.
    """
    p, n = is_valid & has_target, ~is_valid & has_target  # (B,), (B,)
    pair = p[:, None] & n[None, :]  # (B, B): row validated, column invalid
    if group is not None:
        pair = pair & (group[:, None] == group[None, :]) & (group[:, None] >= 0)
    if not bool(pair.any()):
        return energy.new_zeros(())
    hinge = torch.relu(margin - (energy[None, :] - energy[:, None]))  # (B, B)
    return hinge[pair].mean()


def jepa_losses(
    cfg: LossConfig,
    pred: torch.Tensor,
    tgt: torch.Tensor,
    tgt_valid: torch.Tensor,
    is_valid: torch.Tensor,
    hidden_pred: torch.Tensor | None = None,
    hidden_tgt: torch.Tensor | None = None,
    group: torch.Tensor | None = None,
) -> dict[str, torch.Tensor | float]:
    """All terms as floats plus "total", the weighted sum as a tensor.

    pred/tgt (B,T,D) gathered at the target steps, tgt_valid (B,T), is_valid (B,); hidden_pred/hidden_tgt
    (B,T,Dh) for the hidden head (skipped when None); group (B,) the chains' problems, for energy_pairs "problem".
    """
    pred, tgt = pred.float(), tgt.float()
    w = tgt_valid & is_valid[:, None]  # (B, T): regression only on validated chains
    jepa = masked_mean(token_loss(pred, tgt, cfg.kind), w)
    z = pred[w]  # (N, D)
    var = variance_hinge(z, cfg.var_gamma)
    cov = covariance_penalty(z) if cfg.vicreg_cov_weight > 0 else pred.new_zeros(())
    nce = (
        info_nce(pred, tgt, tgt_valid, is_valid, cfg.tau, cfg.hard_negatives)
        if cfg.infonce_weight > 0
        else pred.new_zeros(())
    )
    if cfg.energy_weight > 0:
        energy = energy_margin(
            chain_energies(pred, tgt, tgt_valid, cfg.kind),
            tgt_valid.any(1),
            is_valid,
            cfg.energy_margin,
            group if cfg.energy_pairs == "problem" else None,
        )
    else:
        energy = pred.new_zeros(())
    if hidden_pred is not None and hidden_tgt is not None:
        hidden = masked_mean(token_loss(hidden_pred.float(), hidden_tgt.float(), cfg.hidden_kind), w)
    else:
        hidden = pred.new_zeros(())
    total = jepa + cfg.var_weight * var + cfg.vicreg_cov_weight * cov
    total = total + cfg.infonce_weight * nce + cfg.hidden_weight * hidden + cfg.energy_weight * energy
    terms = {"jepa": jepa, "var": var, "cov": cov, "infonce": nce, "energy": energy, "hidden": hidden}
    return {"total": total, **{k: float(v.detach()) for k, v in terms.items()}}
