"""The latent adapter asset [llm × dataset_version]: the llm's latents mapped into a reference checkpoint.

`calibration_adapter` is the design card's name for it; its code lives in `rjepa_core.transfer` (not to be
confused with `jepa/calibration.py`, the 0-1 score scale of one checkpoint).
"""

from datetime import UTC, datetime

import dagster as dg
import numpy as np

from rjepa_assets.defs.jepa.assets import pooling_of, question_pooling_of
from rjepa_assets.defs.metadata import fmt, md_table
from rjepa_assets.defs.partitions import llm_x_version, multi_key, split_key
from rjepa_assets.defs.resources import ConfigsResource, StorageResource
from rjepa_assets.defs.student.assets import GPU_OP_TAGS, GPU_POOL, latents
from rjepa_core.jepa.checkpoint import load_checkpoint
from rjepa_core.store.latents import LatentStore
from rjepa_core.transfer.fitting import AdapterFitConfig
from rjepa_core.transfer.jobs import fit_and_publish_adapter
from rjepa_core.transfer.store import load_adapter

CHECKS = ("adapter_finite", "adapter_widths", "adapter_beats_baselines")
COLUMNS = ("ratio", "loss", "trivial", "std_targets")  # per candidate map, held-out (rjepa_core.transfer.fitting)


class AdapterConfig(dg.Config):
    reference_llm: str = "smollm2-135m"  # the llm whose LATEST checkpoint the adapter maps into
    method: str = "jepa"  # jepa (F13: R-JEPA frozen, W_in trained) | procrustes | ridge (paired baselines)
    calibration_fraction: float = 0.1  # share of the llm's validated train chains the jepa fit sees
    steps: int = 300  # optimizer steps of the jepa fit
    lr: float = 1e-3  # learning rate of W_in
    fit_out: bool = True  # fit W_out on the reference's to_hidden outputs (else the pseudo-inverse of W_in)
    seed: int = 0
    device: str = "cpu"


def _redo(tag: str, version: str) -> str:
    key = multi_key(version, tag)
    return (
        f"re-materialize `calibration_adapter` for {key} (Dagster UI, or `rjepa replay --llms {tag} --version "
        f"{version} --adapters-only`)"
    )


