"""Atomic "latest checkpoint" pointers, with history and one-step rollback (F14 promotion).

    >>> publish_latest_checkpoint(layout, "smollm2-135m", "v1", "20261123T0200-ab12", {"val_loss": 0.4})
    >>> read_latest_checkpoint(layout, "smollm2-135m")["run_id"]
    '20261123T0200-ab12'
    >>> rollback_latest(layout, "smollm2-135m")      # back to the previously published one

The service follows LATEST.json only; it is replaced with an atomic rename, so a reader sees the
old or the new pointer, never half of one.
"""

from __future__ import annotations

import fcntl
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rjepa_core.io import atomic_write_json
from rjepa_core.store.layout import StorageLayout, check_name

LATEST = "LATEST.json"
HISTORY = "HISTORY.jsonl"


def _paths(layout: StorageLayout, llm_tag: str) -> tuple[Path, Path]:
    root = layout.checkpoints_root(llm_tag)
    return root / LATEST, root / HISTORY


def publish_latest_checkpoint(
    layout: StorageLayout, llm_tag: str, version: str, run_id: str, meta: dict[str, Any] | None = None
) -> dict[str, Any]:
    check_name("dataset version", version)
    check_name("run_id", run_id)
    meta = dict(meta or {})
    path = meta.pop("path", None) or str(layout.checkpoint_dir(llm_tag, version, run_id) / "best")
    pointer = {
        "llm_tag": llm_tag,
        "dataset_version": version,
        "run_id": run_id,
        "path": str(path),
        "created_at": datetime.now(UTC).isoformat(),
        "meta": meta,
    }
    latest, history = _paths(layout, llm_tag)
    history.parent.mkdir(parents=True, exist_ok=True)
    with open(history, "a", encoding="utf-8") as f:  # append-only log, one complete line per publish
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(json.dumps(pointer, default=str) + "\n")
        f.flush()
    atomic_write_json(latest, pointer)
    return pointer


def read_latest_checkpoint(layout: StorageLayout, llm_tag: str) -> dict[str, Any] | None:
    latest, _ = _paths(layout, llm_tag)
    if not latest.exists():
        return None
    return json.loads(latest.read_text(encoding="utf-8"))


def pointer_history(layout: StorageLayout, llm_tag: str) -> list[dict[str, Any]]:
    _, history = _paths(layout, llm_tag)
    if not history.exists():
        return []
    out = []
    for line in history.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a torn last line from a crash is not a pointer
            continue
    return out


def rollback_latest(layout: StorageLayout, llm_tag: str) -> dict[str, Any]:
    """Re-publish the pointer that was current before the latest one (one action)."""
    current = read_latest_checkpoint(layout, llm_tag)
    if current is None:
        raise FileNotFoundError(f"no checkpoint was ever published for {llm_tag}")
    previous = [p for p in pointer_history(layout, llm_tag) if p["run_id"] != current["run_id"]]
    if not previous:
        raise ValueError(f"{llm_tag} has no earlier checkpoint to roll back to")
    p = previous[-1]
    return publish_latest_checkpoint(
        layout,
        llm_tag,
        p["dataset_version"],
        p["run_id"],
        {**p.get("meta", {}), "path": p["path"], "rolled_back_from": current["run_id"]},
    )
