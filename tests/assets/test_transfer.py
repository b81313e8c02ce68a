"""`calibration_adapter` materialized by Dagster on a store with two real tiny students of different widths,
then the replay comparison on that store (own checkpoint / reference through the adapter / warm start)."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from rjepa_assets.defs.partitions import multi_key
from rjepa_core.store.layout import StorageLayout
from rjepa_core.transfer.store import load_adapter, read_latest_adapter
from tests.assets.conftest import FAST_RUN_CONFIG, write_yaml

NEW = "tiny48"  # the second student: another random tiny transformer, 48 wide (the reference `tiny` is 64)
ADAPTER_RUN = {"ops": {"calibration_adapter": {"config": {"reference_llm": "tiny", "steps": 30}}}}


@pytest.fixture
def two_llm_store(project, instance, tmp_path):
    """v1 with `tiny` (chains, latents, checkpoint: the reference) and `tiny48` (chains and latents only)."""
    from rjepa_assets.definitions import build_defs
    from rjepa_core.llm.testing import build_tiny_llm

    resources, configs, store = project
    path = build_tiny_llm(tmp_path / "tiny48-model", hidden_size=48, seed=7)
    write_yaml(configs / "llms" / f"{NEW}.yaml", {"llm_tag": NEW, "source": str(path), "hidden_size": 48,
                                                  "batch_size": 8})  # fmt: skip
    defs = build_defs(resources)
    instance.add_dynamic_partitions("dataset_version", ["v1"])
    instance.add_dynamic_partitions("llm", ["tiny", NEW])
    assert defs.resolve_job_def("dataset_job").execute_in_process(partition_key="v1", instance=instance).success
    job = defs.resolve_job_def("llm_pipeline_job")
    plan = (("tiny", {"student_chains", "latents", "jepa_checkpoint"}), (NEW, {"student_chains", "latents"}))
    for tag, assets in plan:
        sub = job.get_subset(asset_selection={dg.AssetKey(a) for a in assets})
        ops = {k: v for k, v in FAST_RUN_CONFIG["ops"].items() if k in assets}
        run = sub.execute_in_process(partition_key=multi_key("v1", tag), instance=instance, run_config={"ops": ops})
        assert run.success
    return defs, StorageLayout(store)


def _adapter_job(defs):
    return dg.define_asset_job("adapter_job", selection=["calibration_adapter"]).resolve(
        asset_graph=defs.resolve_asset_graph()
    )


def test_calibration_adapter_materializes_with_its_checks(two_llm_store, instance):
    defs, layout = two_llm_store
    run = _adapter_job(defs).execute_in_process(
        partition_key=multi_key("v1", NEW), instance=instance, run_config=ADAPTER_RUN
    )
    assert run.success
    pointer = read_latest_adapter(layout, "tiny", NEW)
    assert pointer["dataset_version"] == "v1" and pointer["path"].startswith(str(layout.adapters_dir("tiny", NEW)))
    loaded = load_adapter(pointer["path"])
    meta = loaded.meta
    assert (loaded.adapter.in_width, loaded.adapter.ref_width) == (48, 64)
    assert meta["reference_llm"] == "tiny" and meta["method"] == "jepa" and meta["pooling"] == "mean"
    ref_run = json.loads((layout.checkpoints_root("tiny") / "LATEST.json").read_text())["run_id"]
    assert meta["reference_checkpoint"] == ref_run
    # gold chains have the same cot_id for both students: the paired baselines were fitted and measured
    assert meta["paired"]["n_chains"] > 0 and set(meta["paired"]["r2"]) == {"pad", "random", "procrustes", "ridge"}
    held = meta["held_out"]
    assert set(held) == {"pad", "random", "procrustes", "ridge", "jepa"}

    mat = instance.get_latest_materialization_event(dg.AssetKey("calibration_adapter")).asset_materialization
    assert mat.partition == "v1|tiny48"
    assert mat.metadata["reference_llm"].value == "tiny" and mat.metadata["reference_checkpoint"].value == ref_run
    assert mat.metadata["in_width"].value == 48 and mat.metadata["ref_width"].value == 64
    checks = {e.check_name: e for e in run.get_asset_check_evaluations()}
    assert checks["adapter_finite"].passed and checks["adapter_widths"].passed
    beats = checks["adapter_beats_baselines"]
    numbers = beats.metadata["partitions"].value["v1|tiny48"]
    assert numbers["jepa"] == pytest.approx(held["jepa"]["ratio"]) and numbers["pad"] == pytest.approx(
        held["pad"]["ratio"]
    )
    # the verdict is what the numbers say (a random tiny student may or may not be mappable better)
    assert beats.passed == (numbers["jepa"] < numbers["pad"] and numbers["jepa"] < numbers["random"])


def test_replay_compares_own_adapter_and_warm_start(two_llm_store, instance, tmp_path):
    from rjepa_core.llm.adapter import StudentLLM
    from rjepa_core.llm.registry import LLMSpec
    from rjepa_core.llm.testing import build_tiny_llm
    from rjepa_core.transfer.replay import encode_latents, markdown_table, replay, write_replay

    defs, layout = two_llm_store
    # a third latent source that writes no chains of its own (as MiniLM): it encodes the reference's chains
    enc = StudentLLM.load(LLMSpec(llm_tag="enc32", source=str(build_tiny_llm(tmp_path / "enc", hidden_size=32))))
    encoded = encode_latents(layout, enc, "v1", chains_of="tiny")
    assert {s.hidden_size for s in encoded} == {32} and {s.llm_tag for s in encoded} == {"enc32"}
    assert (
        _adapter_job(defs)
        .execute_in_process(partition_key=multi_key("v1", NEW), instance=instance, run_config=ADAPTER_RUN)
        .success
    )
    report = replay(layout, ["tiny", NEW, "minilm-l6", "enc32"], "v1", reference="tiny", chains_of={"enc32": "tiny"},
                    ks=(2, 3), bootstrap=50, transfer_steps=20, val_every=10)  # fmt: skip
    path = write_replay(report, tmp_path / "replay.json")
    assert json.loads(path.read_text())["reference_llm"] == "tiny"
    ref, new = report["students"]["tiny"], report["students"][NEW]
    assert "no latents for minilm-l6/v1" in report["students"]["minilm-l6"]["missing"]
    enc_row = report["students"]["enc32"]
    assert enc_row["chains_of"] == "tiny" and enc_row["hidden_size"] == 32
    assert enc_row["conditions"]["adapter"]["k=3"]["greedy"] == ref["conditions"]["own"]["k=3"]["greedy"]
    assert ref["hidden_size"] == 64 and new["hidden_size"] == 48
    assert "reference itself" in ref["conditions"]["adapter"]["missing"]
    assert "materialize `jepa_checkpoint`" in new["conditions"]["own"]["missing"]
    conds = new["conditions"]
    assert set(conds) == {"own", "adapter", "warm_start", "scratch"}
    for name in ("adapter", "warm_start", "scratch"):
        row = conds[name]
        assert {"greedy", "majority", "jepa"} <= set(row["k=3"]) and row["n_problems"] > 0
        assert 0.0 <= row["k=3"]["jepa"]["accuracy"] <= 1.0 and len(row["k=3"]["jepa"]["ci95"]) == 2
        assert row["minutes"] >= 0 and row["eval_minutes"] >= 0
        # the same candidates in every condition: OFF and majority vote do not depend on the R-JEPA
        assert row["k=3"]["greedy"] == conds["adapter"]["k=3"]["greedy"]
        assert row["k=3"]["majority"] == conds["adapter"]["k=3"]["majority"]
    assert conds["adapter"]["reference_checkpoint"] == report["reference_checkpoint"]
    assert [s for s, _ in conds["warm_start"]["learning_curve"]] == [0, 10, 20]
    assert [s for s, _ in conds["scratch"]["learning_curve"]] == [0, 10, 20]
    assert conds["warm_start"]["minutes"] >= conds["adapter"]["minutes"]
    table = markdown_table(report)
    assert "| tiny48 | 48 | warm_start | 3 |" in table and "| tiny | 64 | own | 3 |" in table


def test_adapter_without_a_reference_checkpoint_says_what_to_do(two_llm_store, instance):
    defs, _ = two_llm_store
    run = _adapter_job(defs).execute_in_process(
        partition_key=multi_key("v1", NEW),
        instance=instance,
        run_config={"ops": {"calibration_adapter": {"config": {"reference_llm": "nope"}}}},
        raise_on_error=False,
    )
    assert not run.success
    failure = next(e for e in run.all_events if e.is_step_failure).event_specific_data.error
    assert "reference llm 'nope' has no published checkpoint: materialize `jepa_checkpoint`" in failure.message


def test_rjepa_replay_command_materializes_the_adapter_then_compares(two_llm_store, project, tmp_path, monkeypatch):
    from rjepa_assets.cli import main

    _, layout = two_llm_store
    _, configs, store = project
    home = tmp_path / "dagster-home"
    home.mkdir()
    monkeypatch.chdir(tmp_path)  # the CLI changes into the project root; restored after the test
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("RJEPA_CONFIGS", str(configs))
    common = ["--store", str(store), "--version", "v1", "--llms", "tiny", NEW, "--reference", "tiny"]
    main(["replay", *common, "--adapter-steps", "10", "--adapters-only", "--encode"])
    first = read_latest_adapter(layout, "tiny", NEW)
    assert first is not None
    out = tmp_path / "results" / "replay.json"
    main(["replay", *common, "--ks", "2", "3", "--bootstrap", "50", "--transfer-steps", "10", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["students"][NEW]["conditions"]["adapter"]["adapter"] == first["run_id"]  # reused, not refitted
    assert "| tiny48 | 48 | adapter | 3 |" in out.with_suffix(".md").read_text()
    cli_instance = dg.DagsterInstance.get()  # the CLI's instance ($DAGSTER_HOME) holds the adapter materialization
    mat = cli_instance.get_latest_materialization_event(dg.AssetKey("calibration_adapter")).asset_materialization
    assert mat.partition == "v1|tiny48" and mat.metadata["adapter_run_id"].value == first["run_id"]
    cli_instance.dispose()
