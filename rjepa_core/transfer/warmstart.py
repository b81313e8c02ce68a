"""Weight transfer (SPEC F13): a checkpoint for a new student warm-started from the reference one.

    >>> init = fold_adapter(ref_ck, adapter, new_seqs, out / "init")             # a plain RJEPA of the new width
    >>> warm = train_transfer(ref_ck, init, new_seqs, out / "warm", steps=200)    # low-LR fine-tune from it
    >>> cold = train_scratch(ref_ck, new_seqs, out / "scratch", steps=200)        # the same budget from scratch
    >>> curve(warm.result), curve(cold.result)                                     # [(step, val_loss), ...]

The reference R-JEPA body (encoder blocks, embeddings, register, predictor, the hidden head's first
layers) is copied as is. What reads or writes the student's width is rebuilt from the adapter:

- input: the reference computes proj(LN_ref(W_in x)); the new model computes proj'(LN'(x)) with LN' a
  fresh LayerNorm over the new width. proj' is fitted by least squares to reproduce the reference's
  projected tokens on the new student's latents (the LayerNorms make the composition non-linear, so no
  closed form), for the context and the target encoder alike;
- output: the head's last Linear (A, a) becomes W_out A and W_out (a - c_ref) + c_in: exact.

The folded checkpoint is an ordinary checkpoint (config with the new hidden_size), so the usual trainer
fine-tunes it (`init_from`), and the service, the eval and the decoder read it as they read any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rjepa_core.config import RJEPAConfig
from rjepa_core.jepa.checkpoint import LoadedCheckpoint, save_checkpoint
from rjepa_core.jepa.model import RJEPA
from rjepa_core.transfer.adapter import LatentAdapter
from rjepa_core.transfer.paired import rows_of

WIDTH_PARAMS = ("in_norm.weight", "in_norm.bias", "proj.weight")  # per encoder: shaped by the student's width
MAX_FOLD_ROWS = 20_000  # latent rows the input projection is fitted on


def new_width_config(cfg: RJEPAConfig, hidden_size: int, **optim: Any) -> RJEPAConfig:
    """The reference's training config for a student of `hidden_size` (optim overrides for the fine-tune)."""
    return cfg.replace(model={"hidden_size": int(hidden_size)}, **({"optim": optim} if optim else {}))


@torch.no_grad()
def _fit_proj(ref_enc, new_enc, adapter: LatentAdapter, X: torch.Tensor, ridge: float = 1e-4) -> None:
    """new_enc.proj(LN'(x)) ≈ ref_enc.proj(LN_ref(W_in x)) on the rows X (N, in), by ridge least squares."""
    T = ref_enc.proj(ref_enc.in_norm(adapter.to_ref(X))).double()  # (N, D)
    Z = F.layer_norm(X, (X.shape[-1],)).double()  # (N, in): LN' starts at weight 1, bias 0
    Z1 = torch.cat([Z, torch.ones(Z.shape[0], 1, dtype=Z.dtype)], 1)  # (N, in+1)
    lam = ridge * float((Z1**2).sum()) / Z1.shape[1]
    sol = torch.linalg.solve(Z1.T @ Z1 + lam * torch.eye(Z1.shape[1], dtype=Z.dtype), Z1.T @ T)  # (in+1, D)
    new_enc.proj.weight.copy_(sol[:-1].T.float())
    new_enc.proj.bias.copy_(sol[-1].float())


