"""The continuous-learning loop end to end (SPEC F14, issue 15), on a real Dagster instance, the real
service on 127.0.0.1 and the tiny real student: feedback → feedback sensor → new dataset version →
nightly warm start → A/B gate (kept, then promoted, the service reloads) → CLI rollback → deletion."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import dagster as dg
import httpx

from rjepa_assets.defs.automation.schedules import nightly_retraining
from rjepa_assets.defs.automation.sensors import dataset_version_sensor
from rjepa_assets.defs.learning.sensors import deletion_sensor, feedback_sensor
from rjepa_core.interactions import hash_user, read_deletions
from rjepa_core.schemas import ChainOfThought, Problem, read_records
from rjepa_core.store.latents import LatentStore
from rjepa_core.store.layout import StorageLayout
from rjepa_core.store.pointers import pointer_history, read_latest_checkpoint
from tests.assets.conftest import FAST_RUN_CONFIG, write_yaml
from tests.assets.test_materialize import run_pipeline
from tests.serve.conftest import LiveServer, make_settings

LOOP = {
    "feedback": {"min_score01": 0.0, "min_accepted": 3},  # the tiny checkpoint's scores are arbitrary: no floor
    "warm_start": {"lr": 5e-4, "steps": 8},
    # +2 cannot be reached by a difference of accuracies (in [-1, 1]): this gate always keeps
    "gate": {"k": 3, "bootstrap": 200, "min_improvement": 2.0},
}

# (user, consent, rating, prompt, steps): what each one teaches the validation
FEEDBACK = [
    ("alice", True, "up", "What is 2 + 3? Write to alice@example.org", ["2 + 3 = 5"]),  # accepted, e-mail scrubbed
    ("bob", True, "up", "Call me on +33 6 12 34 56 78. What is 6 + 1?", ["6 + 1 = 7"]),  # accepted, phone scrubbed
    ("alice", True, "up", "What is 7 + 2?", ["7 + 2 = 9"]),  # accepted
    ("carol", True, "up", "What is 3 + 4?", ["3 + 4 = 8"]),  # checkably wrong: rejected
    ("dave", False, "up", "What is 1 + 1?", ["1 + 1 = 2"]),  # no consent: counted, never used
    ("erin", True, "down", "What is 5 + 5?", ["5 + 5 = 11"]),  # thumbs down: a negative, never a target
]


def _wait_for(url: str, run_id: str, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        health = httpx.get(f"{url}/health").json()
        if health["checkpoint_id"] == run_id or time.monotonic() > deadline:
            return health
        time.sleep(0.1)


def _nightly(defs, instance, **gate_config):
    when = dt.datetime(2026, 12, 7, 2, 0, tzinfo=dt.UTC)
    [req] = nightly_retraining(dg.build_schedule_context(instance=instance, scheduled_execution_time=when))
    ops = {**req.run_config["ops"], **FAST_RUN_CONFIG["ops"]}
    ops.pop("eval_report")
    if gate_config:
        ops["ab_gate"] = {"config": gate_config}
    run = defs.resolve_job_def("nightly_job").execute_in_process(
        partition_key=req.partition_key, instance=instance, run_config={"ops": ops}, tags=req.tags
    )
    assert run.success
    mat = instance.get_latest_materialization_event(dg.AssetKey("ab_gate")).asset_materialization
    return req, {k: v.value for k, v in mat.metadata.items()}


def test_feedback_to_promotion_and_deletion(defs, project, instance, tiny_llm_dir, tmp_path, monkeypatch):
    resources, configs, store = project
    write_yaml(configs / "learning_loop.yaml", LOOP)
    layout = StorageLayout(store)
    assert all(r.success for r in run_pipeline(defs, instance))  # v1 built, checkpoint A deployed
    first = read_latest_checkpoint(layout, "tiny")
    sensor_ctx = dg.build_sensor_context(
        instance=instance, resources={"configs": resources["configs"], "storage": resources["storage"]}
    )
    assert isinstance(feedback_sensor(sensor_ctx), dg.SkipReason)  # no feedback yet

    with (
        LiveServer(make_settings(store, tiny_llm_dir, reload_interval_s=0.2)) as server,
        httpx.Client(base_url=server.url, timeout=60) as http,
    ):
        # 1. feedback through the real service: one rated chat of the tiny student, then client-rated answers
        chat = http.post("/chat", json={"prompt": "What is 2 + 2?", "seed": 0}).json()
        r = http.post(
            "/feedback",
            json={"interaction_id": chat["interaction_id"], "rating": "up", "consent": True, "user_id": "zoe"},
        )
        assert r.status_code == 200 and r.json()["source"] == "server"
        for user, consent, rating, prompt, steps in FEEDBACK:
            body = {
                "rating": rating,
                "consent": consent,
                "user_id": user,
                "prompt": prompt,
                "steps": steps,
                "answer": steps[-1].split("=")[-1].strip(),
            }
            r = http.post("/feedback", json=body)
            assert r.status_code == 200 and r.json()["text_kept"] is consent, r.text
        logged = [
            json.loads(x) for f in sorted(layout.interactions_dir().glob("*.jsonl")) for x in f.read_text().splitlines()
        ]
        assert len(logged) == 1 + len(FEEDBACK) and "alice" not in json.dumps(logged)
        # the service scored the consented answers it did not write (validation trusts only its own score)
        assert all(rec["jepa"] and rec["jepa"]["jepa_loss"] is not None for rec in logged if rec["text_kept"])

        # 2. the feedback sensor sees 3 accepted positives (= min_accepted) and writes v1.fb1 like a config
        result = feedback_sensor(sensor_ctx)
        assert isinstance(result, dg.SensorResult), result
        [req] = result.run_requests
        assert req.partition_key == "v1.fb1" and (configs / "datasets" / "v1.fb1.yaml").exists()
        instance.add_dynamic_partitions("dataset_version", list(result.dynamic_partitions_requests[0].partition_keys))
        run = defs.resolve_job_def("dataset_job").execute_in_process(
            partition_key=req.partition_key, instance=instance, tags=req.tags
        )
        assert run.success
        # the same path as a hand-written version: the dataset sensor has nothing left to add
        assert isinstance(dataset_version_sensor(sensor_ctx), dg.SkipReason)
        assert isinstance(feedback_sensor(sensor_ctx), dg.SkipReason)  # nothing new since v1.fb1's cutoff

        mat = instance.get_latest_materialization_event(dg.AssetKey("interactions")).asset_materialization
        meta = {k: v.value for k, v in mat.metadata.items()}
        assert mat.partition == "v1.fb1" and meta["accepted"] == 3 and meta["negative"] == 1
        assert meta["rejected"] == 3  # carol (wrong step), dave (no consent), the tiny student's chat
        assert {"email", "phone"} <= set(meta["pii_redactions"]) and meta["records_with_pii"] == 2
        assert "| no consent (no text kept) | 1 |" in meta["rejected_reasons"]
        outcomes = json.loads((layout.dataset_dir("v1.fb1") / "feedback_outcomes.json").read_text())
        by_user = {r["user_hash"]: r for r in outcomes}
        carol = by_user[hash_user("carol", "test-salt")]
        assert carol["outcome"] == "rejected" and carol["reason"].startswith("check failed: step 1 is wrong")
        assert by_user[hash_user("zoe", "test-salt")]["outcome"] == "rejected"  # the random student's answer
        v1 = {p.problem_id for p in read_records(Problem, layout.problems_path("v1"))}
        fb1 = read_records(Problem, layout.problems_path("v1.fb1"))
        user = {p.statement: p for p in fb1 if p.source == "user"}
        assert v1 < {p.problem_id for p in fb1}
        assert set(user) == {
            "What is 2 + 3? Write to [EMAIL]",
            "Call me on [PHONE]. What is 6 + 1?",
            "What is 7 + 2?",
            "What is 5 + 5?",
        }
        assert user["What is 5 + 5?"].answer_gold == "10"  # the negative's gold is the computed value
        chains = [c for c in read_records(ChainOfThought, layout.cots_path("v1.fb1")) if c.origin == "user"]
        assert sorted(c.is_valid for c in chains) == [False, True, True, True]
        assert next(c for c in chains if not c.is_valid).steps == ["5 + 5 = 11"]

        # 3. nightly: warm start from A, the gate cannot be passed (+2) → kept, pointer and service unchanged
        req, gate = _nightly(defs, instance)
        assert str(req.partition_key) == "v1.fb1|tiny"
        ck = instance.get_latest_materialization_event(dg.AssetKey("jepa_checkpoint")).asset_materialization
        assert ck.metadata["warm_start_from"].value.startswith(str(Path(first["path"]).parent))
        assert ck.metadata["published_latest"].value is False
        assert gate["decision"] == "kept" and "not above +2.000" in gate["reason"], gate
        assert gate["deployed_run_id"] == first["run_id"] and gate["n_problems"] > 0
        assert -1.0 <= gate["difference"] <= 1.0 and gate["eval_version"] == "v1.fb1"
        assert read_latest_checkpoint(layout, "tiny")["run_id"] == first["run_id"]
        assert http.get("/health").json()["checkpoint_id"] == first["run_id"]

        # 4. nightly again, the threshold forced to -2 (always passed) → promoted, the service reloads it
        _, gate = _nightly(defs, instance, min_improvement=-2.0)
        assert gate["decision"] == "promoted" and "above -2.000: promoted" in gate["reason"], gate
        new = read_latest_checkpoint(layout, "tiny")
        assert new["run_id"] == gate["candidate_run_id"] != first["run_id"] and new["dataset_version"] == "v1.fb1"
        assert new["meta"]["gate"]["difference"]["mean"] == gate["difference"]
        health = _wait_for(server.url, new["run_id"])
        assert health["checkpoint_id"] == new["run_id"] and health["dataset_version"] == "v1.fb1"
        moves = instance.get_latest_materialization_event(dg.AssetKey("deployed_checkpoint")).asset_materialization
        assert moves.metadata["to_run_id"].value == new["run_id"]

        # 5. rollback from the CLI is one action: the pointer goes back to A and the service follows
        from rjepa_assets.cli import main

        monkeypatch.chdir(tmp_path)  # the CLI changes into the project root; restored after the test
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
        monkeypatch.setenv("RJEPA_STORAGE", str(store))
        main(["rollback", "--llm", "tiny"])
        assert read_latest_checkpoint(layout, "tiny")["run_id"] == first["run_id"]
        cli_instance = dg.DagsterInstance.get()  # the CLI's own instance ($DAGSTER_HOME) recorded the move
        moved = cli_instance.get_latest_materialization_event(dg.AssetKey("deployed_checkpoint"))
        assert moved.asset_materialization.metadata["action"].value == "rollback"
        assert moved.asset_materialization.metadata["from_run_id"].value == new["run_id"]
        cli_instance.dispose()
        assert _wait_for(server.url, first["run_id"])["checkpoint_id"] == first["run_id"]
        # ... and promotion by hand is one job in the UI: the newest run of v1.fb1 is deployed again
        cfg = {"llm_tag": "tiny", "dataset_version": "v1.fb1"}
        run = defs.resolve_job_def("promote_checkpoint").execute_in_process(
            instance=instance, run_config={"ops": {"promote_op": {"config": cfg}}}
        )
        assert run.success and read_latest_checkpoint(layout, "tiny")["run_id"] == new["run_id"]
        assert len(pointer_history(layout, "tiny")) == 4  # A, promoted, rolled back, promoted by hand
        assert _wait_for(server.url, new["run_id"])["checkpoint_id"] == new["run_id"]

        # 6. alice deletes her data: gone from the log, and the version built from it is rebuilt without her
        alice_problems = {
            p.problem_id for s, p in user.items() if s in ("What is 2 + 3? Write to [EMAIL]", "What is 7 + 2?")
        }
        assert alice_problems <= {c.problem_id for c in LatentStore(layout).read("tiny", "v1.fb1")}
        assert http.delete("/feedback/user/alice").json() == {"removed": 2}
    assert hash_user("alice", "test-salt") not in json.dumps(
        [x for f in layout.interactions_dir().glob("*.jsonl") for x in f.read_text().splitlines()]
    )
    assert read_deletions(layout.interactions_dir())[0]["removed"] == 2
    result = deletion_sensor(sensor_ctx)
    assert [r.partition_key for r in result.run_requests] == ["v1.fb1"]
    assert isinstance(
        deletion_sensor(
            dg.build_sensor_context(
                instance=instance, cursor=result.cursor, resources={"storage": resources["storage"]}
            )
        ),
        dg.SkipReason,
    )
    run = defs.resolve_job_def("dataset_job").execute_in_process(partition_key="v1.fb1", instance=instance)
    assert run.success
    left = {p.statement for p in read_records(Problem, layout.problems_path("v1.fb1")) if p.source == "user"}
    assert left == {"Call me on [PHONE]. What is 6 + 1?", "What is 5 + 5?"}
    assert not alice_problems & {c.problem_id for c in read_records(ChainOfThought, layout.cots_path("v1.fb1"))}
    assert not alice_problems & {
        c.problem_id for c in read_records(ChainOfThought, layout.student_chains_path("tiny", "v1.fb1"))
    }
    assert not alice_problems & {s.problem_id for s in LatentStore(layout).read("tiny", "v1.fb1")}
    mat = instance.get_latest_materialization_event(dg.AssetKey("problems")).asset_materialization
    assert mat.metadata["removed_by_rebuild"].value == 2 and mat.metadata["purged_downstream"].value["tiny"]
