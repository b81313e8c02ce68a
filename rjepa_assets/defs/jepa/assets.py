"""The R-JEPA checkpoint asset [llm × dataset_version]: trained on validated train-split chains."""

import json
from datetime import UTC, datetime

import dagster as dg

from rjepa_assets.defs.metadata import md_table, png
from rjepa_assets.defs.partitions import llm_x_version, split_key
from rjepa_assets.defs.resources import ConfigsResource, StorageResource, TrainingResource
from rjepa_assets.defs.student.assets import GPU_OP_TAGS, GPU_POOL, latents
from rjepa_core.config import RJEPAConfig
from rjepa_core.eval.plots import plot_training
from rjepa_core.jepa.checkpoint import CONFIG, load_checkpoint, resolve_checkpoint_dir
from rjepa_core.jepa.runs import claim_run, training_fingerprint
from rjepa_core.llm.prompting import examples_of
from rjepa_core.pipeline import load_rjepa_config, train_jepa, tune_selection
from rjepa_core.schemas import ChainOfThought, Problem, read_records
from rjepa_core.store.latents import LatentStore
from rjepa_core.store.pointers import publish_latest_checkpoint, read_latest_checkpoint

COLLAPSE_RATIO = 0.05  # prediction std below 5 % of target std means the predictor collapsed


class CheckpointConfig(dg.Config):
    config: str = "default"  # configs/rjepa/<config>.yaml
    max_steps: int = 0  # >0 overrides optim.total_steps (quick runs)
    device: str = "auto"  # auto = CUDA → MPS → CPU
    publish: bool = True  # move the LATEST pointer the service follows to this checkpoint
    warm_start: bool = False  # fine-tune from the deployed checkpoint of this llm (learning_loop.yaml warm_start)


@dg.asset(
    partitions_def=llm_x_version,
    deps=[latents],
    group_name="jepa",
    pool=GPU_POOL,
    op_tags=GPU_OP_TAGS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"pytorch", "safetensors"},
    check_specs=[dg.AssetCheckSpec("checkpoint_not_collapsed", asset="jepa_checkpoint")],
    description="R-JEPA trained on validated chains' latents (train split), early-stopped on val, calibrated.",
)
def jepa_checkpoint(
    context: dg.AssetExecutionContext,
    config: CheckpointConfig,
    storage: StorageResource,
    configs: ConfigsResource,
    training: TrainingResource,
):
    layout, results = storage.layout(), {}
    nproc = training.checked_nproc()
    for key in context.partition_keys:
        version, tag = split_key(key)
        results[str(key)] = _train_partition(context, config, configs, layout, version, tag, nproc)
    collapsed = {k: r["ratio"] for k, r in results.items() if r["ratio"] <= COLLAPSE_RATIO}
    if len(results) == 1:
        metadata = next(iter(results.values()))["metadata"]
    else:
        metadata = {
            "partitions": md_table(
                [
                    {"partition": k, "run_id": r["metadata"]["run_id"], "best_val_loss": r["metadata"]["best_val_loss"]}
                    for k, r in results.items()
                ]
            )
        }
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[
            dg.AssetCheckResult(
                check_name="checkpoint_not_collapsed",
                passed=not collapsed,
                metadata={
                    "std_preds_over_std_targets": dg.MetadataValue.json({k: r["ratio"] for k, r in results.items()}),
                    "threshold": COLLAPSE_RATIO,
                },
            )
        ],
    )


def pooling_of(configs: ConfigsResource, tag: str) -> str:
    """The step pooling the registry gives `tag` (how its latents were pooled; the service pools the same way)."""
    spec = configs.registry().get(tag)
    return spec.pooling if spec is not None else "mean"


def question_pooling_of(configs: ConfigsResource, tag: str) -> str:
    """How the registry has `tag`'s question latent taken (token | span); the service takes it the same way."""
    spec = configs.registry().get(tag)
    return spec.question_pooling if spec is not None else "token"


