"""The Dagster code location: `dagster dev -w workspace.yaml` loads `defs` from here."""

from __future__ import annotations

import dagster as dg

from rjepa_assets.defs.automation.jobs import dataset_job, llm_pipeline_job, modes_job
from rjepa_assets.defs.automation.schedules import nightly_retraining
from rjepa_assets.defs.automation.sensors import dataset_version_sensor, llm_registry_sensor
from rjepa_assets.defs.data.assets import gold_cots, problems
from rjepa_assets.defs.decoder.assets import latent_decoder
from rjepa_assets.defs.evaluation.assets import eval_report
from rjepa_assets.defs.executor import executor_from_env
from rjepa_assets.defs.feedback.assets import interactions
from rjepa_assets.defs.jepa.assets import jepa_checkpoint
from rjepa_assets.defs.learning.assets import ab_gate
from rjepa_assets.defs.learning.jobs import nightly_job, promote_checkpoint_job, rollback_checkpoint_job
from rjepa_assets.defs.learning.sensors import deletion_sensor, feedback_sensor
from rjepa_assets.defs.modes.assets import modes_report
from rjepa_assets.defs.resources import (
    ConfigsResource,
    StorageResource,
    StudentLLMResource,
    TrainingResource,
    duckdb_resource,
)
from rjepa_assets.defs.student.assets import latents, student_chains
from rjepa_assets.defs.student.checks import latents_integrity_job, latents_shards_intact
from rjepa_assets.defs.student.shards import latents_by_shard_job
from rjepa_assets.defs.teacher.assets import create_dataset_job, teacher_data
from rjepa_assets.defs.transfer.assets import calibration_adapter


def build_defs(resources: dict | None = None) -> dg.Definitions:
    """Definitions with default resources; tests pass their own (tmp storage, tiny LLM registry)."""
    return dg.Definitions(
        assets=[
            teacher_data,
            interactions,
            problems,
            gold_cots,
            student_chains,
            latents,
            jepa_checkpoint,
            ab_gate,
            latent_decoder,
            calibration_adapter,
            eval_report,
            modes_report,
        ],
        jobs=[
            dataset_job,
            llm_pipeline_job,
            modes_job,
            create_dataset_job,
            nightly_job,
            promote_checkpoint_job,
            rollback_checkpoint_job,
            latents_by_shard_job,
            latents_integrity_job,
        ],
        asset_checks=[latents_shards_intact],
        schedules=[nightly_retraining],
        sensors=[llm_registry_sensor, dataset_version_sensor, feedback_sensor, deletion_sensor],
        resources={
            "storage": StorageResource(),
            "configs": ConfigsResource(),
            "student_llm": StudentLLMResource(),
            "duckdb": duckdb_resource(),
            "training": TrainingResource(),
            **(resources or {}),
        },
        # In-process unless RJEPA_EXECUTOR says otherwise (k8s on a cluster): see defs/executor.py.
        executor=executor_from_env(),
    )


defs = build_defs()
