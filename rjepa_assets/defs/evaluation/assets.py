"""The eval report asset [llm × dataset_version]: selection methods compared on the same candidates."""

import dagster as dg

from rjepa_assets.defs.jepa.assets import jepa_checkpoint
from rjepa_assets.defs.metadata import md_table, png
from rjepa_assets.defs.partitions import llm_x_version, split_key
from rjepa_assets.defs.resources import StorageResource
from rjepa_assets.defs.student.assets import GPU_OP_TAGS, GPU_POOL
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
    op_tags=GPU_OP_TAGS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"pytorch"},
    check_specs=[
        dg.AssetCheckSpec(
            "rerank_not_worse_than_off",
            asset="eval_report",
            description="JEPA rerank accuracy ≥ OFF (greedy) at the largest K",
        )
    ],
    description="Test split: greedy (OFF), random, majority vote, max log-prob, verifier, probe, JEPA rerank, "
    "composite — accuracy with 95 % CIs, AUROC, oracle pass@K, first-error localisation, latency.",
)
def eval_report(context: dg.AssetExecutionContext, config: EvalConfig, storage: StorageResource):
    k = f"k={max(config.ks)}"
    results, worse = {}, {}
    for key in context.partition_keys:
        version, tag = split_key(key)
        report, paths = run_evaluation(
            storage.layout(),
            tag,
            version,
            ks=tuple(config.ks),
            seed=config.seed,
            bootstrap=config.bootstrap,
            device=config.device,
            log=context.log.info,
        )
        methods = report["methods"]
        rerank, off = methods["jepa"][k]["accuracy"], methods["greedy"][k]["accuracy"]
        if rerank < off:
            worse[str(key)] = {"rerank": rerank, "off": off}
        rows = [
            {"method": name, **{kk: _fmt(per_k.get(kk, {})) for kk in (f"k={x}" for x in config.ks)}}
            for name, per_k in methods.items()
        ]
        metadata = {
            "n_problems": report["n_problems"],
            "auroc_jepa": report.get("auroc_jepa") or float("nan"),
            "accuracy_off": off,
            "accuracy_jepa_rerank": rerank,
            "accuracy_majority": methods["majority"][k]["accuracy"],
            "methods": md_table(rows),
            "report": dg.MetadataValue.path(str(paths["json"])),
        }
        for name, p in paths.items():
            if str(p).endswith(".png"):
                metadata[f"plot_{name}"] = png(p, name)
        results[str(key)] = metadata
    if len(results) == 1:
        metadata = next(iter(results.values()))
    else:
        metadata = {
            "partitions": md_table(
                [
                    {
                        "partition": key,
                        "off": m["accuracy_off"],
                        "jepa_rerank": m["accuracy_jepa_rerank"],
                        "auroc": m["auroc_jepa"],
                    }
                    for key, m in results.items()
                ]
            )
        }
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[
            dg.AssetCheckResult(
                check_name="rerank_not_worse_than_off",
                passed=not worse,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"k": k, "worse_partitions": dg.MetadataValue.json(worse)},
            )
        ],
    )


def _fmt(m: dict) -> str:
    if not m:
        return ""
    ci = m.get("ci95") or [float("nan")] * 2
    return f"{m['accuracy']:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]"
