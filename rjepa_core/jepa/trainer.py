"""R-JEPA training loop (SPEC F9): AdamW, warmup + cosine, EMA target, validation, early stopping,
collapse monitors and exact resume after a kill.

    >>> import numpy as np
    >>> from rjepa_core.config import RJEPAConfig, rjepa_tiny
    >>> from rjepa_core.jepa.collate import Chain
    >>> chains = [Chain(np.random.randn(5, 16).astype("float16"), "math") for _ in range(32)]
    >>> cfg = RJEPAConfig(model=rjepa_tiny(hidden_size=16)).replace(
    ...     optim={"total_steps": 20, "warmup_steps": 2}, train={"batch_size": 8, "val_every": 10})
    >>> res = train(cfg, chains[:24], chains[24:], "/tmp/rjepa-demo", resume=False)
    >>> res.steps, (res.last_dir / "model.safetensors").exists()
    (20, True)

Everything that decides what happens at step k is a pure function of (seed, k): the data order
(a permutation per epoch), the masks (collator reseeded per step), the learning rate and the EMA
momentum. The only carried state is model, optimizer, torch/numpy/python RNGs and the
early-stopping counters, all saved in `last/`, so a run killed at any point and resumed from its
last checkpoint ends with the same weights as an uninterrupted run.

Under `torchrun --nproc-per-node N` the same `train(...)` runs data-parallel (DDP, gloo on CPU, nccl on
GPU): the process group comes from RANK / WORLD_SIZE / LOCAL_RANK, each global batch is split by rows
across the ranks, and only rank 0 writes checkpoints and calls `log` (see `rjepa_core.jepa.distributed`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from rjepa_core.config import RJEPAConfig
from rjepa_core.jepa.checkpoint import load_checkpoint, load_train_state, resolve_checkpoint_dir, save_checkpoint
from rjepa_core.jepa.collate import Batch, Chain, Collator, as_chain
from rjepa_core.jepa.distributed import (
    DistContext,
    OnlineStep,
    barrier,
    broadcast_object,
    gather_rows,
    init_process_group,
    rank_device,
    shard_rows,
    wrap_ddp,
)
from rjepa_core.jepa.ema import ema_update
from rjepa_core.jepa.losses import jepa_losses
from rjepa_core.jepa.masks import make_masker
from rjepa_core.jepa.model import RJEPA, gather_steps
from rjepa_core.jepa.schedules import lr_at, momentum_at

logger = logging.getLogger(__name__)
VAL_SEED_OFFSET = 1_000_003  # val masks come from their own seed: fixed across evaluations and runs


@dataclass
class TrainResult:
    checkpoint_dir: Path  # best/ (lowest validation loss; last/ when there is no validation set)
    last_dir: Path  # last/ (full training state, resumable)
    history: list[dict[str, Any]]  # one dict of floats per train step ("kind": "train") and per evaluation ("val")
    best_val_loss: float | None  # lowest validation JEPA-loss seen (None without validation data)
    steps: int  # optimizer steps done in total (across resumes)
    duration_s: float  # wall time of this call
    std_targets: float  # collapse monitor at the end: mean per-dimension std of targets
    std_preds: float  # collapse monitor at the end: mean per-dimension std of predictions
    stopped_early: bool = False  # early stopping triggered
    initial_val_loss: float | None = None  # validation loss before the first step
    num_train: int = 0  # validated chains used as JEPA targets
    skipped: int = 0  # chains dropped (invalid for targets, or too short to mask)
    sequences_per_s: float = 0.0  # training throughput of this call (chains per second, validation excluded)


@dataclass
class _State:
    step: int = 0
    best_val: float = math.inf
    bad_evals: int = 0
    stopped: bool = False
    initial_val: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay weight matrices only: norms, biases, embeddings and learned tokens are left alone."""
    no_decay: set[int] = set()
    for module in model.modules():
        if isinstance(module, nn.LayerNorm | nn.Embedding):
            no_decay.update(id(p) for p in module.parameters(recurse=False))
    decay, rest = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if id(p) in no_decay or p.ndim < 2 or name.endswith(("register", "mask_token")):
            rest.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _std_per_dim(z: torch.Tensor) -> float:
    """Mean over dimensions of the std over rows of z (N, D); the collapse monitor."""
    return float(z.float().std(dim=0).mean()) if z.shape[0] > 1 else 0.0