@torch.no_grad()
def fold_adapter(ck: LoadedCheckpoint, adapter: LatentAdapter, seqs: Sequence[Any], out: str | Path, seed: int = 0):
    """Save the checkpoint for the new width built from the reference body and the adapter; returns its folder."""
    cfg = new_width_config(ck.config, adapter.in_width)
    torch.manual_seed(seed)
    new = RJEPA(cfg.model)
    ref_state, state = ck.model.state_dict(), new.state_dict()
    head_w = next(k for k in ref_state if k.startswith("hidden_head.") and k.endswith(".weight") and
                  ref_state[k].shape[0] == ck.config.model.hidden_size and ref_state[k].ndim == 2)  # fmt: skip
    head_b = head_w[: -len("weight")] + "bias"
    for k, v in ref_state.items():
        if k in (head_w, head_b) or any(k.endswith(p) for p in WIDTH_PARAMS):
            continue
        state[k] = v.clone()
    A, a = ref_state[head_w], ref_state[head_b]  # (ref, hidden), (ref,)
    state[head_w] = adapter.W_out.weight @ A  # (in, hidden)
    state[head_b] = adapter.W_out.weight @ (a - adapter.c_ref) + adapter.c_in  # (in,)
    new.load_state_dict(state)
    rows = rows_of(seqs)
    if rows.shape[0] > MAX_FOLD_ROWS:
        rows = rows[np.random.default_rng(seed).choice(rows.shape[0], MAX_FOLD_ROWS, replace=False)]
    X = torch.as_tensor(rows, dtype=torch.float32)  # (N, in)
    for name in ("context_encoder", "target_encoder"):
        _fit_proj(getattr(ck.model, name), getattr(new, name), adapter, X)
    meta = {"folded_from": str(ck.path), "adapter_in_width": adapter.in_width, "adapter_ref_width": adapter.ref_width}
    return save_checkpoint(out, new, cfg, meta=meta)


@dataclass
class TransferRun:
    result: Any  # rjepa_core.jepa.trainer.TrainResult
    meta: dict[str, Any]  # the checkpoint meta written by train_jepa (calibration, num_train, ...)
    config: RJEPAConfig


def curve(result: Any) -> list[tuple[int, float]]:
    """Validation loss per evaluation step of a training run: [(step, val_loss), ...]."""
    return [(int(r["step"]), float(r["val_loss"])) for r in result.history if r.get("kind") == "val"]


def _run(cfg: RJEPAConfig, seqs, out, init_from, device, log, **meta) -> TransferRun:
    from rjepa_core.pipeline import train_jepa

    result, m = train_jepa(list(seqs), cfg, out, device=device, init_from=init_from, log=log, **meta)
    return TransferRun(result, m, cfg)


def _schedule(ck: LoadedCheckpoint, steps: int, lr: float) -> dict[str, Any]:
    warm = min(ck.config.optim.warmup_steps, max(steps // 10, 0))
    return {"lr": lr, "min_lr": min(ck.config.optim.min_lr, lr), "total_steps": steps, "warmup_steps": warm}


def train_transfer(
    ck: LoadedCheckpoint,
    init: str | Path,
    seqs: Sequence[Any],
    out: str | Path,
    *,
    steps: int,
    lr: float = 1e-4,
    val_every: int | None = None,
    device: str = "cpu",
    log=None,
    **meta: Any,
) -> TransferRun:
    """Fine-tune the folded checkpoint `init` on the new student's latents at a low learning rate."""
    width = int(np.asarray(seqs[0].H).shape[1])
    cfg = new_width_config(ck.config, width, **_schedule(ck, steps, lr))
    if val_every:
        cfg = cfg.replace(train={"val_every": val_every})
    return _run(cfg, seqs, out, init, device, log, transfer="warm_start", **meta)


def train_scratch(
    ck: LoadedCheckpoint,
    seqs: Sequence[Any],
    out: str | Path,
    *,
    steps: int,
    val_every: int | None = None,
    device: str = "cpu",
    log=None,
    **meta: Any,
) -> TransferRun:
    """The same model config and budget trained from a fresh init, at the reference's own learning rate."""
    width = int(np.asarray(seqs[0].H).shape[1])
    cfg = new_width_config(ck.config, width, **_schedule(ck, steps, ck.config.optim.lr))
    if val_every:
        cfg = cfg.replace(train={"val_every": val_every})
    return _run(cfg, seqs, out, None, device, log, transfer="scratch", **meta)
