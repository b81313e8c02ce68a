"""The learning loop's library half: feedback validation rules, loop config, feedback versions, the gate."""

from __future__ import annotations

import numpy as np
import pytest

from rjepa_core.data.datasets import DatasetConfig, feedback_cutoff, load_dataset_config
from rjepa_core.interactions import Interaction, InteractionLog, read_deletions
from rjepa_core.learning.config import FeedbackPolicy, LoopConfig, load_loop_config
from rjepa_core.learning.feedback import question_value, summary, to_dataset, validate_record, validate_records
from rjepa_core.learning.versions import next_feedback_version, pending_feedback, write_feedback_version

T0 = "2026-12-07T01:00:00+00:00"


def rec(**kw) -> dict:
    base = {
        "interaction_id": "i1",
        "workspace": "default",
        "text_kept": True,
        "rating": "up",
        "user_hash": "h1",
        "prompt": "What is 3 + 4 * 2?",
        "steps": ["4 * 2 = 8", "3 + 8 = 11"],
        "final_answer": "11",
        "jepa": {"score01": 0.8},
        "created_at": T0,
        "pii_redactions": {},
    }
    return {**base, **kw}


@pytest.mark.parametrize(
    ("change", "outcome", "reason"),
    [
        ({}, "accepted", "thumbs up, score 0.800 >= 0.5, check passed"),
        ({"workspace": "acme"}, "rejected", "workspace opted out"),
        ({"text_kept": False}, "rejected", "no consent (no text kept)"),
        ({"rating": None}, "rejected", "no rating"),
        ({"steps": []}, "rejected", "no question or no steps"),
        ({"jepa": None}, "rejected", "no JEPA score (the service could not score this answer)"),
        ({"jepa": {"score01": 0.2}}, "rejected", "JEPA score 0.200 below 0.5"),
        (
            {"steps": ["4 * 2 = 9", "3 + 9 = 12"], "final_answer": "12"},
            "rejected",
            "check failed: step 1 is wrong: 4 * 2 = 9 (should be 8)",
        ),
        (
            {"steps": ["I add them up"], "final_answer": "12"},
            "rejected",
            "check failed: final answer '12' is not the question's value 11",
        ),
        (
            {"prompt": "How many legs has a spider?", "steps": ["A spider has eight legs"], "final_answer": "8"},
            "rejected",
            "not checkable (require_check is on)",
        ),
        (
            {"rating": "down", "steps": ["3 + 4 = 7", "7 * 2 = 14"], "final_answer": "14"},
            "negative",
            "thumbs down (final answer '14' is not the question's value 11)",
        ),
    ],
)
def test_feedback_rules(change, outcome, reason):
    v = validate_record(rec(**change), FeedbackPolicy(opted_out_workspaces=["acme"]))
    assert (v.outcome, v.reason) == (outcome, reason)
    assert (v.prompt is None) == (outcome == "rejected")  # rejected rows keep no text


def test_question_value_needs_exactly_one_expression():
    assert question_value("What is 12 - 5 + 3?") == "10" and question_value("Compute (2 + 3) × 4.") == "20"
    assert question_value("What is 7 / 2?") == "3.5" and question_value("what is -3 + 5") == "2"
    assert question_value("Add 2 + 3 and then 4 + 5") is None and question_value("Name a prime") is None


def test_dataset_from_feedback_keeps_negatives_as_invalid_chains_only():
    rows = validate_records(
        [
            rec(interaction_id="a"),
            rec(interaction_id="b", rating="down", steps=["3 + 4 = 7", "7 * 2 = 14"], final_answer="14"),
            rec(interaction_id="c", rating="down", prompt="Name a colour", steps=["Blue"], final_answer="blue"),
            rec(interaction_id="d", text_kept=False, pii_redactions={"email": 2}),
        ],
        FeedbackPolicy(),
    )
    problems, cots = to_dataset(rows)
    [p] = problems  # one question; the uncheckable negative has no trustworthy gold and stays out
    assert p.source == "user" and p.answer_gold == "11" and p.meta["interaction_id"] == "a"
    assert sorted((c.meta["interaction_id"], c.is_valid) for c in cots) == [("a", True), ("b", False)]
    s = summary(rows)
    assert s["by_outcome"] == {"accepted": 1, "negative": 2, "rejected": 1}
    assert s["pii_redactions"] == {"email": 2} and s["records_with_pii"] == 1
    assert s["rejected_reasons"] == {"no consent (no text kept)": 1}


