"""Jobs of the learning loop: the nightly warm-start retraining with its A/B gate, promotion, rollback."""

import dagster as dg

from rjepa_assets.defs.learning.assets import deployment_event
from rjepa_assets.defs.resources import StorageResource
from rjepa_core.learning.promotion import promote, rollback

# what the nightly schedule runs: fine-tune from the deployed checkpoint, do not publish, let the gate decide
NIGHTLY_RUN_CONFIG = {"ops": {"jepa_checkpoint": {"config": {"warm_start": True, "publish": False}}}}

nightly_job = dg.define_asset_job(
    "nightly_job",
    selection=dg.AssetSelection.assets("student_chains", "latents", "jepa_checkpoint", "ab_gate", "latent_decoder"),
    config=NIGHTLY_RUN_CONFIG,
    description="For one LLM and the newest dataset version: chains → latents → checkpoint fine-tuned from the "
    "deployed one (not published) → ab_gate (promote or keep, with the numbers) → latent decoder.",
)


class PromoteConfig(dg.Config):
    llm_tag: str  # the student whose deployed checkpoint changes
    dataset_version: str  # the partition of the checkpoint to deploy
    run_id: str = ""  # one training run of that partition; empty = its newest


class RollbackConfig(dg.Config):
    llm_tag: str  # the student whose previous checkpoint is deployed again


@dg.op(description="Deploy one checkpoint (moves LATEST.json; the service reloads it).")
def promote_op(context: dg.OpExecutionContext, config: PromoteConfig, storage: StorageResource):
    try:
        out = promote(storage.layout(), config.llm_tag, config.dataset_version, config.run_id or None)
    except (FileNotFoundError, ValueError) as exc:
        raise dg.Failure(str(exc)) from None
    context.log_event(deployment_event(config.llm_tag, "promote (manual)", out["from"], out["to"],
                                       dataset_version=config.dataset_version))  # fmt: skip
    return out["to"]


@dg.op(description="Deploy again the checkpoint deployed before the current one (moves LATEST.json back).")
def rollback_op(context: dg.OpExecutionContext, config: RollbackConfig, storage: StorageResource):
    try:
        out = rollback(storage.layout(), config.llm_tag)
    except (FileNotFoundError, ValueError) as exc:
        raise dg.Failure(str(exc)) from None
    context.log_event(deployment_event(config.llm_tag, "rollback", out["from"], out["to"],
                                       dataset_version=out["pointer"]["dataset_version"]))  # fmt: skip
    return out["to"]


@dg.job(name="promote_checkpoint", description="Promote a checkpoint by hand: the service serves it next.")
def promote_checkpoint_job():
    promote_op()


@dg.job(name="rollback_checkpoint", description="Roll back to the checkpoint deployed before the current one.")
def rollback_checkpoint_job():
    rollback_op()
