"""Sensors: new LLM in the registry → `llm` partition + backfill; new dataset config → `dataset_version`."""

import re

import dagster as dg

from rjepa_assets.defs.automation.jobs import dataset_job, llm_pipeline_job
from rjepa_assets.defs.partitions import dataset_version_partitions, llm_partitions, multi_key
from rjepa_assets.defs.resources import ConfigsResource
from rjepa_core.data.datasets import load_dataset_configs


def version_order(v: str) -> list:
    """Natural order: v2 < v10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", v)]


@dg.sensor(
    job=llm_pipeline_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A new configs/llms/<tag>.yaml adds an `llm` partition and backfills every dataset version.",
)
def llm_registry_sensor(context: dg.SensorEvaluationContext, configs: ConfigsResource):
    registry = configs.registry()
    known = set(context.instance.get_dynamic_partitions(llm_partitions.name))
    new = sorted(t for t, spec in registry.items() if t not in known and spec.kind == "causal")
    if not new:
        return dg.SkipReason(f"no new LLM in the registry ({len(known)} known)")
    versions = sorted(context.instance.get_dynamic_partitions(dataset_version_partitions.name), key=version_order)
    runs = [
        dg.RunRequest(run_key=f"{tag}|{v}", partition_key=multi_key(v, tag), tags={"rjepa/trigger": "new_llm"})
        for tag in new
        for v in versions
    ]
    return dg.SensorResult(run_requests=runs, dynamic_partitions_requests=[llm_partitions.build_add_request(new)])


@dg.sensor(
    job=dataset_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A new configs/datasets/<version>.yaml adds a `dataset_version` partition and builds it.",
)
def dataset_version_sensor(context: dg.SensorEvaluationContext, configs: ConfigsResource):
    found = load_dataset_configs(configs.dir("datasets"))
    known = set(context.instance.get_dynamic_partitions(dataset_version_partitions.name))
    new = sorted((v for v in found if v not in known), key=version_order)
    if not new:
        return dg.SkipReason(f"no new dataset version ({len(known)} known)")
    runs = [dg.RunRequest(run_key=f"dataset|{v}", partition_key=v) for v in new]
    return dg.SensorResult(
        run_requests=runs, dynamic_partitions_requests=[dataset_version_partitions.build_add_request(new)]
    )