def _warm_start(config: CheckpointConfig, configs: ConfigsResource, layout, tag: str, cfg):
    """(config, checkpoint to start from or None, what was decided): a nightly fine-tune from the deployed model."""
    if not config.warm_start:
        return cfg, None, "trained from scratch"
    ws = configs.loop().warm_start
    deployed = read_latest_checkpoint(layout, tag)
    if not ws.enabled:
        return cfg, None, "trained from scratch: warm_start.enabled is false in learning_loop.yaml"
    if deployed is None:
        return cfg, None, f"trained from scratch: nothing is deployed for {tag!r} yet"
    found = resolve_checkpoint_dir(deployed["path"])
    if found is None:
        return cfg, None, f"trained from scratch: the deployed checkpoint {deployed['path']} is missing"
    if RJEPAConfig.from_dict(json.loads((found / CONFIG).read_text())).model != cfg.model:
        return cfg, None, f"trained from scratch: the deployed checkpoint {deployed['run_id']} has another model config"
    steps = ws.steps if not config.max_steps else config.max_steps
    optim = {"lr": ws.lr, "min_lr": min(cfg.optim.min_lr, ws.lr), "total_steps": steps,
             "warmup_steps": min(cfg.optim.warmup_steps, steps // 10)}  # fmt: skip
    note = f"warm start from the deployed {deployed['run_id']}: lr {ws.lr:g}, {steps} steps"
    return cfg.replace(optim=optim), str(found), note


def _train_partition(
    context, config: CheckpointConfig, configs: ConfigsResource, layout, version: str, tag: str, nproc: int = 1
):
    seqs = LatentStore(layout).read(tag, version)
    if not seqs:
        raise dg.Failure(f"no latents for {tag}/{version}: materialize `latents` for this partition first")
    overrides = {"optim": {"total_steps": config.max_steps}} if config.max_steps else {}
    cfg = load_rjepa_config(configs.dir("rjepa") / f"{config.config}.yaml", seqs[0].hidden_size, **overrides)
    cfg, init_from, warm_note = _warm_start(config, configs, layout, tag, cfg)
    context.log.info(warm_note)
    # a run of the same inputs that was killed or failed is taken over and resumed from its last saved state
    fingerprint = training_fingerprint(cfg.to_dict(), LatentStore(layout).fingerprint(tag, version), init_from, nproc)
    new_run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + context.run_id[:8]
    with claim_run(layout.checkpoints_dir(tag, version), fingerprint, new_run_id) as run:
        if run.run_id != new_run_id:
            step = run.resumed_step
            saved = f"from its step {step}" if step is not None else "from the start (nothing was saved)"
            context.log.info(f"resuming the interrupted training run {run.run_id} {saved}")
        out = _train_run(context, config, configs, layout, version, tag, nproc, seqs, cfg, init_from, warm_note, run)
        run.finish()
    return out


def _train_run(context, config, configs, layout, version, tag, nproc, seqs, cfg, init_from, warm_note, run):
    run_id, out = run.run_id, run.dir
    result, meta = train_jepa(
        seqs,
        cfg,
        out,
        log=context.log.info,
        device=config.device,
        nproc=nproc,  # > 1: torchrun processes that read these latents from the store themselves
        store_root=layout.root,
        llm_tag=tag,
        dataset_version=version,
        run_id=run_id,
        init_from=init_from,
        chains=read_records(ChainOfThought, layout.student_chains_path(tag, version))
        if cfg.train.labels != "validator"
        else None,
        layer_idx=seqs[0].layer_idx,
        pooling=pooling_of(configs, tag),
        question_pooling=question_pooling_of(configs, tag),
        # the prompt the latents were extracted under: the service asks the student the same way
        prompt={"few_shot": [e.to_dict() for e in examples_of(read_records(Problem, layout.problems_path(version)))]},
    )
    # the JEPA vote's temperature and the surprise normaliser, fitted on validation candidates
    selection = tune_selection(layout, tag, version, result.checkpoint_dir, seqs)
    meta = {**meta, **selection}
    if config.publish:
        publish_latest_checkpoint(layout, tag, version, run_id, {**meta, "path": str(result.checkpoint_dir)})
    curves = plot_training({"history": result.history}, out / "training_curves.png")
    finals = {k: v for k, v in result.history[-1].items() if isinstance(v, float)} if result.history else {}
    metadata = {
        "run_id": run_id,
        "path": dg.MetadataValue.path(str(result.checkpoint_dir)),
        "steps": result.steps,
        "best_val_loss": result.best_val_loss or float("nan"),
        "initial_val_loss": result.initial_val_loss or float("nan"),
        "std_targets": result.std_targets,
        "std_preds": result.std_preds,
        "num_train_chains": result.num_train,
        "params": sum(p.numel() for p in load_checkpoint(result.checkpoint_dir).model.parameters()),
        "duration_s": round(result.duration_s, 1),
        "sequences_per_s": round(result.sequences_per_s, 1),
        "nproc": nproc,
        "final_losses": md_table(finals),
        **({"loss_curves": png(curves, "training curves")} if curves else {}),
        "config": dg.MetadataValue.json(cfg.to_dict()),
        "published_latest": config.publish,
        "warm_start_from": str(init_from or ""),
        "warm_start": warm_note,
        "resumed_from_step": run.resumed_step if run.resumed_step is not None else -1,
        "jepa_vote_tau_rel": (selection.get("jepa_vote") or {}).get("tau_rel", float("nan")),
        "surprise_norm_chains": (selection.get("surprise_norm") or {}).get("n_chains", 0),
        "nudge_threshold": (selection.get("nudge") or {}).get("overall", float("nan")),
        # the z threshold of the first step flagged as the likeliest first mistake, and where it came from
        "localisation_threshold": (selection.get("localisation") or {}).get("threshold", float("nan")),
        "localisation_source": (selection.get("localisation") or {}).get("source", ""),
    }
    return {"metadata": metadata, "ratio": result.std_preds / max(result.std_targets, 1e-8)}
