"""Data-parallel training benchmark: 1 vs N torchrun processes on the same data, config and seed.

    >>> result = bench_ddp(quick=True)          # rjepa bench ddp --quick
    >>> result["max_loss_diff"], result["wall_s"]

Synthetic step latents (lawful linear dynamics, so the loss falls) are written to a temporary latent
store and trained by `rjepa_core.jepa.ddp` exactly as the `jepa_checkpoint` asset launches it with
`training.nproc`: once under torchrun with 1 process, once with `nproc` processes. Recorded: the
largest per-step difference of the training loss, gradient norm and validation loss between the two,
the wall time of each launch (process start, data loading and training) and the training time the
trainer itself measured. Both runs get the same CPU cores (OMP_NUM_THREADS: nproc threads for the one
process, 1 for each of the nproc processes). On CPU the point is the equivalence; the speed-up that
matters needs one GPU per process.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def synthetic_latents(n: int, hidden: int, seed: int = 0) -> list:
    """n LatentSequences of 3-8 steps following one linear law (H_t = W A^t z + noise), train/val split."""
    from rjepa_core.schemas import LatentSequence

    rng = np.random.default_rng(seed)
    rank = 8
    q, _ = np.linalg.qr(rng.normal(size=(rank, rank)))
    W = rng.normal(size=(rank, hidden)) / np.sqrt(rank)
    out = []
    for i in range(n):
        steps = int(rng.integers(3, 9))
        z, H = rng.normal(size=rank), []
        for _ in range(steps):
            H.append(z @ W + 0.05 * rng.normal(size=hidden))
            z = q @ z
        out.append(
            LatentSequence(
                cot_id=f"c{i}",
                problem_id=f"p{i // 4}",
                llm_tag="bench",
                layer_idx=-2,
                hidden_size=hidden,
                num_steps=steps,
                step_spans=[(2 * k, 2 * k + 2) for k in range(steps)],
                token_ids=list(range(2 * steps)),
                is_valid=True,
                split="val" if i % 10 == 0 else "train",
                origin="bench",
                H=np.stack(H).astype(np.float16),
            )
        )
    return out


def _diff(a: list[dict], b: list[dict], kind: str, key: str) -> float:
    xs = [r[key] for r in a if r["kind"] == kind]
    ys = [r[key] for r in b if r["kind"] == kind]
    if len(xs) != len(ys) or not xs:
        raise RuntimeError(f"the runs logged {len(xs)} vs {len(ys)} {kind} rows: they did not follow the same schedule")
    return max(abs(x - y) for x, y in zip(xs, ys, strict=True))


def _last_loss(history: list[dict]) -> float:
    return next(r["loss"] for r in reversed(history) if r["kind"] == "train")


def bench_ddp(
    quick: bool = False, nproc: int = 2, steps: int | None = None, batch_size: int | None = None, device: str = "cpu"
) -> dict[str, Any]:
    import yaml

    from rjepa_core.jepa.ddp import launch_training, torchrun_command
    from rjepa_core.store.latents import LatentStore
    from rjepa_core.store.layout import StorageLayout

    if nproc < 2:
        raise ValueError(f"nproc must be >= 2 to compare against one process, got {nproc}")
    hidden, preset = (64, "tiny") if quick else (576, "small")
    steps = steps or (20 if quick else 60)
    bs = batch_size or (16 if quick else 64)
    n = 400 if quick else 2000
    cfg = {
        "model": {"preset": preset},
        "optim": {"total_steps": steps, "warmup_steps": max(1, steps // 10), "lr": 1e-3},
        "train": {"batch_size": bs, "val_every": max(1, steps // 4), "patience": 0, "checkpoint_every": 0},
        "loss": {"infonce_weight": 0.1},
    }
    runs: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="rjepa-bench-ddp-") as tmp:
        root = Path(tmp)
        LatentStore(StorageLayout(root / "store")).write("bench", "b1", synthetic_latents(n, hidden), shard_size=512)
        config = root / "rjepa.yaml"
        config.write_text(yaml.safe_dump(cfg))
        for k in (1, nproc):
            kw = dict(store=root / "store", llm_tag="bench", version="b1", config=config, device=device)
            # the same CPU cores for both: one process with nproc threads vs nproc processes of one thread
            env = {**os.environ, "OMP_NUM_THREADS": str(nproc // k)}
            tic = time.perf_counter()
            res = launch_training(k, out_dir=root / f"run-{k}", env=env, **kw)
            runs[k] = {
                "wall_s": time.perf_counter() - tic,
                "train_s": res.duration_s,
                "sequences_per_s": res.sequences_per_s,
                "history": res.history,
                "steps": res.steps,
            }
    a, b = runs[1]["history"], runs[nproc]["history"]
    argv = ["--store", "STORE", "--llm", "bench", "--version", "b1", "--config", "rjepa.yaml", "--out", "OUT"]
    return {
        "device": device,
        "preset": preset,
        "hidden_size": hidden,
        "num_sequences": n,
        "global_batch_size": bs,
        "steps": steps,
        "nproc": nproc,
        "backend": "nccl" if device.startswith("cuda") else "gloo",
        "threads_per_process": {"1": nproc, str(nproc): 1},
        "load_average_1min": os.getloadavg()[0],  # other jobs on the machine inflate and skew the wall times
        "max_loss_diff": _diff(a, b, "train", "loss"),
        "max_grad_norm_diff": _diff(a, b, "train", "grad_norm"),
        "max_val_loss_diff": _diff(a, b, "val", "val_loss"),
        "final_loss": {"1": _last_loss(a), str(nproc): _last_loss(b)},
        "wall_s": {"1": runs[1]["wall_s"], str(nproc): runs[nproc]["wall_s"]},
        "train_s": {"1": runs[1]["train_s"], str(nproc): runs[nproc]["train_s"]},
        "sequences_per_s": {"1": runs[1]["sequences_per_s"], str(nproc): runs[nproc]["sequences_per_s"]},
        "launch_command": " ".join(torchrun_command(nproc, argv)),
    }
