"""LatentAdapter and AdaptedRJEPA: identity at equal widths, semi-orthogonal init otherwise, the store."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rjepa_core.config import ScoreConfig, rjepa_tiny
from rjepa_core.jepa.model import RJEPA
from rjepa_core.jepa.scoring import JEPAScorer, predict_masked
from rjepa_core.store.layout import StorageLayout
from rjepa_core.transfer.adapter import AdaptedRJEPA, LatentAdapter, semi_orthogonal
from rjepa_core.transfer.store import (
    LATEST,
    find_latest_adapter,
    load_adapter,
    publish_adapter,
    read_latest_adapter,
)


def test_equal_widths_is_the_identity_and_scores_like_the_bare_model():
    torch.manual_seed(0)
    model = RJEPA(rjepa_tiny(hidden_size=16)).eval()
    ad = LatentAdapter(16, 16)
    assert ad.is_identity
    x = torch.randn(5, 16)
    assert torch.equal(ad.to_ref(x), x) and torch.equal(ad.from_ref(x), x)
    chains = [np.random.default_rng(i).standard_normal((4, 16)).astype("float32") for i in range(3)]
    bare = JEPAScorer(model, ScoreConfig()).score(chains)
    through = JEPAScorer(AdaptedRJEPA(model, ad), ScoreConfig()).score(chains)
    assert [s.jepa_loss for s in through] == pytest.approx([s.jepa_loss for s in bare], abs=1e-6)


@pytest.mark.parametrize("in_width,ref_width", [(24, 16), (16, 24)])
def test_different_widths_start_semi_orthogonal(in_width, ref_width):
    ad = LatentAdapter(in_width, ref_width, seed=3)
    W = ad.W_in.weight.detach()  # (ref, in)
    small = W @ W.T if ref_width < in_width else W.T @ W
    assert torch.allclose(small, torch.eye(min(in_width, ref_width)), atol=1e-5)
    assert torch.allclose(ad.W_out.weight, W.T)  # the pseudo-inverse of a semi-orthogonal map
    assert not ad.is_identity
    # a different seed gives a different map (the init is random, not a fixed pad)
    assert not torch.allclose(W, LatentAdapter(in_width, ref_width, seed=4).W_in.weight)
    assert torch.equal(semi_orthogonal(7, 7, 0), torch.eye(7))


def test_adapted_model_reads_and_writes_the_new_width():
    torch.manual_seed(0)
    model = RJEPA(rjepa_tiny(hidden_size=16, question_token=True)).eval()
    adapted = AdaptedRJEPA(model, LatentAdapter(24, 16, seed=1))
    H = np.random.default_rng(0).standard_normal((5, 24)).astype("float32")
    pj, ph = predict_masked(adapted, H, [2, 6], question=np.zeros(24, np.float32))
    assert pj.shape == (2, model.cfg.d_model) and ph.shape == (2, 24)
    scores = JEPAScorer(adapted).score([H], questions=[np.ones(24, np.float32)])
    assert np.isfinite(scores[0].jepa_loss) and len(scores[0].step_surprise) == 5
    with pytest.raises(ValueError, match="latent width 16 but the checkpoint was trained on hidden size 24"):
        JEPAScorer(adapted).score([H[:, :16]])
    with pytest.raises(ValueError, match="re-materialize `calibration_adapter`"):
        AdaptedRJEPA(model, LatentAdapter(24, 32))


def test_publish_load_and_find_the_latest(tmp_path):
    layout = StorageLayout(tmp_path)
    first = LatentAdapter(24, 16, seed=0)
    p1 = publish_adapter(layout, first, {"method": "procrustes", "reference_checkpoint": "ck-1"},
                         target="new", reference="ref", version="v1", run_id="20261207T0900-a")  # fmt: skip
    second = LatentAdapter(24, 16, seed=1)
    p2 = publish_adapter(layout, second, {"method": "jepa", "reference_checkpoint": "ck-2"},
                         target="new", reference="ref", version="v1", run_id="20261207T0901-b")  # fmt: skip
    root = layout.adapters_dir("ref", "new")
    assert p1["path"] == str(root / "v1" / "20261207T0900-a")
    assert read_latest_adapter(layout, "ref", "new")["run_id"] == "20261207T0901-b"
    assert find_latest_adapter(layout, "new")["path"] == p2["path"]
    assert find_latest_adapter(layout, "ref") is None
    history = (root / "HISTORY.jsonl").read_text().splitlines()
    assert [json.loads(h)["run_id"] for h in history] == ["20261207T0900-a", "20261207T0901-b"]
    loaded = load_adapter(p2["path"])
    assert loaded.meta["in_width"] == 24 and loaded.meta["ref_width"] == 16 and loaded.meta["method"] == "jepa"
    assert torch.equal(loaded.adapter.W_in.weight, second.W_in.weight)
    # atomic writes: no temp file or folder is left beside what was published
    leftovers = [p.name for p in root.rglob("*") if p.name.startswith(".")]
    assert leftovers == [] and (root / LATEST).exists()
    with pytest.raises(FileNotFoundError, match="materialize `calibration_adapter`"):
        load_adapter(root / "v1" / "missing")
