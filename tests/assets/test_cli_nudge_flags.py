"""The CLI flags that pick teacher-forced latents reach the assets' configs (validated against the real jobs)."""

from __future__ import annotations

import argparse

import dagster as dg

from rjepa_assets.cli import _run_config
from rjepa_assets.definitions import defs


def test_demo_teacher_forced_sets_the_latents_config_and_validates():
    cfg = _run_config(argparse.Namespace(max_problems=0, k=0, train_steps=0, teacher_forced=True))
    assert cfg == {"ops": {"latents": {"config": {"teacher_forced": True}}}}
    assert dg.validate_run_config(defs.resolve_job_def("llm_pipeline_job"), cfg)
    assert _run_config(argparse.Namespace(max_problems=0, k=0, train_steps=0, teacher_forced=False)) == {}


def test_modes_report_takes_nudge_teacher_forced():
    job = defs.resolve_job_def("modes_job")
    assert dg.validate_run_config(job, {"ops": {"modes_report": {"config": {"nudge_teacher_forced": True}}}})


def test_ablate_variants_are_json_objects_with_a_name():
    import pytest

    from rjepa_assets.cli import _variant_arg

    v = _variant_arg('{"name": "energy", "loss": {"energy_weight": 1.0, "hard_negatives": true}}')
    assert v == {"name": "energy", "loss": {"energy_weight": 1.0, "hard_negatives": True}}
    with pytest.raises(SystemExit, match="is not JSON"):
        _variant_arg("{name: energy}")
    with pytest.raises(SystemExit, match="non-empty"):
        _variant_arg('{"loss": {}}')


def test_demo_from_refuses_flags_for_assets_it_skips():
    """`--from jepa_checkpoint --k 4` used to reach Dagster and die on its config error; now it says what to do."""
    import pytest

    from rjepa_assets.cli import main

    skipped = r"does not re-materialize student_chains.*--k / --max-problems.*--from student"
    with pytest.raises(SystemExit, match=skipped):
        main(["demo", "--version", "v1", "--from", "jepa_checkpoint", "--k", "4"])
    with pytest.raises(SystemExit, match=r"latents.*--teacher-forced"):
        main(["demo", "--version", "v1", "--from", "eval_report", "--teacher-forced"])
