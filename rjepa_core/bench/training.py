"""R-JEPA training throughput benchmark: sequences/s and the share of step time spent waiting for data.

    >>> result = bench_training(quick=True)
    >>> result["sequences_per_s"], result["data_wait_share"]

The loop is the trainer's own (`batch_indices` -> `Collator` -> `Trainer.train_step`), timed per
phase: the data phase (choosing the batch, padding, drawing masks) is what a GPU would wait on,
since batches are built in-process. The chains are synthetic latents at the student's width (576
for SmolLM2, 64 when quick): throughput does not depend on what the numbers are. A short `train()`
call is timed too, for the end-to-end figure the trainer itself reports (validation excluded).
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

import numpy as np

from rjepa_core.bench.common import sync


def _chains(n: int, hidden: int, seed: int = 0):
    from rjepa_core.jepa.collate import Chain

    rng = np.random.default_rng(seed)
    return [Chain(rng.normal(size=(int(rng.integers(3, 9)), hidden)).astype(np.float16), "math") for _ in range(n)]


def bench_training(
    quick: bool = False, steps: int | None = None, batch_size: int | None = None, device: str = "auto"
) -> dict[str, Any]:
    import torch

    from rjepa_core.config import RJEPAConfig, rjepa_small, rjepa_tiny
    from rjepa_core.jepa.model import RJEPA
    from rjepa_core.jepa.trainer import Trainer, batch_indices, resolve_device, train

    dev = resolve_device(device)
    if dev.type == "cpu":
        torch.set_num_threads(min(2, torch.get_num_threads()))
    hidden, preset, name = (64, rjepa_tiny, "tiny") if quick else (576, rjepa_small, "small")
    steps = steps or (6 if quick else 30)
    bs = batch_size or (8 if quick else 64)
    warmup = 2
    cfg = RJEPAConfig(model=preset(hidden)).replace(
        optim={"total_steps": steps + warmup, "warmup_steps": 1},
        train={"batch_size": bs, "val_every": 10_000, "checkpoint_every": 0},
    )
    chains = _chains(max(4 * bs, 32), hidden)
    torch.manual_seed(0)
    trainer = Trainer(cfg, RJEPA(cfg.model), dev)
    data_s = step_s = 0.0
    for step in range(steps + warmup):
        sync(dev)
        t0 = time.perf_counter()
        batch = trainer.collator([chains[i] for i in batch_indices(step, len(chains), bs, 0)], step=step)
        t1 = time.perf_counter()
        trainer.train_step(batch, step)
        sync(dev)
        t2 = time.perf_counter()
        if step >= warmup:  # the first steps pay for allocation and kernel selection
            data_s += t1 - t0
            step_s += t2 - t0
    total = steps * bs
    e2e_cfg = cfg.replace(optim={"total_steps": max(steps // 2, 2), "warmup_steps": 1})
    with tempfile.TemporaryDirectory(prefix="rjepa-bench-train-") as tmp:
        res = train(e2e_cfg, chains, chains[:bs], tmp, resume=False, device=dev)
    return {
        "device": str(dev),
        "preset": name,
        "hidden_size": hidden,
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
        "batch_size": bs,
        "steps_timed": steps,
        "sequences_per_s": total / step_s,
        "step_ms": 1000.0 * step_s / steps,
        "data_ms_per_step": 1000.0 * data_s / steps,
        "data_wait_share": data_s / step_s,
        "train_fn_sequences_per_s": res.sequences_per_s,
        "train_fn_steps": res.steps,
    }
