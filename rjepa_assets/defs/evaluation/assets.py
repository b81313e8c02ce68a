"""The eval report asset [llm × dataset_version]: selection methods compared on the same candidates."""

from __future__ import annotations

import dagster as dg

from rjepa_assets.defs.jepa.assets import jepa_checkpoint
from rjepa_assets.defs.metadata import md_table, png
from rjepa_assets.defs.partitions import llm_x_version, split_key
from rjepa_assets.defs.resources import StorageResource
from rjepa_assets.defs.student.assets import GPU_POOL
from rjepa_core.pipeline import run_evaluation


class EvalConfig(dg.Config):
    ks: list[int] = [4, 8]  # candidate counts compared (each ≤ the k_test of student_chains)
    bootstrap: int = 1000  # bootstrap resamples for the 95 % intervals
    seed: int = 0
    device: str = "cpu"


@dg.asset(
    partitions_def=llm_x_version,
    deps=[jepa_checkpoint],
    group_name="evaluation",
    pool=GPU_POOL,
    kinds={"pytorch"},
    check_specs=[
        dg.AssetCheckSpec("rerank_not_worse_than_off", asset="eval_report",
                          description="JEPA rerank accuracy ≥ OFF (greedy) at the largest K")
    ],
    description="Test split: greedy (OFF), random, majority vote, max log-prob, verifier, probe, JEPA rerank, "
    "composite — accuracy with 95 % CIs, AUROC, oracle pass@K, first-error localisation, latency.",
)
def eval_report(context: dg.AssetExecutionContext, config: EvalConfig, storage: StorageResource):
    version, tag = split_key(context.partition_key)
    report, paths = run_evaluation(storage.layout(), tag, version, ks=tuple(config.ks), seed=config.seed,
                                   bootstrap=config.bootstrap, device=config.device, log=context.log.info)
    k = f"k={max(config.ks)}"
    methods = report["methods"]
    rows = [
        {"method": name, **{kk: _fmt(per_k.get(kk, {})) for kk in (f"k={x}" for x in config.ks)}}
        for name, per_k in methods.items()
    ]
    rerank, off = methods["jepa_rerank"][k]["accuracy"], methods["greedy"][k]["accuracy"]
    metadata = {
        "n_problems": report["n_problems"],
        "auroc_jepa": report.get("auroc_jepa") or float("nan"),
        "accuracy_off": off,
        "accuracy_jepa_rerank": rerank,
        "accuracy_majority": methods["majority_vote"][k]["accuracy"],
        "methods": md_table(rows),
        "report": dg.MetadataValue.path(str(paths["json"])),
    }
    for name, p in paths.items():
        if str(p).endswith(".png"):
            metadata[f"plot_{name}"] = png(p, name)
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[
            dg.AssetCheckResult(
                check_name="rerank_not_worse_than_off",
                passed=bool(rerank >= off),
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"rerank": rerank, "off": off, "k": k},
            )
        ],
    )


def _fmt(m: dict) -> str:
    if not m:
        return ""
    ci = m.get("ci95") or [float("nan")] * 2
    return f"{m['accuracy']:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]"
