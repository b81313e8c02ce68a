"""Nightly retraining: for the newest dataset version of every LLM, chains → latents → a checkpoint fine-tuned
from the deployed one → the A/B gate that promotes it or keeps the deployed one (`nightly_job`)."""

import os

import dagster as dg

from rjepa_assets.defs.automation.sensors import version_order
from rjepa_assets.defs.learning.jobs import NIGHTLY_RUN_CONFIG, nightly_job
from rjepa_assets.defs.partitions import dataset_version_partitions, llm_partitions, multi_key

NIGHTLY_CRON = os.environ.get("RJEPA_NIGHTLY_CRON", "0 2 * * *")


@dg.schedule(
    job=nightly_job,
    cron_schedule=NIGHTLY_CRON,
    execution_timezone="UTC",
    description="Fine-tune every registered LLM's deployed checkpoint on the newest dataset version and A/B-gate "
    "it (cron: $RJEPA_NIGHTLY_CRON).",
)
def nightly_retraining(context: dg.ScheduleEvaluationContext):
    versions = sorted(context.instance.get_dynamic_partitions(dataset_version_partitions.name), key=version_order)
    llms = sorted(context.instance.get_dynamic_partitions(llm_partitions.name))
    if not versions or not llms:
        return dg.SkipReason("no dataset_version or llm partition yet: the sensors add them from configs/")
    newest = versions[-1]
    stamp = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return [
        dg.RunRequest(
            run_key=f"nightly|{stamp}|{tag}|{newest}",
            partition_key=multi_key(newest, tag),
            run_config=NIGHTLY_RUN_CONFIG,
            tags={"rjepa/trigger": "nightly"},
        )
        for tag in llms
    ]
