"""Promotion of a candidate checkpoint: the A/B gate's decision, a manual promotion, a rollback.

    >>> decision = run_gate(layout, "smollm2-135m", "v1.fb1", Gate(min_improvement=0.01))
    >>> decision["decision"], decision["reason"]
    ('kept', 'candidate − deployed jepa_selection = +0.000 [...] on 30 problems (K=8), not above +0.010: ...')
    >>> promote(layout, "smollm2-135m", "v1.fb1")        # by hand: the newest run of the partition
    >>> rollback(layout, "smollm2-135m")                  # back to the checkpoint deployed before

All three move (or keep) the `checkpoints/<llm>/LATEST.json` pointer through `store.pointers`, which
the service polls and hot-reloads; each returns the numbers its caller records (Dagster metadata).
Every gate decision is also written to `reports/<llm>/<version>/gate-<run_id>.json`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rjepa_core.io import atomic_write_json
from rjepa_core.learning.config import Gate
from rjepa_core.store.pointers import publish_latest_checkpoint, read_latest_checkpoint, rollback_latest

PROMOTED, KEPT = "promoted", "kept"


def _meta(path: str | Path) -> dict[str, Any]:
    from rjepa_core.jepa.checkpoint import resolve_checkpoint_dir

    found = resolve_checkpoint_dir(path)
    if found is None:
        raise FileNotFoundError(f"no R-JEPA checkpoint at {path}")
    return json.loads((found / "meta.json").read_text())


def _incomparable(cand: dict[str, Any], dep: dict[str, Any]) -> str | None:
    for key in ("hidden_size", "layer_idx", "pooling"):
        if cand.get(key) != dep.get(key):
            return (
                f"the deployed checkpoint reads {key}={dep.get(key)!r} latents but the candidate {cand.get(key)!r}: "
                "they cannot score the same candidates; promote by hand (`rjepa promote`) after checking its report"
            )
    return None


def _evaluate(layout, llm_tag: str, eval_version: str, cand_dir: Path, dep_dir: str, gate: Gate, device: str):
    from rjepa_core.eval.gate import compare
    from rjepa_core.jepa.checkpoint import load_checkpoint
    from rjepa_core.jepa.scoring import JEPAScorer
    from rjepa_core.schemas import ChainOfThought, Problem, read_records
    from rjepa_core.store.latents import LatentStore

    chains_path = layout.student_chains_path(llm_tag, eval_version)
    if not chains_path.exists():
        raise ValueError(f"evaluation partition {eval_version}|{llm_tag} has no student chains: materialize them")
    problems = read_records(Problem, layout.problems_path(eval_version))
    chains = read_records(ChainOfThought, chains_path)
    seqs = LatentStore(layout).read(llm_tag, eval_version, split="test")
    H = {s.cot_id: s.H for s in seqs}
    Q = {s.cot_id: s.Q for s in seqs if s.Q is not None}
    scorers = [
        JEPAScorer.from_checkpoint(load_checkpoint(p, device=device), device=device) for p in (cand_dir, dep_dir)
    ]
    return compare(*scorers, problems, chains, H, Q, k=gate.k, metric=gate.metric, n_resamples=gate.bootstrap,
                   seed=gate.seed)  # fmt: skip


def run_gate(layout, llm_tag: str, version: str, gate: Gate, *, device: str = "cpu") -> dict[str, Any]:
    """Compare the partition's newest checkpoint with the deployed one; promote it only if it is better
    by `gate.min_improvement` on the fixed evaluation partition. Returns the decision with its numbers."""
    from rjepa_core.eval.gate import decide
    from rjepa_core.pipeline import newest_checkpoint

    cand_dir = newest_checkpoint(layout, llm_tag, version)
    cand_run = cand_dir.parent.name
    cand_meta = _meta(cand_dir)
    deployed = read_latest_checkpoint(layout, llm_tag)
    eval_version = gate.eval_version or version
    out: dict[str, Any] = {
        "llm_tag": llm_tag,
        "dataset_version": version,
        "candidate_run_id": cand_run,
        "candidate_path": str(cand_dir),
        "deployed_run_id": deployed.get("run_id") if deployed else None,
        "deployed_path": deployed.get("path") if deployed else None,
        "eval_version": eval_version,
        "metric": gate.metric,
        "min_improvement": gate.min_improvement,
        "warm_start_from": cand_meta.get("warm_start_from"),
    }
    promote_it, comparison = False, None
    if deployed is None:
        promote_it, reason = True, f"nothing is deployed for {llm_tag!r}: the candidate is the first checkpoint"
    elif Path(deployed["path"]).resolve() == cand_dir.resolve():
        reason = f"the candidate {cand_run} is already the deployed checkpoint: nothing to do"
    elif (why := _incomparable(cand_meta, _meta(deployed["path"]))) is not None:
        reason = why
    else:
        try:
            comparison = _evaluate(layout, llm_tag, eval_version, cand_dir, deployed["path"], gate, device)
        except ValueError as exc:
            reason = f"no comparison possible: {exc}; the deployed checkpoint is kept"
        else:
            promote_it, reason = decide(comparison, gate.min_improvement)
    out.update(decision=PROMOTED if promote_it else KEPT, reason=reason, comparison=comparison)
    if promote_it:
        gate_numbers = (
            {k: comparison[k] for k in ("metric", "candidate", "deployed", "difference")} if comparison else {}
        )
        pointer = publish_latest_checkpoint(
            layout, llm_tag, version, cand_run,
            {**cand_meta, "path": str(cand_dir), "promoted_by": "ab_gate", "gate": gate_numbers},
        )  # fmt: skip
        out["pointer"] = pointer["run_id"]
    atomic_write_json(Path(layout.reports_dir(llm_tag, version)) / f"gate-{cand_run}.json", out)
    return out


def promote(layout, llm_tag: str, version: str, run_id: str | None = None, *, by: str = "manual") -> dict[str, Any]:
    """Deploy a checkpoint by hand (default: the newest run of the partition); returns {from, to, pointer}."""
    from rjepa_core.pipeline import newest_checkpoint

    if run_id:
        path = Path(layout.checkpoint_dir(llm_tag, version, run_id)) / "best"
    else:
        path = newest_checkpoint(layout, llm_tag, version)
        run_id = path.parent.name
    meta = _meta(path)  # a clear error if the run does not exist
    before = read_latest_checkpoint(layout, llm_tag)
    pointer = publish_latest_checkpoint(
        layout, llm_tag, version, run_id, {**meta, "path": str(path), "promoted_by": by}
    )
    return {"llm_tag": llm_tag, "from": before.get("run_id") if before else None, "to": run_id, "pointer": pointer}


def rollback(layout, llm_tag: str) -> dict[str, Any]:
    """Re-deploy the checkpoint deployed before the current one; returns {from, to, pointer}."""
    before = read_latest_checkpoint(layout, llm_tag)
    pointer = rollback_latest(layout, llm_tag)
    return {"llm_tag": llm_tag, "from": before.get("run_id") if before else None, "to": pointer["run_id"],
            "pointer": pointer}  # fmt: skip
