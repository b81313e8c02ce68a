"""Atomic "latest checkpoint" pointers, with an append-only history and rollback (F14 promotion).

    >>> publish_latest_checkpoint(layout, "smollm2-135m", "v1", "20261123T0200-ab12", {"val_loss": 0.4})
    >>> read_latest_checkpoint(layout, "smollm2-135m")["run_id"]
    '20261123T0200-ab12'
    >>> rollback_latest(layout, "smollm2-135m")      # back to the checkpoint deployed before it

checkpoints/<llm_tag>/LATEST.json is what the service follows; it is replaced by an atomic rename,
so a reader sees the old or the new pointer, never half of one. checkpoints/<llm_tag>/HISTORY.jsonl
gets one line per publish or rollback. Deployments form a stack: a publish pushes, a rollback pops,
so rolling back twice goes two deployments back (never forward to the one just rolled back).
Publishers and rollbacks of one llm serialise on a lock of the history file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
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


@contextlib.contextmanager
def _locked_history(layout: StorageLayout, llm_tag: str) -> Iterator[Any]:
    _, history = _paths(layout, llm_tag)
    history.parent.mkdir(parents=True, exist_ok=True)
    with open(history, "a", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield f


def _record(f: Any, latest: Path, pointer: dict[str, Any]) -> None:
    """History first, then LATEST: a crash in between leaves a history line, never a pointer without one."""
    f.write(json.dumps(pointer, default=str) + "\n")
    f.flush()
    atomic_write_json(latest, pointer)


def _pointer(
    layout: StorageLayout, llm_tag: str, version: str, run_id: str, path: str | Path | None, meta: dict[str, Any]
) -> dict[str, Any]:
    return {
        "llm_tag": llm_tag,
        "dataset_version": check_name("dataset version", version),
        "run_id": check_name("run_id", run_id),
        "path": layout.portable(path or layout.checkpoint_dir(llm_tag, version, run_id) / "best"),
        "created_at": datetime.now(UTC).isoformat(),
        "meta": meta,
    }


def publish_latest_checkpoint(
    layout: StorageLayout,
    llm_tag: str,
    version: str,
    run_id: str,
    meta: dict[str, Any] | None = None,
    path: str | Path | None = None,
) -> dict[str, Any]:
    """Make this run the deployed checkpoint of `llm_tag`; returns the pointer written.

    `path` (or `meta["path"]`) is the checkpoint folder; default checkpoints/<llm>/<version>/<run_id>/best.
    """
    meta = dict(meta or {})
    path = path or meta.pop("path", None)
    pointer = {**_pointer(layout, llm_tag, version, run_id, path, meta), "action": "publish"}
    latest, _ = _paths(layout, llm_tag)
    with _locked_history(layout, llm_tag) as f:
        _record(f, latest, pointer)
    return _local(layout, dict(pointer))


def read_latest_checkpoint(layout: StorageLayout, llm_tag: str) -> dict[str, Any] | None:
    """The deployed pointer of `llm_tag`, or None if nothing was ever published."""
    latest, _ = _paths(layout, llm_tag)
    try:
        return _local(layout, json.loads(latest.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None


def _local(layout: StorageLayout, pointer: dict[str, Any]) -> dict[str, Any]:
    """The pointer with its path made local (object storage records it relative to the root)."""
    if pointer.get("path"):
        pointer["path"] = str(layout.resolve(pointer["path"]))
    return pointer


def pointer_history(layout: StorageLayout, llm_tag: str) -> list[dict[str, Any]]:
    """Every pointer ever written for `llm_tag` (publishes and rollbacks), oldest first."""
    _, history = _paths(layout, llm_tag)
    if not history.exists():
        return []
    out = []
    for line in history.read_text(encoding="utf-8").splitlines():
        try:
            out.append(_local(layout, json.loads(line)))
        except json.JSONDecodeError:  # a torn last line from a crash is not a pointer
            continue
    return out


history = pointer_history  # the name F14 code reads best with: `pointers.history(layout, tag)`


def deployment_stack(layout: StorageLayout, llm_tag: str) -> list[dict[str, Any]]:
    """Deployed pointers still reachable by rollback, oldest first; the last one is the current one."""
    stack: list[dict[str, Any]] = []
    for p in pointer_history(layout, llm_tag):
        if p.get("action") == "rollback":
            if stack:
                stack.pop()
        else:
            stack.append(p)
    return stack


def rollback_latest(layout: StorageLayout, llm_tag: str) -> dict[str, Any]:
    """Re-publish the checkpoint deployed before the current one (one action); returns the new pointer."""
    latest, _ = _paths(layout, llm_tag)
    with _locked_history(layout, llm_tag) as f:
        stack = deployment_stack(layout, llm_tag)
        if not stack:
            raise FileNotFoundError(f"no checkpoint was ever published for {llm_tag!r}: nothing to roll back")
        if len(stack) < 2:
            raise ValueError(
                f"{llm_tag!r} has no earlier checkpoint to roll back to (current: {stack[-1]['run_id']}): "
                "publish another checkpoint first"
            )
        current, previous = stack[-1], stack[-2]
        pointer = {
            **_pointer(
                layout,
                llm_tag,
                previous["dataset_version"],
                previous["run_id"],
                previous["path"],
                {**previous.get("meta", {}), "rolled_back_from": current["run_id"]},
            ),
            "action": "rollback",
        }
        _record(f, latest, pointer)
    return _local(layout, dict(pointer))
