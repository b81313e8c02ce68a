"""Student-chain latents captured while sampling, staged beside the chains for the `latents` step to commit.

    >>> chains, seqs, stats = sample_student_chains_with_latents(student, problems, k=4)   # rjepa_core.pipeline
    >>> stage_captured(layout, "smollm2-135m", "v1", chains, seqs, settings_of(student.spec))
    >>> reuse = usable_captured(layout, "smollm2-135m", "v1", chains, settings_of(student.spec))  # {cot_id: seq}
    >>> extract_latents(student, problems, gold + chains, captured=reuse)       # only gold is teacher-forced

Layout: chains/<llm>/<version>/captured/ holds a latent set (the usual shards, through `LatentStore`)
and `captured.json`: the capture settings (layer, pooling, question pooling) and one fingerprint per
chain (its id, steps and text). The manifest is removed before the set is rewritten and written after
it, so a crash in between leaves no manifest and the `latents` step extracts everything. A sequence is
reused only when the settings equal the ones asked for and the chain's fingerprint matches, so stale
latents of a re-sampled chain (same `cot_id`, new text) are never committed.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rjepa_core.schemas import ChainOfThought, LatentSequence, stable_id

MANIFEST = "captured.json"


def captured_root(layout, llm_tag: str, version: str) -> Path:
    return Path(layout.student_chains_path(llm_tag, version)).parent / "captured"


def _store(layout, llm_tag: str, version: str):
    from rjepa_core.store.latents import LatentStore
    from rjepa_core.store.layout import StorageLayout

    return LatentStore(StorageLayout(captured_root(layout, llm_tag, version)))


def settings_of(spec, layer_idx: int | None = None, pooling: str | None = None, question_pooling=None) -> dict:
    """The capture settings latents must share to be reused: the registry entry's (`LLMSpec`) unless given."""
    return {
        "layer_idx": int(spec.layer_idx if layer_idx is None else layer_idx),
        "pooling": str(pooling or spec.pooling),
        "question_pooling": str(question_pooling or spec.question_pooling),
    }


def fingerprint(chain: ChainOfThought) -> str:
    """Changes whenever the chain's steps or text do (cot_ids are stable across re-sampling)."""
    return stable_id(chain.cot_id, "\x1e".join(chain.steps), str((chain.meta or {}).get("text", "")))


def clear_captured(layout, llm_tag: str, version: str) -> None:
    """Remove the staged set (manifest first: without it nothing is reused)."""
    root = captured_root(layout, llm_tag, version)
    (root / MANIFEST).unlink(missing_ok=True)
    shutil.rmtree(root / "latents", ignore_errors=True)


def stage_captured(
    layout, llm_tag: str, version: str, chains: Iterable[ChainOfThought], seqs: list[LatentSequence], settings: dict
) -> Path:
    """Replace the staged set of a partition by `seqs` (captured latents of some of `chains`)."""
    from rjepa_core.io import atomic_write_json

    by_id = {c.cot_id: c for c in chains}
    root = captured_root(layout, llm_tag, version)
    clear_captured(layout, llm_tag, version)
    if seqs:
        _store(layout, llm_tag, version).write(llm_tag, version, seqs, overwrite=True)
    manifest = {**settings, "chains": {s.cot_id: fingerprint(by_id[s.cot_id]) for s in seqs}}
    return atomic_write_json(root / MANIFEST, manifest)


def read_manifest(layout, llm_tag: str, version: str) -> dict[str, Any] | None:
    path = captured_root(layout, llm_tag, version) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else None


def usable_captured(
    layout, llm_tag: str, version: str, chains: Iterable[ChainOfThought], settings: dict
) -> dict[str, LatentSequence]:
    """{cot_id: staged sequence} for the chains whose staged latents can be committed as they are."""
    chains = list(chains)
    manifest = read_manifest(layout, llm_tag, version)
    if manifest is None or any(manifest.get(k) != v for k, v in settings.items()):
        return {}
    prints = manifest.get("chains") or {}
    wanted = {c.cot_id: c for c in chains if prints.get(c.cot_id) == fingerprint(c)}
    if not wanted:
        return {}
    out = {}
    for s in _store(layout, llm_tag, version).read(llm_tag, version):
        c = wanted.get(s.cot_id)
        if c is not None and s.num_steps == len(c.steps) and s.layer_idx == settings["layer_idx"]:
            # labels may have been refreshed since sampling: the chain's own win
            out[s.cot_id] = s.model_copy(update={"is_valid": c.is_valid})
    return out


def purge_captured(layout, llm_tag: str, version: str, gone) -> int:
    """Drop the staged sequences whose (problem_id, cot_id) `gone` names (a user's deleted contributions);
    returns how many were removed."""
    manifest = read_manifest(layout, llm_tag, version)
    store = _store(layout, llm_tag, version)
    seqs = store.read(llm_tag, version)
    kept = [s for s in seqs if not gone(s.problem_id, s.cot_id)]
    if len(kept) == len(seqs):
        return 0
    if manifest is None:  # no manifest: nothing is reused anyway; remove the leftovers
        clear_captured(layout, llm_tag, version)
        return len(seqs)
    settings = {k: v for k, v in manifest.items() if k != "chains"}
    prints = {s.cot_id: manifest["chains"][s.cot_id] for s in kept if s.cot_id in manifest["chains"]}
    root = captured_root(layout, llm_tag, version)
    clear_captured(layout, llm_tag, version)
    if kept:
        store.write(llm_tag, version, kept, overwrite=True)
    from rjepa_core.io import atomic_write_json

    atomic_write_json(root / MANIFEST, {**settings, "chains": prints})
    return len(seqs) - len(kept)


def captured_sequence(student, problem, chain: ChainOfThought, extracted, layer_idx: int) -> LatentSequence:
    """A chain's LatentSequence from the latents captured while it was sampled (`GeneratedChain.latents`)."""
    return LatentSequence(
        cot_id=chain.cot_id,
        problem_id=chain.problem_id,
        llm_tag=student.llm_tag,
        layer_idx=int(layer_idx),
        hidden_size=int(extracted.H.shape[1]),
        num_steps=int(extracted.H.shape[0]),
        step_spans=[tuple(s) for s in extracted.step_spans],
        token_ids=list(extracted.token_ids),
        domain=problem.domain,
        is_valid=chain.is_valid,
        split=problem.split,
        origin=chain.origin,
        H=extracted.H,
        Q=extracted.q,
    ).check()
