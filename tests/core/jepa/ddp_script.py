"""Body of the DDP tests: `[torchrun --standalone --nproc-per-node N] ddp_script.py OUT TOTAL [KILL_AT]`.

Without torchrun it is the one-process reference. The data and config exercise what DDP has to get
right: an odd global batch (7 chains + 2 hard negatives = 9 rows, so 2 ranks hold 5 + 4 and one padding
row), chains of different lengths, question latents on half of them (the question token is unused by
batches without any), InfoNCE with hard negatives (a batch statistic), validation and early-stopping
state. Every `log` call is appended to OUT/log-rank<RANK>.jsonl. With KILL_AT, rank 0 SIGKILLs itself
right after step KILL_AT (torchrun then stops the others). RJEPA_INIT_FROM=<checkpoint> warm-starts from it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import torch

from rjepa_core.config import RJEPAConfig, rjepa_tiny
from rjepa_core.jepa.collate import Chain
from rjepa_core.jepa.trainer import train
from tests.core.jepa.synthetic import lawful_chains, shuffled

HIDDEN = 16


def data() -> tuple[list[Chain], list[Chain], list[Chain]]:
    rng = np.random.default_rng(7)
    chains = [c for n in (4, 5, 6) for c in lawful_chains(14, n, HIDDEN, seed=n)]
    for i, c in enumerate(chains):
        if i % 2:
            c.q = rng.normal(size=HIDDEN).astype(np.float16)
    rng.shuffle(chains)
    negatives = [shuffled(c, seed=i) for i, c in enumerate(chains[:10])]
    return chains[:36], chains[36:], negatives


def config(total: int) -> RJEPAConfig:
    return RJEPAConfig(model=rjepa_tiny(hidden_size=HIDDEN, max_steps=8, question_token=True)).replace(
        mask={"kind": "random"},
        optim={"total_steps": total, "warmup_steps": 4, "lr": 2e-3},
        train={"batch_size": 7, "val_every": 6, "patience": 0, "checkpoint_every": 10, "seed": 3},
        loss={"infonce_weight": 0.1, "hard_negatives": True, "num_hard_negatives": 2},
    )


def main() -> None:
    torch.set_num_threads(int(os.environ.get("RJEPA_TEST_THREADS", "1")))
    out_dir, total = sys.argv[1], int(sys.argv[2])
    kill_at = int(sys.argv[3]) if len(sys.argv) > 3 else None
    rank = int(os.environ.get("RANK", "0"))

    def log(row: dict) -> None:  # the trainer calls it on rank 0 only: each rank that logs leaves a file
        with open(Path(out_dir) / f"log-rank{rank}.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        if kill_at is not None and row["kind"] == "train" and row["step"] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    tr, val, neg = data()
    init_from = os.environ.get("RJEPA_INIT_FROM") or None
    res = train(config(total), tr, val, out_dir, negatives=neg, log=log, device="cpu", init_from=init_from)
    print(f"rank {rank}: {res.steps} steps, last loss {res.history[-1].get('loss')}", flush=True)


if __name__ == "__main__":
    main()
