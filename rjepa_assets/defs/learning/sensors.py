"""Sensors of the learning loop: enough new accepted feedback → a new cumulative dataset version; a user
deletion → the dataset versions built from their records are rebuilt without them."""

import json

import dagster as dg

from rjepa_assets.defs.automation.jobs import dataset_job
from rjepa_assets.defs.automation.sensors import version_order
from rjepa_assets.defs.feedback.assets import FEEDBACK_OUTCOMES
from rjepa_assets.defs.partitions import dataset_version_partitions
from rjepa_assets.defs.resources import ConfigsResource, StorageResource
from rjepa_core.data.datasets import load_dataset_configs
from rjepa_core.interactions import read_deletions
from rjepa_core.learning.versions import next_feedback_version, pending_feedback, write_feedback_version


@dg.sensor(
    job=dataset_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="When feedback.min_accepted accepted interactions are new since the newest version's cutoff, "
    "writes configs/datasets/<newest>.fbN.yaml (parent = newest) and builds it like a hand-written version.",
)
def feedback_sensor(context: dg.SensorEvaluationContext, configs: ConfigsResource, storage: StorageResource):
    cfgs = load_dataset_configs(configs.dir("datasets"))
    known = set(context.instance.get_dynamic_partitions(dataset_version_partitions.name))
    waiting = sorted(v for v in cfgs if v not in known)
    if waiting:
        return dg.SkipReason(f"dataset versions {waiting} are not partitions yet: dataset_version_sensor adds them")
    built = sorted((v for v in known if v in cfgs), key=version_order)
    if not built:
        return dg.SkipReason("no dataset version yet: a feedback version needs a parent")
    newest, policy = built[-1], configs.loop().feedback
    pending = pending_feedback(storage.layout(only=("interactions",)).interactions_dir(), cfgs, newest, policy)
    if pending["accepted"] < policy.min_accepted:
        return dg.SkipReason(
            f"{pending['accepted']} accepted of {pending['num_records']} interactions since "
            f"{pending['after'] or 'the start'} (a new version needs {policy.min_accepted})"
        )
    version = next_feedback_version(newest, cfgs)
    path = write_feedback_version(configs.dir("datasets"), cfgs[newest], version, pending["until"], pending["accepted"])
    context.log.info(f"wrote {path}: {pending['accepted']} accepted interactions on top of {newest}")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"dataset|{version}", partition_key=version,
                                    tags={"rjepa/trigger": "feedback"})],
        dynamic_partitions_requests=[dataset_version_partitions.build_add_request([version])],
    )  # fmt: skip


def versions_holding(layout, versions, interaction_ids: set[str]) -> list[str]:
    """The dataset versions whose validated feedback includes any of these interaction ids."""
    out = []
    for v in versions:
        path = layout.dataset_dir(v) / FEEDBACK_OUTCOMES
        if path.exists() and interaction_ids & {r["interaction_id"] for r in json.loads(path.read_text())}:
            out.append(v)
    return sorted(out, key=version_order)


@dg.sensor(
    job=dataset_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A user deletion (DELETE /feedback/user/{id}) rebuilds every dataset version built from their "
    "records (interactions → problems → gold_cots), which also purges them from its chains and latents.",
)
def deletion_sensor(context: dg.SensorEvaluationContext, storage: StorageResource):
    layout = storage.layout(only=("interactions", "datasets"))
    ledger = read_deletions(layout.interactions_dir())
    seen = int(context.cursor or 0)
    if len(ledger) <= seen:
        return dg.SkipReason(f"no new deletion ({len(ledger)} in the ledger)")
    ids = {i for entry in ledger[seen:] for i in entry.get("interaction_ids", [])}
    known = context.instance.get_dynamic_partitions(dataset_version_partitions.name)
    affected = versions_holding(layout, known, ids)
    runs = [
        dg.RunRequest(run_key=f"forget|{len(ledger)}|{v}", partition_key=v, tags={"rjepa/trigger": "deletion"})
        for v in affected
    ]
    if not runs:
        return dg.SensorResult(skip_reason=f"{len(ids)} deleted records were in no dataset version",
                               cursor=str(len(ledger)))  # fmt: skip
    return dg.SensorResult(run_requests=runs, cursor=str(len(ledger)))