class Trainer:
    """One model, optimizer and collator; `train_step` is one numbered optimisation step.

    With a multi-process `dist_ctx` (torchrun), the online part runs under DDP on this rank's rows of each
    global batch while the loss is computed on the whole batch (see `rjepa_core.jepa.distributed`).
    """

    def __init__(self, cfg: RJEPAConfig, model: RJEPA, device: torch.device, dist_ctx: DistContext | None = None):
        self.cfg, self.model, self.device = cfg, model.to(device), device
        self.dist = dist_ctx or DistContext()
        self.step_fn = OnlineStep(self.model)  # context encoder + predictor + hidden head as one forward
        self.online = wrap_ddp(self.model, self.dist, device) if self.dist.enabled else self.step_fn
        o = cfg.optim
        self.opt = torch.optim.AdamW(
            param_groups(model, o.weight_decay), lr=lr_at(0, o), betas=tuple(o.betas), weight_decay=o.weight_decay
        )
        m = cfg.model
        self.collator = Collator(make_masker(cfg.mask), cfg.mask.seed, m.domains, m.max_steps, m.question_token)
        self.use_bf16 = cfg.train.bf16 and device.type == "cuda"

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.use_bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def forward_losses(
        self, b: Batch, ctx: DistContext | None = None
    ) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
        """Loss terms of the batch b; with a multi-process ctx this rank runs only its rows (DDP)."""
        ctx, n = ctx or DistContext(), b.size
        part = Batch(**{f.name: shard_rows(getattr(b, f.name), ctx) for f in fields(b)}) if ctx.enabled else b
        online = self.online if ctx.enabled else self.step_fn
        # 1. target forward: no grad, layer-normed, gathered at the masked steps
        z = self.model.encode_targets(part.H, part.valid, part.domain_ids, None, part.Q, part.q_valid)  # (b, S, D)
        tgt = gather_rows(gather_steps(z, part.tgt_idx), n, ctx)  # (B, T, D)
        # 2. context encoder + predictor on the visible steps (and the question) only
        with self.autocast():
            pred, hidden_pred = online(
                part.H, part.valid, part.domain_ids, part.ctx_valid, part.tgt_idx, part.tgt_valid, part.Q, part.q_valid
            )  # (b, T, D), (b, T, Dh)
        pred, hidden_pred = gather_rows(pred, n, ctx), gather_rows(hidden_pred, n, ctx)  # (B, T, D), (B, T, Dh)
        # 3. loss terms (of the global batch: they use batch statistics, so they are not a sum over ranks)
        hidden_tgt = gather_steps(b.H, b.tgt_idx)  # (B, T, Dh) raw student latents of the masked steps
        losses = jepa_losses(self.cfg.loss, pred, tgt, b.tgt_valid, b.is_valid, hidden_pred, hidden_tgt, b.group)
        return losses, pred, tgt

    def train_step(self, b: Batch, step: int) -> dict[str, float]:
        o = self.cfg.optim
        self.model.train()
        self.model.target_encoder.eval()
        b = b.to(self.device)
        losses, pred, tgt = self.forward_losses(b, self.dist)  # steps 1-3
        # 4. backward, clip, step at the scheduled learning rate
        lr = lr_at(step, o)
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        # Each rank's graph holds only its own rows, and DDP averages gradients over ranks: scaling by the
        # world size makes that average the gradient of the global-batch loss (one process: unchanged).
        (losses["total"] * self.dist.world_size if self.dist.enabled else losses["total"]).backward()
        params = self.model.trainable_parameters()
        if o.grad_clip > 0:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, o.grad_clip))
        else:
            norms = [p.grad.norm() for p in params if p.grad is not None]
            grad_norm = float(torch.linalg.vector_norm(torch.stack(norms)))
        self.opt.step()
        # 5. EMA update of the target encoder
        m = momentum_at(step, o.total_steps, o.ema_start, o.ema_end)
        ema_update(self.model.target_encoder, self.model.context_encoder, m)
        w = b.tgt_valid & b.is_valid[:, None]  # (B, T)
        out = {k: v for k, v in losses.items() if k != "total"}
        out.update(
            loss=float(losses["total"].detach()),
            lr=lr,
            momentum=m,
            grad_norm=grad_norm,
            std_targets=_std_per_dim(tgt[w]),
            std_preds=_std_per_dim(pred.detach()[w]),
        )
        return out

    @torch.no_grad()
    def evaluate(self, batches: Sequence[Batch]) -> dict[str, float]:
        """Token-weighted validation JEPA-loss and collapse monitors over fixed-mask batches."""
        self.model.eval()
        total, count, preds, tgts = 0.0, 0, [], []
        for b in batches:
            b = b.to(self.device)
            losses, pred, tgt = self.forward_losses(b)
            n = int((b.tgt_valid & b.is_valid[:, None]).sum())
            total += losses["jepa"] * n
            count += n
            w = b.tgt_valid & b.is_valid[:, None]  # (B, T)
            preds.append(pred.float()[w])
            tgts.append(tgt[w])
        return {
            "val_loss": total / max(count, 1),
            "std_targets": _std_per_dim(torch.cat(tgts)),
            "std_preds": _std_per_dim(torch.cat(preds)),
        }