def test_loop_config_errors_name_the_key(tmp_path):
    assert load_loop_config(tmp_path / "absent.yaml") == LoopConfig()
    with pytest.raises(ValueError, match=r"unknown keys \['min_acepted'\] in learning-loop section 'feedback'"):
        LoopConfig.from_dict({"feedback": {"min_acepted": 3}})
    with pytest.raises(ValueError, match="gate.metric must be one of"):
        LoopConfig.from_dict({"gate": {"metric": "accuracy"}})
    (tmp_path / "l.yaml").write_text("warm_start: {lr: 0}\n")
    with pytest.raises(ValueError, match=r"l.yaml: warm_start needs lr > 0"):
        load_loop_config(tmp_path / "l.yaml")


def test_feedback_versions_are_named_written_and_cut_off(tmp_path):
    assert next_feedback_version("v2", ["v1", "v2"]) == "v2.fb1"
    assert next_feedback_version("v2.fb1", ["v2", "v2.fb1", "v1.fb4"]) == "v2.fb2"
    parent = DatasetConfig(version="v1", sources=[], few_shot=1, test_frac=0.3)
    path = write_feedback_version(tmp_path, parent, "v1.fb1", T0, accepted=5)
    cfg = load_dataset_config(path)
    assert (cfg.parent, cfg.feedback_until, cfg.few_shot, cfg.test_frac) == ("v1", T0, 1, 0.3)
    with pytest.raises(FileExistsError, match="immutable"):
        write_feedback_version(tmp_path, parent, "v1.fb1", T0, accepted=5)
    child = DatasetConfig(version="v3", sources=[], parent="v1.fb1")
    assert feedback_cutoff({"v1": parent, "v1.fb1": cfg, "v3": child}, "v3") == T0  # inherited
    assert feedback_cutoff({"v1": parent}, "v1") is None
    with pytest.raises(ValueError, match="needs a time zone"):
        DatasetConfig(version="v4", sources=[], feedback_until="2026-12-07T01:00:00")


def test_pending_feedback_counts_after_the_cutoff_and_deletion_keeps_a_ledger(tmp_path):
    from datetime import UTC, datetime, timedelta

    log = InteractionLog(tmp_path / "interactions", salt="s")
    t = datetime(2026, 12, 7, 1, tzinfo=UTC)
    ok = Interaction(
        prompt="What is 2 + 2?", steps=["2 + 2 = 4"], final_answer="4", rating="up", consent=True, jepa={"score01": 0.9}
    )
    for i, user in enumerate(["ann", "ann", "bob"]):
        log.append(Interaction(**{**vars(ok), "user_id": user}), now=t + timedelta(minutes=i))
    cfgs = {
        "v1": DatasetConfig(version="v1", sources=[]),
        "v1.fb1": DatasetConfig(version="v1.fb1", sources=[], parent="v1", feedback_until=t.isoformat()),
    }
    assert pending_feedback(log.directory, cfgs, "v1", FeedbackPolicy())["accepted"] == 3
    after = pending_feedback(log.directory, cfgs, "v1.fb1", FeedbackPolicy())
    assert after["accepted"] == 2 and after["until"] == (t + timedelta(minutes=2)).isoformat()
    assert log.delete_user("ann") == 2
    [entry] = read_deletions(log.directory)
    assert entry["removed"] == 2 and len(set(entry["interaction_ids"])) == 2
    assert pending_feedback(log.directory, cfgs, "v1", FeedbackPolicy())["accepted"] == 1
    assert log.files() == [log.path_for("2026-12-07")]  # the ledger is not an interaction file


