"""R-JEPA checkpoints: a folder that rebuilds its own model (SPEC F9).

    >>> from rjepa_core.config import RJEPAConfig, rjepa_tiny
    >>> from rjepa_core.jepa.model import RJEPA
    >>> cfg = RJEPAConfig(model=rjepa_tiny(hidden_size=16))
    >>> save_checkpoint("/tmp/ckpt-demo", RJEPA(cfg.model), cfg, meta={"step": 0})
    PosixPath('/tmp/ckpt-demo')
    >>> ck = load_checkpoint("/tmp/ckpt-demo", hidden_size=16)
    >>> ck.config == cfg, ck.meta["hidden_size"]
    (True, 16)

Layout: `model.safetensors` (context encoder, target encoder, predictor, hidden head), `config.json`,
`meta.json` (hidden_size, step, val_loss, calibration, ...) and, for training checkpoints,
`train_state.pt` (optimizer, step, RNG states, collator, early-stopping state). A checkpoint is
written into a temporary sibling folder and renamed into place, so readers never see half of one;
if a crash hits between the two renames, the previous version is still found under `.<name>.old`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from rjepa_core.config import RJEPAConfig
from rjepa_core.io import atomic_write_json, old_dir, replace_dir
from rjepa_core.jepa.model import RJEPA

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
META = "meta.json"
TRAIN_STATE = "train_state.pt"
FORMAT_VERSION = 1


@dataclass
class LoadedCheckpoint:
    model: RJEPA  # rebuilt from the stored config, weights loaded, in eval mode
    config: RJEPAConfig  # the full training config stored in the checkpoint
    meta: dict[str, Any]  # hidden_size, step, val_loss, calibration (after fit_calibration), ...
    path: Path  # folder actually read (may be the .old fallback after a crash)


def resolve_checkpoint_dir(path: str | Path) -> Path | None:
    """The folder holding a complete checkpoint at `path`, or None when there is none."""
    path = Path(path)
    for p in (path, old_dir(path)):
        if (p / WEIGHTS).exists() and (p / CONFIG).exists() and (p / META).exists():
            return p
    return None


def save_checkpoint(
    path: str | Path,
    model: RJEPA,
    config: RJEPAConfig,
    meta: dict[str, Any] | None = None,
    train_state: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint folder atomically (replacing any previous one at `path`)."""
    full_meta = {
        "format_version": FORMAT_VERSION,
        "hidden_size": config.model.hidden_size,
        "saved_at": time.time(),
        **(meta or {}),
    }

    def write(tmp: Path) -> None:
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        save_file(tensors, str(tmp / WEIGHTS))
        (tmp / CONFIG).write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True))
        (tmp / META).write_text(json.dumps(full_meta, indent=2, sort_keys=True, default=float))
        if train_state is not None:
            torch.save(train_state, tmp / TRAIN_STATE)

    return replace_dir(path, write)


def load_checkpoint(
    path: str | Path,
    device: str | torch.device = "cpu",
    hidden_size: int | None = None,
    llm_tag: str | None = None,
) -> LoadedCheckpoint:
    """Rebuild the model from the config inside the checkpoint; check the student's hidden size if given."""
    found = resolve_checkpoint_dir(path)
    if found is None:
        raise FileNotFoundError(f"no R-JEPA checkpoint at {path} (expected {WEIGHTS}, {CONFIG} and {META})")
    config = RJEPAConfig.from_dict(json.loads((found / CONFIG).read_text()))
    meta = json.loads((found / META).read_text())
    trained = config.model.hidden_size
    if hidden_size is not None and hidden_size != trained:
        who = f"llm {llm_tag!r}" if llm_tag else "the requested student"
        tag = llm_tag or "<llm>"
        raise ValueError(
            f"checkpoint {path} was trained on hidden size {trained} but {who} has {hidden_size}: read its latents "
            f"through a calibration adapter ({hidden_size} -> {trained}): materialize the `calibration_adapter` asset "
            f"for {tag} (`rjepa replay --llms {tag} --adapters-only`), or train a checkpoint on its latents "
            "(`jepa_checkpoint`)"
        )
    model = RJEPA(config.model)
    model.load_state_dict(load_file(str(found / WEIGHTS)), strict=True)
    return LoadedCheckpoint(model.to(device).eval(), config, meta, found)


def load_train_state(path: str | Path) -> dict[str, Any] | None:
    """The training state saved next to the weights (None for export-only checkpoints)."""
    found = resolve_checkpoint_dir(path)
    if found is None or not (found / TRAIN_STATE).exists():
        return None
    return torch.load(found / TRAIN_STATE, map_location="cpu", weights_only=False)


def update_meta(path: str | Path, **values: Any) -> dict[str, Any]:
    """Merge values into a checkpoint's meta.json atomically (e.g. calibration=cal.to_dict())."""
    found = resolve_checkpoint_dir(path)
    if found is None:
        raise FileNotFoundError(f"no R-JEPA checkpoint at {path}")
    meta = {**json.loads((found / META).read_text()), **values}
    atomic_write_json(found / META, meta)
    return meta