def _prepare(seqs: Sequence[Any], cfg: RJEPAConfig, want_valid: bool) -> tuple[list[Chain], int]:
    """The chains to train on: of the wanted validity, long enough to mask (a question latent counts as context)."""
    masker = make_masker(cfg.mask)
    kept, skipped = [], 0
    for s in seqs:
        c = as_chain(s)
        q = c.q if cfg.model.question_token else None
        if c.is_valid != want_valid or c.H.shape[0] < masker.length_needed(int(q is not None)):
            skipped += 1
            continue
        kept.append(Chain(c.H[: cfg.model.max_steps], c.domain, c.is_valid, q, c.group))
    return kept, skipped


def _check_width(chains: Sequence[Chain], hidden_size: int) -> None:
    for c in chains:
        if c.H.ndim != 2 or c.H.shape[1] != hidden_size:
            raise ValueError(
                f"latents of shape {tuple(c.H.shape)} do not match model.hidden_size={hidden_size}: "
                "set model.hidden_size to the student's width or use that student's latents"
            )


def warm_start(model: RJEPA, init_from: str | Path, cfg: RJEPAConfig) -> None:
    """Load a checkpoint's weights into `model` (same model config), for fine-tuning from a deployed model."""
    ck = load_checkpoint(init_from)
    if ck.config.model != cfg.model:
        mine, theirs = vars(cfg.model), vars(ck.config.model)
        diff = sorted(k for k in mine if mine[k] != theirs.get(k))
        raise ValueError(
            f"cannot warm-start from {init_from}: its model config differs in {diff}; train from scratch "
            "(no init_from) or use the checkpoint's own model config"
        )
    model.load_state_dict(ck.model.state_dict())


def pick_negatives(
    negatives: Sequence[Chain],
    by_group: dict[str, list[int]],
    batch: Sequence[Chain],
    loss,
    seed: int,
    step: int,
) -> list[Chain]:
    """The invalid chains appended to the batch at `step` (a pure function of seed and step).

    With energy_pairs "problem", they are drawn from the problems of the batch's validated chains (so each
    has a same-problem pair), falling back to any invalid chain when those problems have none.
    """
    g = np.random.default_rng([seed, step, 1])
    pool: list[int] = []
    if loss.energy_weight > 0 and loss.energy_pairs == "problem":
        for name in sorted({c.group for c in batch if c.group is not None}):
            pool += by_group.get(name, [])
    if not pool:
        return [negatives[i] for i in g.choice(len(negatives), loss.num_hard_negatives)]
    return [
        negatives[pool[i]]
        for i in g.choice(len(pool), loss.num_hard_negatives, replace=len(pool) < loss.num_hard_negatives)
    ]


