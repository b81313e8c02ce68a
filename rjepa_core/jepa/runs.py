"""Which run folder a training writes into: an interrupted run of the same inputs is resumed, not restarted.

    >>> fp = training_fingerprint(cfg.to_dict(), LatentStore(layout).fingerprint("tiny", "v1"), None, 1)
    >>> with claim_run(layout.checkpoints_dir("tiny", "v1"), fp, new_run_id="20261207T0500-ab12cd34") as run:
    ...     train(cfg, train_seqs, val_seqs, run.dir)    # resume=True: continues from run.dir/last if there is one
    ...     run.finish()
    >>> run.run_id, run.resumed_step                     # the killed run's id and its last saved step, or a new one

Each run folder holds `run.json`: the fingerprint of what decides its result (the full training config, the
latent set's shard checksums, the warm-start checkpoint, the process count) and its state, `training` until
`finish()` marks it `done`. A run killed at any point (SIGKILL, a lost pod) stays `training`; the next
materialization with the same fingerprint takes that folder over and the trainer resumes from its `last/`
(model, optimizer, RNGs, loop state: see `rjepa_core.jepa.trainer`), so the work before the last saved state
is not redone. Claiming holds an exclusive lock on the run's `run.lock` for the whole block, so two live
processes never train into one folder; the kernel drops the lock of a killed process. Readers that look for
the newest checkpoint skip unfinished runs (`is_unfinished`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rjepa_core.io import atomic_write_json

RUN = "run.json"
LOCK = "run.lock"


def training_fingerprint(config: dict[str, Any], latents: str, init_from: str | Path | None, nproc: int) -> str:
    """16 hex digits naming what a training run's result depends on."""
    what = {"config": config, "latents": latents, "init_from": str(init_from or ""), "nproc": nproc}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _record(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / RUN).read_text())
    except (OSError, ValueError):
        return None


def is_unfinished(folder: Path) -> bool:
    """True for a run folder whose training has not finished (it is running, or was killed or failed)."""
    rec = _record(folder)
    return rec is not None and rec.get("state") != "done"


def last_step(folder: Path) -> int | None:
    """The step of the training state saved in `folder/last`, or None when nothing was saved yet."""
    from rjepa_core.jepa.checkpoint import META, resolve_checkpoint_dir

    found = resolve_checkpoint_dir(folder / "last")
    if found is None:
        return None
    return int(json.loads((found / META).read_text()).get("step", 0))


@dataclass
class ClaimedRun:
    run_id: str  # the folder's name: the resumed run's id, or the new one
    dir: Path  # where the trainer writes (best/, last/, history.json)
    resumed_step: int | None  # the step the taken-over run had saved (None: a new run, or nothing saved yet)
    fingerprint: str

    def finish(self) -> None:
        rec = _record(self.dir) or {}
        atomic_write_json(self.dir / RUN, {**rec, "state": "done", "finished_at": time.time()})


def _try_lock(folder: Path):
    f = open(folder / LOCK, "a+")  # noqa: SIM115 - held for the claim's lifetime
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


@contextlib.contextmanager
def claim_run(parent: str | Path, fingerprint: str, new_run_id: str) -> Iterator[ClaimedRun]:
    """The newest unfinished, unlocked run under `parent` with this fingerprint, else a new `new_run_id` folder."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    lock, run = None, None
    candidates = [p for p in parent.iterdir() if p.is_dir() and not p.name.startswith(".") and is_unfinished(p)]
    for folder in sorted(candidates, key=lambda p: p.name, reverse=True):
        if (_record(folder) or {}).get("fingerprint") != fingerprint:
            continue
        lock = _try_lock(folder)
        if lock is not None:
            run = ClaimedRun(folder.name, folder, last_step(folder), fingerprint)
            break
    if run is None:
        folder = parent / new_run_id
        folder.mkdir(parents=True, exist_ok=False)
        lock = _try_lock(folder)
        rec = {"run_id": new_run_id, "fingerprint": fingerprint, "state": "training", "started_at": time.time()}
        atomic_write_json(folder / RUN, rec)
        run = ClaimedRun(new_run_id, folder, None, fingerprint)
    try:
        yield run
    finally:
        lock.close()
