"""`rjepa train`: stored latents → checkpoints, in this process or on two torchrun processes (real ones)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rjepa_assets.cli import main
from rjepa_core.bench.ddp import synthetic_latents
from rjepa_core.store.latents import LatentStore
from rjepa_core.store.layout import StorageLayout

ROOT = Path(__file__).resolve().parents[2]
TINY = "model: {preset: tiny}\noptim: {total_steps: 6, warmup_steps: 1}\ntrain: {batch_size: 8, val_every: 3}\n"


def _losses(run: Path) -> list[float]:
    result = json.loads((run / "train_result.json").read_text())
    assert result["steps"] == 6 and (run / "best" / "model.safetensors").exists()
    return [r["loss"] for r in result["history"] if r["kind"] == "train"]


def test_rjepa_train_on_two_processes_matches_one(tmp_path, monkeypatch):
    store = tmp_path / "store"
    LatentStore(StorageLayout(store)).write("bench", "b1", synthetic_latents(120, 64))
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    args = ["train", "--llm", "bench", "--version", "b1", "--config", str(config), "--device", "cpu"]
    env = {**os.environ, "RJEPA_STORAGE": str(store), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.run(
        [sys.executable, "-m", "rjepa_assets.cli", *args, "--nproc", "2", "--out", str(tmp_path / "two")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "6 steps on 2 processes" in proc.stdout and "--nproc-per-node=2" in proc.stdout

    monkeypatch.setenv("RJEPA_STORAGE", str(store))
    main([*args, "--out", str(tmp_path / "one")])  # --nproc 1: in this process
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert max(abs(a - b) for a, b in zip(one, two, strict=True)) <= 1e-4  # see tests/core/jepa/test_ddp.py

    with pytest.raises(SystemExit, match="--nproc must be >= 1"):
        main([*args, "--nproc", "0"])
    with pytest.raises(SystemExit, match="no latents for nope/b1"):
        main(["train", "--llm", "nope", "--version", "b1", "--config", str(config)])
