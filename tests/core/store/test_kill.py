"""SIGKILL a real writer process at random moments: readers only ever see whole, correct shards."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from rjepa_core.store.index import build_index, query
from rjepa_core.store.latents import LatentStore
from rjepa_core.store.layout import StorageLayout
from tests.core.store.writer_script import HIDDEN, LLM, PER_SHARD, SET_SHARDS, STEPS, expected_H

HERE = Path(__file__).parent
REPO = HERE.parents[2]


def kill_writer_after(root: Path, mode: str, ready: Path, delay: float) -> None:
    proc = subprocess.Popen([sys.executable, str(HERE / "writer_script.py"), str(root), str(ready), mode], cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():  # imports done: the writer is in its write loop from now on
            assert proc.poll() is None, f"writer exited early with {proc.returncode}"
            assert time.monotonic() < deadline, "writer never started"
            time.sleep(0.02)
        time.sleep(delay)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def check_content(seqs) -> None:
    for s in seqs:
        key, j = (int(x) for x in s.cot_id[1:].split("-"))
        assert s.H.shape == (STEPS, HIDDEN) and s.H.dtype == np.float16
        assert np.array_equal(s.H, expected_H(key, j)), f"{s.cot_id}: tensor differs from what the writer meant"


def debris_paths(folder: Path) -> list[str]:
    mine = f".{folder.name}."  # .v_append.new / .v_append.old; the .lock file stays by design
    hidden = [p for p in folder.parent.iterdir() if p.name.startswith(mine) and not p.name.endswith(".lock")]
    if folder.is_dir():
        hidden += [p for p in folder.iterdir() if p.name.startswith(".")]
        hidden += [p for p in folder.glob("*.safetensors") if not p.with_suffix(".parquet").exists()]
    return sorted(str(p.relative_to(folder.parent)) for p in hidden)


def debris(folder: Path) -> int:
    return len(debris_paths(folder))


def test_sigkilled_writers_never_leave_a_shard_taken_as_whole(tmp_path):
    root = tmp_path / "store"
    layout = StorageLayout(root)
    store = LatentStore(layout)
    rng = random.Random(1234)
    left_debris = 0
    for trial in range(6):
        mode = ("append", "overwrite")[trial % 2]
        version = f"v_{mode}"
        kill_writer_after(root, mode, tmp_path / f"ready-{trial}", delay=0.15 + rng.random() * 0.6)
        left_debris += debris(layout.latents_dir(LLM, version)) > 0

        seqs = store.read(LLM, version)  # must not raise, whatever state the kill left
        check_content(seqs)
        keys = sorted({int(s.cot_id[1:].split("-")[0]) for s in seqs})
        assert len(seqs) == len(keys) * PER_SHARD, f"trial {trial}: a shard was read partially"
        if mode == "append":
            assert keys == list(range(len(keys))), f"trial {trial}: shards {keys} are not the committed prefix"
        elif seqs:  # exactly one whole generation: old set or new set, never a mix
            generations = {k // 1000 for k in keys}
            assert len(generations) == 1 and len(keys) == SET_SHARDS, f"trial {trial}: keys {keys}"
        build_index(layout)
        n = query(layout, "SELECT count(*) AS n FROM latents WHERE dataset_version = ?", [version])[0]["n"]
        assert n == len(seqs), f"trial {trial}: SQL sees {n} sequences, the store {len(seqs)}"

    assert store.count(LLM, "v_append") > 0 and store.count(LLM, "v_overwrite") == SET_SHARDS * PER_SHARD
    print(f"kills that left debris behind: {left_debris}/6")
    for version in ("v_append", "v_overwrite"):
        before = store.read(LLM, version)
        store.write(LLM, version, [], append=True)  # the next writer cleans up after the killed ones
        assert debris_paths(layout.latents_dir(LLM, version)) == []
        assert store.read(LLM, version) == before
