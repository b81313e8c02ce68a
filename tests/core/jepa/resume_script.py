"""Subprocess body of the kill-and-resume test: `python resume_script.py OUT_DIR TOTAL_STEPS [KILL_AT]`.

Trains the tiny config on fixed synthetic chains with a checkpoint every 10 steps; with KILL_AT it
SIGKILLs itself right after step KILL_AT, as a crash or an OOM killer would.
"""

from __future__ import annotations

import os
import signal
import sys

import torch

from rjepa_core.config import RJEPAConfig, rjepa_tiny
from rjepa_core.jepa.trainer import train
from tests.core.jepa.synthetic import lawful_chains


def main() -> None:
    torch.set_num_threads(1)
    out_dir, total = sys.argv[1], int(sys.argv[2])
    kill_at = int(sys.argv[3]) if len(sys.argv) > 3 else None
    cfg = RJEPAConfig(model=rjepa_tiny(hidden_size=16, max_steps=8)).replace(
        mask={"kind": "random"},
        optim={"total_steps": total, "warmup_steps": 5, "lr": 2e-3},
        train={"batch_size": 8, "val_every": 7, "patience": 0, "checkpoint_every": 10, "seed": 3},
        loss={"infonce_weight": 0.1},
    )

    def log(row: dict) -> None:
        if kill_at is not None and row["kind"] == "train" and row["step"] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    train(cfg, lawful_chains(40, 5, 16, seed=0), lawful_chains(8, 5, 16, seed=1), out_dir, log=log, device="cpu")


if __name__ == "__main__":
    main()