def test_gate_pairs_the_same_candidates(tmp_path):
    """Compare recomputes what it reports: each side's JEPA pick, independently from `scorer.score`;
    a checkpoint against itself differs by exactly 0, and swapping the sides negates the difference."""
    from rjepa_core.eval.gate import compare, decide
    from rjepa_core.jepa.checkpoint import load_checkpoint
    from rjepa_core.jepa.scoring import JEPAScorer
    from rjepa_core.schemas import ChainOfThought, Problem
    from tests.serve.conftest import HIDDEN, publish_tiny_checkpoint

    a, b = (
        JEPAScorer.from_checkpoint(load_checkpoint(publish_tiny_checkpoint(tmp_path, r, seed=s)))
        for r, s in (("run-a", 0), ("run-b", 1))
    )
    rng = np.random.default_rng(0)
    problems, chains, H = [], [], {}
    for i in range(24):
        p = Problem.create(source="t", statement=f"q{i}", domain="math", answer_gold="1", split="test")
        problems.append(p)
        for j in range(4):
            c = ChainOfThought(
                cot_id=f"{i}-{j}",
                problem_id=p.problem_id,
                steps=["s"] * 3,
                final_answer="1",
                is_valid=bool(rng.integers(0, 2)),
                origin="student:t",
                meta={"sample_index": j},
            )
            chains.append(c)
            H[c.cot_id] = rng.standard_normal((3, HIDDEN)).astype("float32")
    same = compare(a, a, problems, chains, H, k=3, n_resamples=100)
    assert same["difference"] == {"mean": 0.0, "ci95": [0.0, 0.0]} and same["n_candidates"] == 24 * 3
    ab, ba = (compare(x, y, problems, chains, H, k=3, n_resamples=100) for x, y in ((a, b), (b, a)))
    assert ab["difference"]["mean"] == pytest.approx(-ba["difference"]["mean"])
    by_pid = {}
    for c in chains:
        by_pid.setdefault(c.problem_id, []).append(c)
    picks = []
    for p in problems:
        g = by_pid[p.problem_id][:3]
        loss = [s.jepa_loss for s in a.score([H[c.cot_id] for c in g], ["math"] * 3)]
        picks.append(g[int(np.argmin(loss))].is_valid)
    assert ab["candidate"] == pytest.approx(np.mean(picks))
    assert decide(same, 0.0)[0] is False and decide(same, -0.01)[0] is True
    auc = compare(a, b, problems, chains, H, k=3, metric="within_problem_auroc", n_resamples=100)
    assert 0 < auc["n_problems"] < 24  # problems whose 3 candidates are all right or all wrong are left out


def test_gate_keeps_what_it_cannot_compare(tmp_path):
    """The candidate that is already deployed is kept; so is one that reads other latents (another layer)."""
    from rjepa_core.jepa.checkpoint import update_meta
    from rjepa_core.learning.config import Gate
    from rjepa_core.learning.promotion import rollback, run_gate
    from rjepa_core.store.layout import StorageLayout
    from rjepa_core.store.pointers import read_latest_checkpoint
    from tests.serve.conftest import publish_tiny_checkpoint

    layout = StorageLayout(tmp_path)
    publish_tiny_checkpoint(tmp_path, "run-a", version="v1")
    same = run_gate(layout, "tiny", "v1", Gate())
    assert same["decision"] == "kept" and "already the deployed checkpoint" in same["reason"]
    b = publish_tiny_checkpoint(tmp_path, "run-b", version="v2", seed=1)
    rollback(layout, "tiny")  # run-a deployed again; run-b is the v2 candidate
    update_meta(b, layer_idx=5)
    out = run_gate(layout, "tiny", "v2", Gate())
    assert out["decision"] == "kept" and "layer_idx=-2" in out["reason"] and "rjepa promote" in out["reason"]
    assert read_latest_checkpoint(layout, "tiny")["run_id"] == "run-a"
    assert (layout.reports_dir("tiny", "v2") / "gate-run-b.json").exists()
