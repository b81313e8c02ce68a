import json

import pytest

from rjepa_core.eval import write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_write_report_writes_json_markdown_and_valid_pngs(report, tmp_path):
    import matplotlib.image

    paths = write_report(report, tmp_path / "out")
    assert set(paths) == {"json", "summary", "markdown", "jepa_loss", "accuracy", "training"}
    loaded = json.loads(paths["json"].read_text())
    assert loaded["methods"].keys() == report["methods"].keys()
    assert loaded["auroc_jepa"] == pytest.approx(report["auroc_jepa"])
    for name in ("jepa_loss", "accuracy", "training"):
        data = paths[name].read_bytes()
        assert data.startswith(PNG_MAGIC), name
        img = matplotlib.image.imread(paths[name])
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    md = paths["markdown"].read_text()
    assert "| jepa |" in md and "## K = 8" in md and "First-error localisation" in md
    assert "training_curves.png" in md
    assert "## By task family (K = 8)" in md and "| synthetic |" in md
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]


def test_report_without_history_has_no_training_plot(report, tmp_path):
    rep = {k: v for k, v in report.items() if k != "history"}
    paths = write_report(rep, tmp_path)
    assert "training" not in paths
    assert not (tmp_path / "training_curves.png").exists()
    assert "training_curves.png" not in paths["markdown"].read_text()


def test_summary_has_the_issue_schema_with_each_point_inside_its_interval(report, tmp_path):
    paths = write_report(report, tmp_path)
    assert paths["summary"].name == "eval_v0.json"
    s = json.loads(paths["summary"].read_text())
    assert {"version", "llm", "k", "n_problems", "methods", "paired_vs_majority", "localisation"} <= set(s)
    assert s["k"] == 8 and s["version"] == "v0" and s["n_problems"] == report["n_problems_per_k"]["k=8"]
    assert {"majority", "jepa", "jepa_vote", "jepa_filter_majority"} <= set(s["methods"])
    for name, m in s["methods"].items():
        lo, hi = m["ci95"]
        assert lo <= m["accuracy"] <= hi, name
    assert "majority" not in s["paired_vs_majority"] and "jepa_vote" in s["paired_vs_majority"]
    assert set(s["localisation"]) >= {"n", "hit_rate", "chance_rate", "within_one_rate"}
    assert s["localisation"]["min_steps"] == 3
