"""Adapters in the store, the way checkpoints are kept: one folder per run, a LATEST pointer to follow.

    >>> pointer = publish_adapter(layout, adapter, meta, target="gemma3-270m", reference="smollm2-135m",
    ...                           version="v1", run_id="20261207T0930-ab12cd34")
    >>> loaded = load_adapter(find_latest_adapter(layout, "gemma3-270m")["path"])
    >>> loaded.adapter.in_width, loaded.meta["reference_checkpoint"]

adapters/<reference>__to__<target>/<version>/<run_id>/{adapter.safetensors, meta.json} (the folder written
aside and renamed into place), adapters/<reference>__to__<target>/LATEST.json (replaced by an atomic rename)
and HISTORY.jsonl (one line per publish), as checkpoints/<llm>/ holds them. meta.json records the reference
llm and checkpoint, the widths, the fit method and its held-out numbers, so an adapter says what it maps into.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from rjepa_core.io import atomic_write_json, old_dir, replace_dir
from rjepa_core.store.layout import StorageLayout, check_name
from rjepa_core.transfer.adapter import LatentAdapter

WEIGHTS = "adapter.safetensors"
META = "meta.json"
LATEST = "LATEST.json"
HISTORY = "HISTORY.jsonl"
FORMAT_VERSION = 1


@dataclass
class LoadedAdapter:
    adapter: LatentAdapter  # in eval mode, on CPU
    meta: dict[str, Any]  # reference_llm, reference_checkpoint, widths, method, held_out, ...
    path: Path  # folder actually read (may be the .old fallback after a crash)


def adapter_run_dir(layout: StorageLayout, reference: str, target: str, version: str, run_id: str) -> Path:
    root = layout.adapters_dir(reference, target)
    return root / check_name("dataset version", version) / check_name("run_id", run_id)


def save_adapter(path: str | Path, adapter: LatentAdapter, meta: dict[str, Any]) -> Path:
    """Write the adapter folder atomically (replacing any previous one at `path`)."""
    full = {
        "format_version": FORMAT_VERSION,
        "in_width": adapter.in_width,
        "ref_width": adapter.ref_width,
        "saved_at": time.time(),
        **meta,
    }

    def write(tmp: Path) -> None:
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in adapter.state_dict().items()}
        save_file(tensors, str(tmp / WEIGHTS))
        (tmp / META).write_text(json.dumps(full, indent=2, sort_keys=True, default=float))

    return replace_dir(path, write)


def load_adapter(path: str | Path) -> LoadedAdapter:
    path = Path(path)
    for p in (path, old_dir(path)):
        if (p / WEIGHTS).exists() and (p / META).exists():
            meta = json.loads((p / META).read_text())
            adapter = LatentAdapter(int(meta["in_width"]), int(meta["ref_width"]))
            adapter.load_state_dict(load_file(str(p / WEIGHTS)), strict=True)
            return LoadedAdapter(adapter.eval(), meta, p)
    raise FileNotFoundError(
        f"no latent adapter at {path} (expected {WEIGHTS} and {META}): materialize `calibration_adapter`"
    )


def publish_adapter(
    layout: StorageLayout,
    adapter: LatentAdapter,
    meta: dict[str, Any],
    *,
    target: str,
    reference: str,
    version: str,
    run_id: str,
) -> dict[str, Any]:
    """Save the adapter under its run folder and point LATEST at it; returns the pointer."""
    folder = save_adapter(adapter_run_dir(layout, reference, target, version, run_id), adapter, meta)
    pointer = {
        "target_llm": target,
        "reference_llm": reference,
        "dataset_version": version,
        "run_id": run_id,
        "path": layout.portable(folder),
        "reference_checkpoint": meta.get("reference_checkpoint"),
        "created_at": datetime.now(UTC).isoformat(),
    }
    root = layout.adapters_dir(reference, target)
    with open(root / HISTORY, "a", encoding="utf-8") as f:  # history first: never a pointer without its line
        f.write(json.dumps(pointer, default=str) + "\n")
    atomic_write_json(root / LATEST, pointer)
    return {**pointer, "path": str(folder)}


def read_latest_adapter(layout: StorageLayout, reference: str, target: str) -> dict[str, Any] | None:
    try:
        pointer = json.loads((layout.adapters_dir(reference, target) / LATEST).read_text())
    except FileNotFoundError:
        return None
    return {**pointer, "path": str(layout.resolve(pointer["path"]))}


def find_latest_adapter(layout: StorageLayout, target: str) -> dict[str, Any] | None:
    """The newest published adapter into any reference for `target` (None when there is none)."""
    check_name("llm_tag", target)
    base = layout.root / "adapters"
    found = []
    for latest in base.glob(f"*__to__{target}/{LATEST}") if base.is_dir() else []:
        pointer = read_latest_adapter(layout, latest.parent.name.split("__to__")[0], target)
        if pointer is not None:
            found.append(pointer)
    return max(found, key=lambda p: p["created_at"]) if found else None
