"""Serving an llm through its latent adapter (SPEC F13) until its own checkpoint lands.

    >>> pointer = adapter_pointer(layout, "gemma3-270m")     # None without a published adapter
    >>> scorer, meta, adapter_id = through_adapter(load_checkpoint(pointer["path"]), pointer["adapter"], "cpu")

`adapter_pointer` names the checkpoint the newest adapter of the llm was fitted against (not the reference's
current LATEST: the map was fitted into that checkpoint's space), carrying the adapter's own pointer.
`ServiceState.reload` takes it only when the llm has no LATEST of its own, so the llm's own checkpoint wins
as soon as it is published.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def adapter_pointer(layout: Any, llm_tag: str) -> dict[str, Any] | None:
    """The reference checkpoint an adapter of `llm_tag` maps into, as a pointer carrying that adapter."""
    from rjepa_core.transfer.store import META, find_latest_adapter

    layout.pull(layout.root / "adapters")
    adapter = find_latest_adapter(layout, llm_tag)
    if adapter is None:
        return None
    meta = json.loads((Path(adapter["path"]) / META).read_text())
    reference = str(meta["reference_llm"])
    layout.pull(layout.checkpoints_root(reference))
    return {
        "llm_tag": reference,
        "dataset_version": meta.get("reference_dataset_version"),
        "run_id": meta.get("reference_checkpoint"),
        "path": str(layout.resolve(meta["reference_checkpoint_path"])),
        "adapter": adapter,
    }


def through_adapter(ck: Any, pointer: dict[str, Any], device: str) -> tuple[Any, dict[str, Any], str]:
    """(scorer of the reference checkpoint read through the adapter, meta for the served llm, adapter run id).

    The adapter's own calibration (fitted on the llm's held-out chains through it) replaces the reference's;
    the reference's nudge threshold and surprise normaliser are in its own latents' units, so they are dropped.
    """
    from rjepa_core.jepa.calibration import Calibration
    from rjepa_core.jepa.scoring import JEPAScorer
    from rjepa_core.transfer.adapter import AdaptedRJEPA
    from rjepa_core.transfer.store import load_adapter

    loaded = load_adapter(pointer["path"])
    model = AdaptedRJEPA(ck.model, loaded.adapter.to(device)).eval()
    cal = loaded.meta.get("calibration")
    scorer = JEPAScorer(
        model, ck.config.score, device, Calibration.from_dict(cal) if cal else None, ck.config.loss.kind
    )
    dropped = ("nudge", "surprise_norm", "localisation", "calibration", "pooling", "question_pooling", "layer_idx")
    meta = {k: v for k, v in ck.meta.items() if k not in dropped}
    meta.update({k: loaded.meta[k] for k in ("pooling", "question_pooling", "layer_idx") if k in loaded.meta})
    meta.update(hidden_size=loaded.adapter.in_width, adapter=pointer)
    return scorer, meta, str(pointer.get("run_id"))
