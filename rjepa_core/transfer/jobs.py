"""One adapter from the store to the store: what the `calibration_adapter` asset and `rjepa replay` run.

Reads the target llm's latents and the reference llm's LATEST checkpoint (and latents), fits, publishes:

    >>> out = fit_and_publish_adapter(layout, "gemma3-270m", "v1", reference="smollm2-135m", run_id="20261207-ab")
    >>> out["pointer"]["path"], out["report"]["held_out"]["jepa"]["ratio"]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from rjepa_core.jepa.checkpoint import load_checkpoint
from rjepa_core.store.latents import LatentStore
from rjepa_core.store.layout import StorageLayout
from rjepa_core.store.pointers import read_latest_checkpoint
from rjepa_core.transfer.fitting import AdapterFitConfig, fit_adapter
from rjepa_core.transfer.store import publish_adapter


def reference_checkpoint(layout: StorageLayout, reference: str) -> dict[str, Any]:
    """The reference llm's LATEST pointer; FileNotFoundError saying what to materialize when there is none."""
    pointer = read_latest_checkpoint(layout, reference)
    if pointer is None:
        raise FileNotFoundError(
            f"reference llm {reference!r} has no published checkpoint: materialize `jepa_checkpoint` for "
            f"{reference} first (Dagster UI, or `rjepa demo --llm {reference}`), or set reference_llm"
        )
    return pointer


def fit_and_publish_adapter(
    layout: StorageLayout,
    target: str,
    version: str,
    *,
    reference: str,
    run_id: str,
    cfg: AdapterFitConfig | None = None,
    device: str = "cpu",
    pooling: str = "mean",
    question_pooling: str = "token",
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Fit the adapter of `target`'s latents (this version) into `reference`'s LATEST checkpoint and publish
    it; returns {"pointer", "report", "adapter", "reference"}."""
    if target == reference:
        raise ValueError(
            f"{target!r} is the reference llm itself: its latents need no adapter; pick another reference_llm"
        )
    store = LatentStore(layout)
    new_seqs = store.read(target, version)
    if not new_seqs:
        raise FileNotFoundError(f"no latents for {target}/{version}: materialize `latents` for this partition first")
    pointer = reference_checkpoint(layout, reference)
    ck = load_checkpoint(pointer["path"], device=device)
    ref_version = pointer.get("dataset_version") or version
    ref_seqs = store.read(reference, ref_version)
    if not ref_seqs:
        raise FileNotFoundError(
            f"no latents of the reference {reference}/{ref_version} (its checkpoint's data): materialize `latents` "
            "for that partition; the adapter takes its centre and scale from them"
        )
    adapter, report = fit_adapter(ck, new_seqs, ref_seqs, cfg, log)
    if not all(bool(np.isfinite(t.detach().cpu().numpy()).all()) for t in adapter.state_dict().values()):
        raise ValueError(
            f"the {report['method']} fit of the {target} adapter diverged (non-finite weights): lower its lr "
            "or use method 'procrustes'; nothing was published"
        )
    meta = {
        "target_llm": target,
        "reference_llm": reference,
        "reference_checkpoint": pointer.get("run_id"),
        "reference_checkpoint_path": layout.portable(ck.path),
        "reference_dataset_version": ref_version,
        "dataset_version": version,
        "method": report["method"],
        "held_out": report["held_out"],
        "paired": report["paired"],
        "hidden_r2": report["hidden_r2"],
        "calibration": report["calibration"],
        "layer_idx": new_seqs[0].layer_idx,
        "pooling": pooling,  # how the llm's step latents were pooled: the service extracts them the same way
        "question_pooling": question_pooling,
        "fit_seconds": report["fit_seconds"],
        "num_calibration_chains": report["num_calibration_chains"],
        "history": report["history"],
    }
    published = publish_adapter(
        layout, adapter, meta, target=target, reference=reference, version=version, run_id=run_id
    )
    return {"pointer": published, "report": report, "adapter": adapter, "reference": pointer}