def batch_indices(step: int, n: int, batch_size: int, seed: int) -> np.ndarray:
    """Chain indices of the batch at `step`: a pure function (one permutation per epoch)."""
    per_epoch = max(math.ceil(n / batch_size), 1)
    epoch, k = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return perm[k * batch_size : (k + 1) * batch_size]


def train(
    cfg: RJEPAConfig,
    train_seqs: Sequence[Any],
    val_seqs: Sequence[Any],
    out_dir: str | Path,
    *,
    resume: bool = True,
    log: Callable[[dict[str, Any]], None] | None = None,
    negatives: Sequence[Any] | None = None,
    device: str | torch.device = "auto",
    init_from: str | Path | None = None,
) -> TrainResult:
    """Train on the validated chains of train_seqs; early-stop on val_seqs; checkpoints under out_dir.

    Under torchrun (WORLD_SIZE > 1) every rank calls this with the same arguments; the result is the
    same on every rank, and only rank 0 writes under out_dir and calls `log`.

    `init_from` (a checkpoint folder) warm-starts: the run begins from that checkpoint's weights (context,
    EMA target, predictor, heads) instead of a fresh init, with this config's optimizer and schedule; the
    model configs must be equal. A run resumed from its own `last/` ignores it.
    """
    ctx = DistContext.from_env()
    dev = rank_device(ctx, resolve_device(device))
    created = init_process_group(ctx, dev)
    try:
        return _train(ctx, dev, cfg, train_seqs, val_seqs, out_dir, resume, log, negatives, init_from)
    finally:
        if created:
            dist.destroy_process_group()