@dg.asset(
    partitions_def=llm_x_version,
    deps=[latents],
    group_name="transfer",
    pool=GPU_POOL,
    op_tags=GPU_OP_TAGS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"pytorch", "safetensors"},
    check_specs=[dg.AssetCheckSpec(name, asset="calibration_adapter") for name in CHECKS],
    description="Latent adapter W_in/W_out from this llm into the reference llm's LATEST checkpoint (F13): "
    "R-JEPA frozen, W_in fitted on a calibration set; paired ridge/Procrustes baselines on shared chains.",
)
def calibration_adapter(
    context: dg.AssetExecutionContext, config: AdapterConfig, storage: StorageResource, configs: ConfigsResource
):
    layout = storage.layout()
    fit_cfg = AdapterFitConfig(
        method=config.method, calibration_fraction=config.calibration_fraction, steps=config.steps, lr=config.lr,
        fit_out=config.fit_out, seed=config.seed,
    )  # fmt: skip
    rows, checks = [], {name: [] for name in CHECKS}
    metadata: dict = {}
    for key in context.partition_keys:
        version, tag = split_key(key)
        run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + context.run_id[:8]
        try:
            out = fit_and_publish_adapter(
                layout,
                tag,
                version,
                reference=config.reference_llm,
                run_id=run_id,
                cfg=fit_cfg,
                device=config.device,
                pooling=pooling_of(configs, tag),
                question_pooling=question_pooling_of(configs, tag),
                log=context.log.info,
            )
        except (FileNotFoundError, ValueError) as exc:
            raise dg.Failure(f"calibration_adapter {key}: {exc}") from exc
        rep, held = out["report"], out["report"]["held_out"]
        _check_stored(layout, out, tag, version, checks)
        rows.append({"partition": str(key), "method": rep["method"], **{m: fmt(h["ratio"]) for m, h in held.items()}})
        metadata = {
            "reference_llm": config.reference_llm,
            "reference_checkpoint": out["reference"].get("run_id"),
            "adapter_run_id": run_id,
            "path": dg.MetadataValue.path(out["pointer"]["path"]),
            "method": rep["method"],
            "started_from": rep["started_from"],
            "in_width": rep["in_width"],
            "ref_width": rep["ref_width"],
            "num_calibration_chains": rep["num_calibration_chains"],
            "num_train_chains": rep["num_train_chains"],
            "num_held_out_chains": rep["num_held_out_chains"],
            # lower ratio = better: the JEPA-loss over the position/domain-only predictor's, on held-out chains
            "held_out": md_table([{"map": m, **{k: fmt(h[k]) for k in COLUMNS}} for m, h in held.items()]),
            "held_out_ratio": held.get(rep["method"], {}).get("ratio", float("nan")),
            "fit_curve": dg.MetadataValue.json([[r["step"], r["ratio"]] for r in rep["history"] if r["kind"] == "val"]),
            "paired_r2": dg.MetadataValue.json(rep["paired"]),
            "hidden_r2": dg.MetadataValue.json(rep["hidden_r2"]),
            "fit_seconds": rep["fit_seconds"],
        }
    if len(rows) > 1:
        metadata = {"reference_llm": config.reference_llm, "partitions": md_table(rows)}
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[
            dg.AssetCheckResult(
                check_name=name,
                passed=all(r["passed"] for r in found),
                description="\n".join(r["why"] for r in found if not r["passed"]) or "passed",
                metadata={"partitions": dg.MetadataValue.json({r["key"]: r["numbers"] for r in found})},
            )
            for name, found in checks.items()
        ],
    )


def _check_stored(layout, out: dict, tag: str, version: str, checks: dict) -> None:
    """The three checks on the adapter as it was written to the store (read back, not the object in memory)."""
    key = str(multi_key(version, tag))
    stored = load_adapter(out["pointer"]["path"])
    ad, held = stored.adapter, out["report"]["held_out"]
    bad = [k for k, v in ad.state_dict().items() if not np.isfinite(v.numpy()).all()]
    why = f"{key}: non-finite {bad}: lower lr, then {_redo(tag, version)}"
    checks["adapter_finite"].append({"key": key, "passed": not bad, "numbers": {"non_finite_tensors": bad}, "why": why})
    want_in = LatentStore(layout).hidden_size(tag, version)
    want_ref = load_checkpoint(out["reference"]["path"]).config.model.hidden_size
    ok = (ad.in_width, ad.ref_width) == (want_in, want_ref)
    widths = {"in_width": ad.in_width, "llm_width": want_in, "ref_width": ad.ref_width, "checkpoint_width": want_ref}
    why = f"{key}: adapter {ad.in_width}->{ad.ref_width}, latents {want_in}, checkpoint {want_ref}: "
    why += _redo(tag, version)
    checks["adapter_widths"].append({"key": key, "passed": ok, "numbers": widths, "why": why})
    chosen = held[out["report"]["method"]]["ratio"]
    numbers = {m: held[m]["ratio"] for m in held} | {"chosen": out["report"]["method"]}
    beats = chosen < held["pad"]["ratio"] and chosen < held["random"]["ratio"]
    checks["adapter_beats_baselines"].append({
        "key": key, "passed": bool(beats), "numbers": numbers,
        "why": f"{key}: held-out JEPA-loss ratio {chosen:.4f} is not below the identity/pad map's "
        f"{held['pad']['ratio']:.4f} and the random map's {held['random']['ratio']:.4f}: more calibration chains "
        f"(calibration_fraction), more steps, or method 'procrustes'/'ridge' when both llms share chains; then "
        f"{_redo(tag, version)}",
    })  # fmt: skip
