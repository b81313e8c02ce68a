"""Data-parallel training under `torchrun` (SPEC F19): the process group, row shards and global losses.

    $ torchrun --standalone --nproc-per-node 2 -m rjepa_core.jepa.ddp --store .rjepa/store \\
          --llm smollm2-135m --version v1 --out /tmp/ckpt

    >>> ctx = DistContext.from_env()            # world_size 1 without torchrun: nothing changes
    >>> ctx.world_size, ctx.is_main
    (1, True)

What makes N processes train the same model as one, step for step (same global batch, same seed):

- every rank builds the *whole* global batch (same chains, same masks: the collator is a pure function
  of seed and step) and keeps only its contiguous slice of rows (`shard_rows`);
- the online part of the model (context encoder, predictor, hidden head) runs under DDP on that slice;
  the EMA target encoder never gets gradients and is updated on every rank from the (identical,
  all-reduced) context weights, so it stays identical without being communicated;
- the loss is not a sum of per-chain terms (token-weighted means, the variance hinge and InfoNCE use
  batch statistics), so predictions and targets are all-gathered and every rank computes the loss
  of the global batch; only its own rows carry autograd (`gather_rows`), and the loss it backpropagates
  is multiplied by the world size, so DDP's gradient *average* is exactly the one-process gradient;
- rank 0 alone writes checkpoints, metrics and logs, and decides validation and early stopping.

Numbers are the one-process numbers up to float reduction order (matmuls over fewer rows, one
all-reduce of two partial gradients): see tests/core/jepa/test_ddp.py for the measured difference.
Dropout > 0 draws its masks per rank, so with dropout the trajectories differ from one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistContext:
    rank: int = 0  # global rank of this process (RANK)
    world_size: int = 1  # number of processes (WORLD_SIZE)
    local_rank: int = 0  # rank on this machine: picks the GPU (LOCAL_RANK)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> DistContext:
        """Read RANK / WORLD_SIZE / LOCAL_RANK as torchrun sets them; one process when they are absent."""
        try:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ.get("RANK", "0"))
            local = int(os.environ.get("LOCAL_RANK", str(rank)))
        except ValueError as e:
            raise ValueError(f"RANK / WORLD_SIZE / LOCAL_RANK must be integers (as torchrun sets them): {e}") from e
        if world < 1 or not 0 <= rank < world or local < 0:
            raise ValueError(
                f"inconsistent torchrun environment RANK={rank} WORLD_SIZE={world} LOCAL_RANK={local}: "
                "launch with `torchrun --nproc-per-node N ...` or unset these variables"
            )
        return cls(rank, world, local)


def init_process_group(ctx: DistContext, device: torch.device) -> bool:
    """Join the torchrun process group (gloo on CPU, nccl on CUDA); True when this call created it."""
    if not ctx.enabled or dist.is_initialized():
        return False
    if "MASTER_ADDR" not in os.environ:
        raise RuntimeError(
            f"WORLD_SIZE={ctx.world_size} but MASTER_ADDR is not set: start the trainer with "
            "`torchrun --nproc-per-node N` (or `rjepa train --nproc N`), which sets the rendezvous"
        )
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, rank=ctx.rank, world_size=ctx.world_size)
    return True


def rank_device(ctx: DistContext, device: torch.device) -> torch.device:
    """One GPU per process: cuda:LOCAL_RANK under torchrun; other devices unchanged."""
    if device.type == "cuda" and ctx.enabled:
        if ctx.local_rank >= torch.cuda.device_count():
            raise RuntimeError(
                f"LOCAL_RANK {ctx.local_rank} but only {torch.cuda.device_count()} GPU(s) here: "
                "use --nproc-per-node <= the number of GPUs"
            )
        return torch.device("cuda", ctx.local_rank)
    return device


def shard_bounds(n: int, ctx: DistContext) -> tuple[int, int, int]:
    """(start, stop, per_rank): this rank's contiguous rows of an n-row batch; per_rank = ceil(n / world)."""
    per = -(-n // ctx.world_size)
    start = min(ctx.rank * per, n)
    return start, min(start + per, n), per


def shard_rows(x: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """This rank's rows of x (B, ...), padded with copies of row 0 to ceil(B / world) rows.

    Every rank then holds the same shape (collectives need it); `gather_rows` drops the padding.
    """
    start, stop, per = shard_bounds(x.shape[0], ctx)
    part = x[start:stop]  # (b, ...)
    if part.shape[0] < per:
        part = torch.cat([part, x[:1].expand(per - part.shape[0], *x.shape[1:])])  # (per, ...)
    return part


def gather_rows(part: torch.Tensor, n: int, ctx: DistContext) -> torch.Tensor:
    """The global (n, ...) tensor from every rank's `shard_rows` slice, in row order.

    Other ranks' rows are constants here; this rank's rows keep their autograd graph, so the gradient
    of a loss on the result flows into this rank's parameters through its own rows only.
    """
    if not ctx.enabled:
        return part[:n]
    parts = [torch.empty_like(part) for _ in range(ctx.world_size)]
    dist.all_gather(parts, part.detach().contiguous())
    parts[ctx.rank] = part
    rows = []
    for r, p in enumerate(parts):
        start, stop, _ = shard_bounds(n, DistContext(r, ctx.world_size))
        rows.append(p[: stop - start])  # drop the padding rows
    return torch.cat(rows)  # (n, ...)


def broadcast_object(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's obj on every rank (validation results, early-stopping decisions)."""
    if not ctx.enabled:
        return obj
    box = [obj if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


class OnlineStep(nn.Module):
    """The trained part of one step as a `forward`, so DDP can hook it: context + predictor + hidden head.

    The target encoder stays outside (no gradients, EMA-updated); DDP ignores its frozen parameters.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, H, valid, domain_ids, ctx_valid, tgt_idx, tgt_valid, Q, q_valid):
        pred = self.model.predict(H, valid, domain_ids, ctx_valid, tgt_idx, tgt_valid, None, Q, q_valid)  # (b, T, D)
        return pred, self.model.to_hidden(pred.detach())  # (b, T, D), (b, T, Dh)


def wrap_ddp(model: nn.Module, ctx: DistContext, device: torch.device) -> nn.Module:
    """OnlineStep(model), under DistributedDataParallel when there are several processes."""
    step = OnlineStep(model)
    if not ctx.enabled:
        return step
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    # broadcast_buffers off: every rank holds the same buffers (same seed, same EMA); find_unused_parameters
    # on: a batch without question latents leaves the question projection unused and DDP must not wait for it.
    return DDP(step, device_ids=ids, broadcast_buffers=False, find_unused_parameters=True)
