"""Deletion reaches derived data: problems or chains dropped from a rebuilt dataset version leave its
per-LLM artefacts too (sampled student chains, their staged captured latents, latent shards), each file
rewritten atomically.

    >>> purge_derived(layout, "v1.fb1", problem_ids={"3f2a…"}, cot_ids={"9b1c…"})
    {'tiny': {'student_chains': 3, 'latents': 4}}

Checkpoints already trained on the removed rows keep what they learnt in their weights; README
("The learning loop") says how to retrain without them.
"""

from __future__ import annotations

from collections.abc import Set
from pathlib import Path
from typing import Any

from rjepa_core.captured import purge_captured
from rjepa_core.schemas import ChainOfThought, read_records, write_records
from rjepa_core.store.latents import LatentStore


def _llms_with(root: Path, kind: str, version: str) -> list[str]:
    base = root / kind
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if p.is_dir() and (p / version).exists())


def purge_derived(layout, version: str, problem_ids: Set[str] = frozenset(), cot_ids: Set[str] = frozenset()):
    """Remove the given problems' and chains' rows from every LLM's student chains and latents of `version`.

    Returns {llm_tag: {"student_chains": removed, "latents": removed}} for the LLMs that had any.
    """
    out: dict[str, dict[str, Any]] = {}
    if not problem_ids and not cot_ids:
        return out

    def gone(problem_id: str, cot_id: str) -> bool:
        return problem_id in problem_ids or cot_id in cot_ids

    root = Path(layout.root)
    for tag in _llms_with(root, "chains", version):
        staged = purge_captured(layout, tag, version, gone)  # latents captured while sampling, not yet committed
        if staged:
            out.setdefault(tag, {})["captured_latents"] = staged
        path = layout.student_chains_path(tag, version)
        if not path.exists():
            continue
        chains = read_records(ChainOfThought, path)
        kept = [c for c in chains if not gone(c.problem_id, c.cot_id)]
        if len(kept) != len(chains):
            write_records(kept, path, ChainOfThought)
            out.setdefault(tag, {})["student_chains"] = len(chains) - len(kept)
    store = LatentStore(layout)
    for tag in _llms_with(root, "latents", version):
        seqs = store.read(tag, version)
        kept_seqs = [s for s in seqs if not gone(s.problem_id, s.cot_id)]
        if len(kept_seqs) != len(seqs):
            store.write(tag, version, kept_seqs, overwrite=True)
            out.setdefault(tag, {})["latents"] = len(seqs) - len(kept_seqs)
    return out
