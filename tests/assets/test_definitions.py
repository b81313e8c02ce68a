"""The code location loads with the expected assets, partitions, checks, jobs, schedule and sensors."""

from __future__ import annotations

import dagster as dg

from rjepa_assets.definitions import defs as default_defs

ASSETS = {
    "teacher_data",
    "interactions",
    "problems",
    "gold_cots",
    "student_chains",
    "latents",
    "jepa_checkpoint",
    "ab_gate",
    "latent_decoder",
    "eval_report",
    "modes_report",
    "calibration_adapter",
}


def test_asset_keys_and_partitions():
    repo = default_defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert keys == ASSETS
    graph = repo.asset_graph
    dataset_level = {"teacher_data", "interactions", "problems", "gold_cots"}
    for key in dataset_level:
        pdef = graph.get(dg.AssetKey(key)).partitions_def
        assert isinstance(pdef, dg.DynamicPartitionsDefinition) and pdef.name == "dataset_version"
    for key in ASSETS - dataset_level:
        pdef = graph.get(dg.AssetKey(key)).partitions_def
        assert isinstance(pdef, dg.MultiPartitionsDefinition)
        assert {d.name for d in pdef.partitions_defs} == {"dataset_version", "llm"}


def test_checks_jobs_schedules_sensors():
    repo = default_defs.get_repository_def()
    checks = {(k.asset_key.to_user_string(), k.name) for k in repo.asset_graph.asset_check_keys}
    assert checks == {
        ("latents", "latents_finite_and_registered_width"),
        ("latents", "latents_shards_intact"),
        ("jepa_checkpoint", "checkpoint_not_collapsed"),
        ("latent_decoder", "decoder_reads_the_latent"),
        ("eval_report", "rerank_not_worse_than_off"),
        ("calibration_adapter", "adapter_finite"),
        ("calibration_adapter", "adapter_widths"),
        ("calibration_adapter", "adapter_beats_baselines"),
    }
    assert {
        "dataset_job",
        "llm_pipeline_job",
        "modes_job",
        "create_dataset_job",
        "nightly_job",
        "promote_checkpoint",
        "rollback_checkpoint",
        "latents_integrity_job",
    } <= {j.name for j in repo.get_all_jobs()}
    assert default_defs.get_schedule_def("nightly_retraining").job_name == "nightly_job"
    assert default_defs.get_schedule_def("nightly_retraining").cron_schedule
    assert {s.name for s in repo.sensor_defs} == {
        "llm_registry_sensor",
        "dataset_version_sensor",
        "feedback_sensor",
        "deletion_sensor",
    }


def test_gpu_heavy_assets_share_one_pool():
    graph = default_defs.get_repository_def().asset_graph
    pools = {
        k: graph.get(dg.AssetKey(k)).pools
        for k in (
            "student_chains",
            "latents",
            "jepa_checkpoint",
            "ab_gate",
            "latent_decoder",
            "eval_report",
            "calibration_adapter",
        )  # fmt: skip
    }
    assert all(p == {"gpu"} for p in pools.values()), pools
