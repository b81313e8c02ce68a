"""bench/selection_study.py's seed ensemble: several ablation dumps of the same candidates become one."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _study():
    spec = importlib.util.spec_from_file_location("selection_study", ROOT / "bench" / "selection_study.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _row(cot, pid, fold, loss, steps):
    return {"cot_id": cot, "problem_id": pid, "fold": fold, "answer": "7", "correct": True, "logprob": -1.0,
            "num_tokens": 9, "num_steps": len(steps), "jepa_loss": loss, "step_surprise": steps}  # fmt: skip


def test_seed_mean_averages_scores_per_candidate_and_refuses_other_candidates(tmp_path):
    study = _study()
    a = [_row("c1", "p1", 0, 0.25, [0.5, 0.0]), _row("c2", "p1", 0, 1.0, [1.0, 1.0])]
    b = [_row("c2", "p1", 0, 0.5, [0.0, 1.0]), _row("c1", "p1", 0, 0.75, [0.5, 1.0])]  # other order
    paths = []
    for i, rows in enumerate((a, b)):
        paths.append(tmp_path / f"seed_{i}.jsonl")
        paths[-1].write_text("".join(json.dumps(r) + "\n" for r in rows))
    groups = study.load(paths)
    cands = {c["cot_id"]: c for g in groups for c in g["cands"]}
    assert cands["c1"]["jepa_loss"] == pytest.approx(0.5) and cands["c1"]["step_surprise"] == [0.5, 0.5]
    assert cands["c2"]["jepa_loss"] == pytest.approx(0.75) and cands["c2"]["step_surprise"] == [0.5, 1.0]
    assert study.load(paths[0])[0]["cands"][0]["jepa_loss"] == 0.25  # one dump: read as it is
    moved = tmp_path / "other_folds.jsonl"
    moved.write_text("".join(json.dumps({**r, "fold": 1}) + "\n" for r in b))
    with pytest.raises(SystemExit, match="same candidates in the same folds"):
        study.load([paths[0], moved])
