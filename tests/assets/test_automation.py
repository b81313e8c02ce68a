"""Sensors and the nightly schedule, ticked for real against a test instance."""

from __future__ import annotations

import dagster as dg

from rjepa_assets.defs.automation.schedules import nightly_retraining
from rjepa_assets.defs.automation.sensors import dataset_version_sensor, llm_registry_sensor, version_order
from tests.assets.conftest import V2, write_yaml


def test_version_order_is_natural():
    assert sorted(["v10", "v2", "v1"], key=version_order) == ["v1", "v2", "v10"]


def test_dataset_version_sensor_adds_partitions_and_requests_builds(project, instance):
    resources, configs, _ = project
    ctx = dg.build_sensor_context(instance=instance, resources={"configs": resources["configs"]})
    result = dataset_version_sensor(ctx)
    assert [r.partition_key for r in result.run_requests] == ["v1"]
    instance.add_dynamic_partitions("dataset_version", ["v1"])  # what the daemon does with the request
    assert isinstance(dataset_version_sensor(ctx), dg.SkipReason)
    write_yaml(configs / "datasets" / "v2.yaml", V2)
    result = dataset_version_sensor(ctx)
    assert [r.partition_key for r in result.run_requests] == ["v2"]
    (req,) = result.dynamic_partitions_requests
    assert list(req.partition_keys) == ["v2"]


def test_llm_registry_sensor_backfills_every_version(project, instance):
    resources, configs, _ = project
    instance.add_dynamic_partitions("dataset_version", ["v1", "v2"])
    ctx = dg.build_sensor_context(instance=instance, resources={"configs": resources["configs"]})
    result = llm_registry_sensor(ctx)
    keys = sorted(str(r.partition_key) for r in result.run_requests)
    assert keys == ["v1|tiny", "v2|tiny"]
    assert list(result.dynamic_partitions_requests[0].partition_keys) == ["tiny"]
    instance.add_dynamic_partitions("llm", ["tiny"])
    assert isinstance(llm_registry_sensor(ctx), dg.SkipReason)
    # a new registry entry is picked up on the next tick
    write_yaml(configs / "llms" / "tiny2.yaml", {"llm_tag": "tiny2", "source": "x", "hidden_size": 64})
    result = llm_registry_sensor(ctx)
    assert sorted(str(r.partition_key) for r in result.run_requests) == ["v1|tiny2", "v2|tiny2"]


def test_nightly_schedule_targets_newest_version_of_every_llm(instance):
    import datetime as dt

    when = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)
    ctx = dg.build_schedule_context(instance=instance, scheduled_execution_time=when)
    assert isinstance(nightly_retraining(ctx), dg.SkipReason)
    instance.add_dynamic_partitions("dataset_version", ["v1", "v2", "v10"])
    instance.add_dynamic_partitions("llm", ["a", "b"])
    reqs = nightly_retraining(ctx)
    assert sorted(str(r.partition_key) for r in reqs) == ["v10|a", "v10|b"]
    assert all(r.tags["rjepa/trigger"] == "nightly" for r in reqs)
    # a warm start from the deployed checkpoint that the A/B gate, not the training run, may publish
    assert all(r.run_config["ops"]["jepa_checkpoint"]["config"] == {"warm_start": True, "publish": False} for r in reqs)
