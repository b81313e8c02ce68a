"""An llm with no checkpoint of its own is served through its latent adapter into the reference checkpoint,
then switches to its own checkpoint when that lands; `/health` says which."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from rjepa_core.jepa.checkpoint import load_checkpoint
from rjepa_core.jepa.scoring import JEPAScorer
from rjepa_core.store.latents import LatentStore
from rjepa_core.store.layout import StorageLayout
from rjepa_core.store.pointers import publish_latest_checkpoint, read_latest_checkpoint
from rjepa_core.transfer.adapter import AdaptedRJEPA
from rjepa_core.transfer.fitting import AdapterFitConfig
from rjepa_core.transfer.jobs import fit_and_publish_adapter
from rjepa_core.transfer.store import load_adapter
from rjepa_serve.app import create_app
from tests.core.transfer.synthetic import two_students
from tests.serve.conftest import HIDDEN, LLM_TAG, LiveServer, make_settings, publish_tiny_checkpoint

NEW, NEW_WIDTH = "newllm", 40


@pytest.fixture
def store(tmp_path):
    """The reference `tiny` (64 wide, published "run-a"), latents of both students on v1, an adapter for `newllm`."""
    publish_tiny_checkpoint(tmp_path, "run-a")
    layout = StorageLayout(tmp_path)
    sets = two_students(80, {LLM_TAG: HIDDEN, NEW: NEW_WIDTH})
    for tag, seqs in sets.items():
        LatentStore(layout).write(tag, "v1", seqs)
    out = fit_and_publish_adapter(layout, NEW, "v1", reference=LLM_TAG, run_id="adapter-1",
                                  cfg=AdapterFitConfig(method="procrustes"))  # fmt: skip
    return tmp_path, out, sets


def _latents(seed: int, width: int = NEW_WIDTH) -> list[list[float]]:
    return np.random.default_rng(seed).standard_normal((4, width)).tolist()


def test_served_through_the_adapter_until_its_own_checkpoint_lands(store):
    root, out, sets = store
    layout = StorageLayout(root)
    ref = load_checkpoint(read_latest_checkpoint(layout, LLM_TAG)["path"])
    adapter = load_adapter(out["pointer"]["path"])
    direct = JEPAScorer(AdaptedRJEPA(ref.model, adapter.adapter), ref.config.score, loss_kind=ref.config.loss.kind)
    with TestClient(create_app(make_settings(root, None, llm_tag=NEW))) as c:
        h = c.get("/health").json()
        assert h["status"] == "ok" and h["llm_tag"] == NEW and h["hidden_size"] == NEW_WIDTH
        assert h["serving"] == "adapter adapter-1 → reference checkpoint run-a (tiny)"
        assert h["adapter_id"] == "adapter-1" and h["reference_llm"] == LLM_TAG and h["checkpoint_id"] == "run-a"
        body = {"latents": _latents(1)}
        r = c.post("/score", json=body)
        assert r.status_code == 200, r.text
        got = r.json()["results"][0]
        want = direct.score([np.asarray(body["latents"], np.float32)])[0]
        assert got["jepa_loss"] == pytest.approx(want.jepa_loss, rel=1e-5)
        assert got["score01"] is not None  # the adapter's own 0-1 calibration, fitted through it
        p = c.post("/predict_masked", json={"latents": _latents(2), "indices": [1, 5]})
        assert p.status_code == 200 and len(p.json()["pred_hidden"][0]) == NEW_WIDTH
        bad = c.post("/score", json={"latents": _latents(3, HIDDEN)})
        assert bad.status_code == 422 and "calibration_adapter" in bad.json()["detail"]
        assert c.post("/admin/reload").json()["changed"] is False

        # the llm's own checkpoint lands: the next reload serves it, and the adapter is no longer used
        own_dir = _train_own(root, sets[NEW])
        r = c.post("/admin/reload").json()
        assert r["changed"] is True and r["message"] == "now serving own checkpoint own-1"
        h = c.get("/health").json()
        assert h["serving"] == "own checkpoint own-1" and h["adapter_id"] is None and h["reference_llm"] is None
        own = JEPAScorer.from_checkpoint(load_checkpoint(own_dir))
        got = c.post("/score", json=body).json()["results"][0]["jepa_loss"]
        assert got == pytest.approx(own.score([np.asarray(body["latents"], np.float32)])[0].jepa_loss, rel=1e-5)
        assert got != pytest.approx(want.jepa_loss, rel=1e-3)


def _train_own(root, seqs):
    from rjepa_core.config import RJEPAConfig, rjepa_tiny
    from rjepa_core.pipeline import train_jepa

    cfg = RJEPAConfig(model=rjepa_tiny(hidden_size=NEW_WIDTH)).replace(optim={"total_steps": 5, "warmup_steps": 1})
    layout = StorageLayout(root)
    result, meta = train_jepa(seqs, cfg, layout.checkpoint_dir(NEW, "v1", "own-1"), device="cpu")
    publish_latest_checkpoint(layout, NEW, "v1", "own-1", {**meta, "path": str(result.checkpoint_dir)})
    return result.checkpoint_dir


def test_health_over_http_and_no_adapter_message(store, tmp_path_factory):
    root, _, _ = store
    with LiveServer(make_settings(root, None, llm_tag=NEW)) as server:
        h = httpx.get(f"{server.url}/health", timeout=30).json()
        assert h["serving"].startswith("adapter adapter-1 → reference checkpoint run-a")
    empty = tmp_path_factory.mktemp("empty")
    with TestClient(create_app(make_settings(empty, None, llm_tag=NEW))) as c:
        h = c.get("/health").json()
        assert h["status"] == "no_checkpoint" and h["serving"] is None
        assert "`calibration_adapter`" in h["message"] and "`jepa_checkpoint`" in h["message"]
