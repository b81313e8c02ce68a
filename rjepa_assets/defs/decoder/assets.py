"""The latent decoder asset [llm × dataset_version]: step latent → step text (SPEC F12)."""

import dagster as dg

from rjepa_assets.defs.jepa.assets import jepa_checkpoint, pooling_of
from rjepa_assets.defs.metadata import fmt, md_table
from rjepa_assets.defs.partitions import llm_x_version, split_key
from rjepa_assets.defs.resources import ConfigsResource, StorageResource, StudentLLMResource
from rjepa_assets.defs.student.assets import GPU_OP_TAGS, GPU_POOL, latents
from rjepa_core.jepa.decoder import DecoderConfig
from rjepa_core.pipeline import fit_latent_decoder, newest_checkpoint


class DecoderAssetConfig(dg.Config):
    steps: int = 0  # >0 overrides the training steps (quick runs)
    d_model: int = 0  # >0 overrides the width
    device: str = "cpu"
    decode_predictions: bool = True  # decode the newest checkpoint's predictions of held-out steps


@dg.asset(
    partitions_def=llm_x_version,
    deps=[latents, jepa_checkpoint],
    group_name="jepa",
    pool=GPU_POOL,
    op_tags=GPU_OP_TAGS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"pytorch", "safetensors"},
    check_specs=[dg.AssetCheckSpec("decoder_reads_the_latent", asset="latent_decoder")],
    description="Small causal transformer writing a step's text from its latent (valid train steps; "
    "held-out token accuracy, exact match, numeric accuracy; R-JEPA's predictions decoded).",
)
def latent_decoder(
    context: dg.AssetExecutionContext,
    config: DecoderAssetConfig,
    storage: StorageResource,
    configs: ConfigsResource,
    student_llm: StudentLLMResource,
):
    layout, rows, checks = storage.layout(), [], []
    overrides = {k: v for k, v in (("steps", config.steps), ("d_model", config.d_model)) if v}
    cfg = DecoderConfig(**overrides)
    for key in context.partition_keys:
        version, tag = split_key(key)
        ck = None
        if config.decode_predictions:
            try:
                ck = newest_checkpoint(layout, tag, version)
            except FileNotFoundError:
                context.log.warning(f"no checkpoint for {tag}/{version}: R-JEPA predictions are not decoded")
        try:
            meta = fit_latent_decoder(
                layout,
                tag,
                version,
                student_llm.load(tag).tokenizer,
                cfg=cfg,
                checkpoint_dir=ck,
                pooling=pooling_of(configs, tag),
                device=config.device,
                log=context.log.info,
            )
        except ValueError as exc:
            raise dg.Failure(f"{tag}/{version}: {exc}") from exc
        held, pred = meta["metrics"]["held_out"], meta["metrics"].get("predictions") or {}
        shuffled = held.get("baselines", {}).get("shuffled_latent", {})
        nearest = held.get("baselines", {}).get("nearest_train_step", {})
        rows.append(
            {
                "partition": str(key),
                "path": str(layout.decoder_dir(tag, version)),
                "held_out_steps": held.get("n", 0),
                "token_accuracy": held.get("token_accuracy"),
                "exact_match": held.get("exact_match"),
                "numeric_accuracy": held.get("numeric_accuracy"),
                "shuffled_token_accuracy": shuffled.get("token_accuracy"),
                "nearest_train_exact_match": nearest.get("exact_match"),
                "pred_steps": pred.get("n", 0),
                "pred_numeric_accuracy": pred.get("numeric_accuracy"),
                "pred_arithmetically_right": pred.get("arithmetically_right"),
                "examples": held.get("examples", []),
                "pred_examples": pred.get("examples", []),
                "meta": meta,
            }
        )
        ok = held.get("n", 0) > 0 and held["token_accuracy"] > shuffled.get("token_accuracy", 1.0)
        checks.append((str(key), ok, held.get("token_accuracy"), shuffled.get("token_accuracy")))
    if len(rows) == 1:
        r = rows[0]
        metadata = {
            "path": dg.MetadataValue.path(r["path"]),
            "held_out_steps": r["held_out_steps"],
            "token_accuracy": r["token_accuracy"] if r["token_accuracy"] is not None else float("nan"),
            "exact_match": r["exact_match"] if r["exact_match"] is not None else float("nan"),
            "numeric_accuracy": r["numeric_accuracy"] if r["numeric_accuracy"] is not None else float("nan"),
            "baselines": md_table(
                {
                    "shuffled latents: token accuracy": fmt(r["shuffled_token_accuracy"]),
                    "nearest training step: exact match": fmt(r["nearest_train_exact_match"]),
                }
            ),
            "predicted_steps_decoded": r["pred_steps"],
            "predicted_numeric_accuracy": r["pred_numeric_accuracy"] or float("nan"),
            "predicted_arithmetically_right": r["pred_arithmetically_right"] or float("nan"),
            "examples": md_table(r["examples"]) if r["examples"] else "none",
            "predicted_examples": md_table(r["pred_examples"]) if r["pred_examples"] else "none",
            "params": r["meta"].get("params", 0),
            "train_seconds": r["meta"].get("train_seconds", 0.0),
            "vocab_size": r["meta"].get("vocab_size", 0),
        }
    else:
        metadata = {
            "partitions": md_table(
                [{k: (fmt(v) if isinstance(v, float) else v) for k, v in r.items() if k in TABLE} for r in rows]
            )
        }
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[
            dg.AssetCheckResult(
                check_name="decoder_reads_the_latent",
                passed=all(ok for _, ok, _, _ in checks),
                description="held-out token accuracy with the true latents is above the same decoder's with "
                "shuffled latents (a decoder that ignores its input scores the same on both)",
                metadata={
                    "token_accuracy_true_vs_shuffled": dg.MetadataValue.json({k: [a, b] for k, _, a, b in checks})
                },
            )
        ],
    )


TABLE = (
    "partition",
    "held_out_steps",
    "token_accuracy",
    "exact_match",
    "numeric_accuracy",
    "pred_arithmetically_right",
)
