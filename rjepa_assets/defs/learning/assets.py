"""The A/B gate [llm × dataset_version]: the partition's new (candidate) checkpoint against the deployed one.

Both score the same test problems and the same first K sampled candidates of the fixed evaluation
partition (`gate.eval_version` in learning_loop.yaml, else this partition); the candidate replaces the
deployed checkpoint only if the paired bootstrap mean difference of the gate metric is above
`gate.min_improvement`. Either way the decision and its numbers are this asset's materialization.
"""

import dataclasses

import dagster as dg

from rjepa_assets.defs.jepa.assets import jepa_checkpoint
from rjepa_assets.defs.metadata import fmt, md_table
from rjepa_assets.defs.partitions import llm_x_version, split_key
from rjepa_assets.defs.resources import ConfigsResource, StorageResource
from rjepa_assets.defs.student.assets import GPU_OP_TAGS, GPU_POOL
from rjepa_core.learning.promotion import PROMOTED, run_gate

DEPLOYED = dg.AssetKey("deployed_checkpoint")  # every pointer move (gate, promote, rollback) is logged on it


class GateConfig(dg.Config):
    min_improvement: float | None = None  # overrides learning_loop.yaml gate.min_improvement
    device: str = "cpu"  # scoring device (auto = CUDA when present)


def deployment_event(
    llm_tag: str, action: str, before: str | None, after: str | None, **extra
) -> dg.AssetMaterialization:
    return dg.AssetMaterialization(
        asset_key=DEPLOYED,
        description=f"{action}: {llm_tag} {before} → {after}",
        metadata={"llm_tag": llm_tag, "action": action, "from_run_id": before or "", "to_run_id": after or "",
                  **extra},
    )  # fmt: skip


@dg.asset(
    partitions_def=llm_x_version,
    deps=[jepa_checkpoint],
    group_name="jepa",
    pool=GPU_POOL,
    op_tags=GPU_OP_TAGS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"pytorch"},
    description="A/B gate: candidate vs deployed checkpoint on the same test candidates (paired bootstrap); "
    "promotes the candidate (moves LATEST) only if better by gate.min_improvement, else keeps and says why.",
)
def ab_gate(context: dg.AssetExecutionContext, config: GateConfig, storage: StorageResource, configs: ConfigsResource):
    gate = configs.loop().gate
    if config.min_improvement is not None:
        gate = dataclasses.replace(gate, min_improvement=config.min_improvement)
    results = [_gate_partition(context, config, storage, gate, key) for key in context.partition_keys]
    if len(results) == 1:
        return dg.MaterializeResult(metadata=results[0])
    rows = [{k: r[k] for k in ("partition", "decision", "difference", "reason")} for r in results]
    return dg.MaterializeResult(metadata={"partitions": md_table(rows)})


def _gate_partition(context, config: GateConfig, storage: StorageResource, gate, key) -> dict:
    version, tag = split_key(key)
    out = run_gate(storage.layout(), tag, version, gate, device=config.device)
    context.log.info(f"{out['decision']}: {out['reason']}")
    cmp = out["comparison"] or {}
    diff = cmp.get("difference") or {}
    lo, hi = diff.get("ci95") or (float("nan"), float("nan"))
    if out["decision"] == PROMOTED:
        context.log_event(
            deployment_event(tag, "promote (ab_gate)", out["deployed_run_id"], out["candidate_run_id"],
                             dataset_version=version)
        )  # fmt: skip
    return {
            "partition": str(key),
            "decision": out["decision"],
            "reason": out["reason"],
            "candidate_run_id": out["candidate_run_id"],
            "deployed_run_id": out["deployed_run_id"] or "",
            "warm_start_from": out["warm_start_from"] or "",
            "eval_version": out["eval_version"],
            "metric": gate.metric,
            "min_improvement": gate.min_improvement,
            "candidate_value": cmp.get("candidate", float("nan")),
            "deployed_value": cmp.get("deployed", float("nan")),
            "difference": diff.get("mean", float("nan")),
            "difference_ci95": f"[{fmt(lo)}, {fmt(hi)}]",
            "n_problems": cmp.get("n_problems", 0),
            "k": gate.k,
            "bootstrap": gate.bootstrap,
    }  # fmt: skip