def _train(
    ctx: DistContext,
    dev: torch.device,
    cfg: RJEPAConfig,
    train_seqs: Sequence[Any],
    val_seqs: Sequence[Any],
    out_dir: str | Path,
    resume: bool,
    log: Callable[[dict[str, Any]], None] | None,
    negatives: Sequence[Any] | None,
    init_from: str | Path | None = None,
) -> TrainResult:
    start = time.perf_counter()
    out_dir = Path(out_dir)
    last_dir, best_dir = out_dir / "last", out_dir / "best"
    t, o = cfg.train, cfg.optim
    min_len = make_masker(cfg.mask).min_length
    train_chains, skipped = _prepare(train_seqs, cfg, want_valid=True)
    val_chains, _ = _prepare(val_seqs, cfg, want_valid=True)
    if not train_chains:
        raise ValueError(
            f"no validated chain with >= {min_len} steps (or a question latent) to train on ({len(train_seqs)} given)"
        )
    neg_source = negatives if negatives is not None else train_seqs
    neg_chains: list[Chain] = []
    if cfg.loss.hard_negatives:
        neg_chains = _prepare(neg_source, cfg, want_valid=False)[0]
    _check_width(train_chains + val_chains + neg_chains, cfg.model.hidden_size)
    neg_by_group: dict[str, list[int]] = {}
    for i, c in enumerate(neg_chains):
        if c.group is not None:
            neg_by_group.setdefault(c.group, []).append(i)
    if skipped and ctx.is_main:
        msg = "skipped %d of %d training chains (invalid, or shorter than %d steps)"
        logger.info(msg, skipped, len(train_seqs), min_len)

    _seed_all(t.seed)
    trainer = Trainer(cfg, RJEPA(cfg.model), dev, ctx)
    state = _State()
    saved = load_train_state(last_dir) if resume else None
    if saved is not None:
        stored = RJEPAConfig.from_dict(saved["config"])
        if stored.model != cfg.model:
            raise ValueError(
                f"{last_dir} was trained with a different model config; pass resume=False or a new out_dir "
                "to start over"
            )
        trainer.model.load_state_dict(load_checkpoint(last_dir).model.state_dict())
        trainer.model.to(dev)
        trainer.opt.load_state_dict(saved["optimizer"])
        trainer.collator.load_state_dict(saved["collator"])
        state = _State(**saved["loop"])
        _set_rng_state(saved["rng"])
    elif init_from is not None:
        warm_start(trainer.model, init_from, cfg)
        trainer.model.to(dev)

    m = cfg.model
    val_collator = Collator(
        make_masker(cfg.mask), cfg.mask.seed + VAL_SEED_OFFSET, m.domains, m.max_steps, m.question_token
    )
    starts = range(0, len(val_chains), t.batch_size)
    val_batches = [val_collator(val_chains[i : i + t.batch_size], step=k) for k, i in enumerate(starts)]

    def emit(row: dict[str, Any]) -> None:
        state.history.append(row)  # on every rank: the loop state stays the same everywhere
        if log is not None and ctx.is_main:
            log(row)

    def meta(extra: dict[str, Any] | None = None) -> dict[str, Any]:
        best = None if math.isinf(state.best_val) else state.best_val
        return {"step": state.step, "best_val_loss": best, "num_train": len(train_chains), **(extra or {})}

    def save_last() -> None:
        if not ctx.is_main:
            return
        train_state = {
            "config": cfg.to_dict(),
            "optimizer": trainer.opt.state_dict(),
            "collator": trainer.collator.state_dict(),
            "loop": vars(state),
            "rng": _rng_state(),
        }
        save_checkpoint(last_dir, trainer.model, cfg, meta(), train_state)

    def validate() -> None:
        if not val_batches:
            return
        # rank 0 evaluates (the weights are the same on every rank) and every rank takes its numbers,
        # so early stopping ends all ranks at the same step
        ev = broadcast_object(trainer.evaluate(val_batches) if ctx.is_main else None, ctx)
        if state.initial_val is None:
            state.initial_val = ev["val_loss"]
        improved = ev["val_loss"] < state.best_val - t.min_delta
        if improved:
            state.best_val, state.bad_evals = ev["val_loss"], 0
            if ctx.is_main:
                save_checkpoint(best_dir, trainer.model, cfg, meta({"val_loss": ev["val_loss"]}))
        else:
            state.bad_evals += 1
            state.stopped = t.patience > 0 and state.bad_evals >= t.patience
        emit({"kind": "val", "step": state.step, **ev, "improved": float(improved)})

    if state.step == 0 and state.initial_val is None:
        validate()
    done_this_call, train_time = 0, 0.0
    last_row: dict[str, Any] = {}
    while state.step < o.total_steps and not state.stopped:
        tic = time.perf_counter()
        idx = batch_indices(state.step, len(train_chains), t.batch_size, t.seed)
        items = [train_chains[i] for i in idx]
        if neg_chains:
            items += pick_negatives(neg_chains, neg_by_group, items, cfg.loss, t.seed, state.step)
        batch = trainer.collator(items, step=state.step)
        row = trainer.train_step(batch, state.step)
        train_time += time.perf_counter() - tic
        done_this_call += len(idx)
        state.step += 1
        last_row = {"kind": "train", "step": state.step, **row}
        emit(last_row)
        if state.step % t.val_every == 0 or state.step == o.total_steps:
            validate()
        if t.checkpoint_every and state.step % t.checkpoint_every == 0:
            save_last()
    save_last()

    if ctx.is_main and resolve_checkpoint_dir(best_dir) is None:
        save_checkpoint(best_dir, trainer.model, cfg, meta())
    barrier(ctx)  # every rank returns once rank 0's files are in place
    val_rows = [r for r in state.history if r["kind"] == "val"]
    monitor = val_rows[-1] if val_rows else last_row
    return TrainResult(
        checkpoint_dir=best_dir,
        last_dir=last_dir,
        history=state.history,
        best_val_loss=None if math.isinf(state.best_val) else state.best_val,
        steps=state.step,
        duration_s=time.perf_counter() - start,
        std_targets=float(monitor.get("std_targets", 0.0)),
        std_preds=float(monitor.get("std_preds", 0.0)),
        stopped_early=state.stopped,
        initial_val_loss=state.initial_val,
        num_train=len(train_chains),
        skipped=skipped,
        sequences_per_s=done_this_call / train_time if train_time > 0 else 0.0,
    )
