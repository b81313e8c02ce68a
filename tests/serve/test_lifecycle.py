"""Startup without a checkpoint, reload to a newly published one (manual and polled), timeouts, admin token."""

from __future__ import annotations

import concurrent.futures
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from rjepa_serve.app import create_app
from tests.serve.conftest import HIDDEN, make_settings, publish_tiny_checkpoint


def _score_body(seed: int = 0) -> dict:
    return {"latents": np.random.default_rng(seed).standard_normal((4, HIDDEN)).tolist()}


def test_starts_without_checkpoint_and_says_what_to_do(tmp_path):
    with TestClient(create_app(make_settings(tmp_path, None))) as c:
        h = c.get("/health").json()
        assert h["status"] == "no_checkpoint" and h["checkpoint_id"] is None
        assert "jepa_checkpoint" in h["message"]
        for path, body in (("/score", _score_body()), ("/chat", {"prompt": "2+2?"})):
            r = c.post(path, json=body)
            assert r.status_code == 503 and "materialize the `jepa_checkpoint` asset" in r.json()["detail"]
        assert c.post("/feedback", json={"rating": "up", "prompt": "p", "answer": "a"}).status_code == 200
        assert "rjepa_model_loaded 0.0" in c.get("/metrics").text


def test_malformed_bodies_get_422_before_the_missing_model_503(tmp_path):
    """A client's mistake is reported as such even when no checkpoint exists yet (fresh clone)."""
    bad = {
        "/score": {"latents": "not a matrix"},
        "/score?text": {"question": "2+2?", "text": "   "},
        "/predict_masked": {"latents": [[0.0] * HIDDEN], "indices": "x"},
        "/rerank": {"prompt": "2+2?", "candidates": 7},
        "/chat": {"prompt": "2+2?", "mode": "SIDEWAYS"},
    }
    with TestClient(create_app(make_settings(tmp_path, None))) as c:
        for path, body in bad.items():
            r = c.post(path.split("?")[0], json=body)
            assert r.status_code == 422, (path, r.status_code, r.text)
            assert r.json()["detail"], path
        assert c.post("/score", content=b"{not json", headers={"content-type": "application/json"}).status_code == 422
        assert c.post("/score", json=_score_body()).status_code == 503  # a valid body still learns what is missing
        text = c.post("/score", json={"question": "2+2?", "steps": ["2 + 2 = 4"]})
        assert text.status_code == 503 and "jepa_checkpoint" in text.json()["detail"]


def test_text_scoring_without_the_student_says_send_latents(tmp_path):
    publish_tiny_checkpoint(tmp_path, "run-t")
    with TestClient(create_app(make_settings(tmp_path, None))) as c:
        r = c.post("/score", json={"question": "2+2?", "steps": ["2 + 2 = 4"]})
        assert r.status_code == 503 and "send `latents` instead" in r.json()["detail"], r.text
        assert c.post("/score", json=_score_body()).status_code == 200  # latents need no student


def test_reload_swaps_checkpoint_without_failing_requests_in_flight(tmp_path):
    publish_tiny_checkpoint(tmp_path, "run-a", seed=0)
    with TestClient(create_app(make_settings(tmp_path, None))) as c:
        assert c.get("/health").json()["checkpoint_id"] == "run-a"
        r = c.post("/admin/reload").json()
        assert r["changed"] is False and "already served" in r["message"]
        before = c.post("/score", json=_score_body(1)).json()["results"][0]["jepa_loss"]
        publish_tiny_checkpoint(tmp_path, "run-b", version="v2", seed=1)
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            inflight = [pool.submit(c.post, "/score", json=_score_body(i)) for i in range(8)]
            reload = pool.submit(c.post, "/admin/reload")
            assert all(f.result().status_code == 200 for f in inflight)
            assert reload.result().json() == {**reload.result().json(), "changed": True, "checkpoint_id": "run-b"}
        h = c.get("/health").json()
        assert (h["checkpoint_id"], h["dataset_version"]) == ("run-b", "v2")
        after = c.post("/score", json=_score_body(1)).json()
        assert after["checkpoint_id"] == "run-b" and after["results"][0]["jepa_loss"] != before
        assert 'rjepa_reloads_total{result="loaded"} 2.0' in c.get("/metrics").text


def test_background_poll_picks_up_a_new_checkpoint(tmp_path):
    with TestClient(create_app(make_settings(tmp_path, None, reload_interval_s=0.2))) as c:
        assert c.get("/health").json()["status"] == "no_checkpoint"
        publish_tiny_checkpoint(tmp_path, "run-p")
        deadline = time.monotonic() + 30
        while c.get("/health").json()["checkpoint_id"] != "run-p":
            assert time.monotonic() < deadline, "the poller never loaded the published checkpoint"
            time.sleep(0.1)
        assert c.post("/score", json=_score_body()).status_code == 200


def test_broken_pointer_target_keeps_serving_and_reports(tmp_path):
    import shutil

    publish_tiny_checkpoint(tmp_path, "run-a")
    with TestClient(create_app(make_settings(tmp_path, None))) as c:
        folder = publish_tiny_checkpoint(tmp_path, "run-x", seed=2)
        shutil.rmtree(folder)
        r = c.post("/admin/reload").json()
        assert r["changed"] is False and "run-x" in r["message"]
        assert c.get("/health").json()["checkpoint_id"] == "run-a"
        assert c.post("/score", json=_score_body()).status_code == 200


def test_generation_timeout_is_a_clear_5xx(store_root, tiny_llm_dir):
    with TestClient(create_app(make_settings(store_root, tiny_llm_dir, generation_timeout_s=0.001))) as c:
        r = c.post("/chat", json={"prompt": "What is 3 + 4?", "mode": "RERANK", "k": 4, "max_new_tokens": 24})
        assert r.status_code in (503, 504)
        assert "within" in r.json()["detail"] or "busy" in r.json()["detail"]


def test_admin_token_guards_reload(tmp_path):
    with TestClient(create_app(make_settings(tmp_path, None, admin_token="s3cret"))) as c:
        assert c.post("/admin/reload").status_code == 403
        assert c.post("/admin/reload", headers={"X-Admin-Token": "wrong"}).status_code == 403
        assert c.post("/admin/reload", headers={"X-Admin-Token": "s3cret"}).status_code == 200


def test_checkpoint_settings_reach_the_service(tmp_path, tiny_llm_dir):
    """A checkpoint's surprise normaliser gives step_z (and the most surprising step by it); its few-shot
    examples are how the service asks the student; its tau_rel is the vote's temperature."""
    from rjepa_core.jepa.checkpoint import update_meta
    from rjepa_core.jepa.normalisation import SurpriseNorm, first_above
    from rjepa_serve import engine

    folder = publish_tiny_checkpoint(tmp_path, "run-z")
    # position 0 is normally very surprising, position 3 of a 4-step chain barely: z re-ranks the steps
    norm = SurpriseNorm.fit([[9.0, 1.0, 1.0, 0.0], [11.0, 1.2, 0.8, 0.2]] * 10, prior_weight=0.0)
    example = {"statement": "Calculate 1 + 2 + 3.", "steps": ["1 + 2 = 3", "3 + 3 = 6"], "answer": "6"}
    update_meta(
        folder,
        surprise_norm=norm.to_dict(),
        prompt={"few_shot": [example]},
        jepa_vote={"tau_rel": 2.0},
        localisation={"threshold": 0.5, "rule": "first_above", "source": "given"},
    )
    with TestClient(create_app(make_settings(tmp_path, tiny_llm_dir))) as c:
        [r] = c.post("/score", json=_score_body(3)).json()["results"]
        assert r["step_z"] == norm.z(r["step_surprise"])
        assert r["most_surprising_step"] == int(np.argmax(r["step_z"]))
        assert r["first_unlawful_step"] == first_above(r["step_z"], 0.5)
        cands = ["Step 1: 3 + 4 = 7\nAnswer: 7", "Step 1: 3 + 4 = 8\nAnswer: 8", "Step 1: 4 + 3 = 7\nAnswer: 7"]
        body = {"prompt": "What is 3 + 4?", "candidates": cands, "selection": "jepa_excess_filter_majority"}
        ranked = c.post("/rerank", json=body)
        assert ranked.status_code == 200, ranked.text  # this checkpoint has the normaliser the filter reads
        out = ranked.json()
        assert out["selection"] == "jepa_excess_filter_majority" and out["order"][0] == out["best_index"]
        assert sorted(c["vote_share"] for c in out["candidates"]).count(0.0) >= 1  # one of three lost its vote
        chat = c.post("/chat", json={"prompt": "What is 3 + 4?", "mode": "RERANK", "k": 2, "seed": 0}).json()
        jepa = chat["jepa"]
        if jepa["step_surprise"]:
            assert jepa["step_z"] == norm.z(jepa["step_surprise"])
            assert jepa["surprising_steps"][0] == int(np.argmax(jepa["step_z"]))
            assert jepa["first_unlawful_step"] == first_above(jepa["step_z"], 0.5)
        ms = c.app.state.service.current
        prompt = engine.ask(ms, "What is 3 + 4?")
        assert prompt.index("Step 1: 1 + 2 = 3") < prompt.index("What is 3 + 4?")
        assert engine.vote_tau(ms) == 2.0 * ms.scorer.calibration.std


def test_checkpoint_pooling_reaches_the_extraction(tmp_path, tiny_llm_dir, tiny_student):
    """The service pools a step's token states the way the checkpoint's latents were pooled; a pooling whose
    width the checkpoint cannot take turns generation off with a message instead of scoring wrong latents."""
    from rjepa_core.inference.rerank import Candidate, RerankWeights
    from rjepa_core.jepa.checkpoint import update_meta
    from rjepa_serve import engine

    folder = publish_tiny_checkpoint(tmp_path, "run-p")
    update_meta(folder, pooling="last")
    steps = ["1 + 2 = 3", "3 + 4 = 7 because three and four make seven"]
    with TestClient(create_app(make_settings(tmp_path, tiny_llm_dir))) as c:
        ms = c.app.state.service.current
        assert ms.pooling == "last"
        cand = Candidate(text="\n".join(steps), steps=list(steps), logprob=-1.0, H=None, final_answer="7")
        engine.rank(ms, "What is 1 + 2 + 4?", [cand], RerankWeights(), None)
        [last] = tiny_student.extract([("What is 1 + 2 + 4?", steps)], layer_idx=-2, pooling="last")
        [mean] = tiny_student.extract([("What is 1 + 2 + 4?", steps)], layer_idx=-2, pooling="mean")
        np.testing.assert_allclose(cand.H.astype(np.float32), last.H.astype(np.float32), atol=1e-3)
        assert not np.allclose(cand.H.astype(np.float32), mean.H.astype(np.float32), atol=1e-3)
    update_meta(folder, pooling="mean_last")  # 2 x 64 wide latents, but the checkpoint takes 64
    with TestClient(create_app(make_settings(tmp_path, tiny_llm_dir))) as c:
        chat = c.post("/chat", json={"prompt": "What is 3 + 4?", "mode": "RERANK", "k": 2, "seed": 0})
        assert chat.status_code == 503 and "mean_last pooling" in chat.json()["detail"], chat.json()


def test_checkpoint_question_pooling_reaches_the_extraction(tmp_path, tiny_llm_dir, tiny_student):
    """A checkpoint trained on question latents pooled over the question's tokens (`question_pooling: span`)
    is served the same way: /score of text and RERANK take the span latent, not the token before step 1."""
    from rjepa_core.inference.rerank import Candidate, RerankWeights
    from rjepa_core.jepa.checkpoint import update_meta
    from rjepa_serve import engine

    folder = publish_tiny_checkpoint(tmp_path, "run-q")
    update_meta(folder, question_pooling="span")
    steps = ["1 + 2 = 3", "3 + 4 = 7"]
    question = "What is 1 + 2 + 4?"
    with TestClient(create_app(make_settings(tmp_path, tiny_llm_dir))) as c:
        ms = c.app.state.service.current
        assert ms.question_pooling == "span"
        prompt = engine.ask(ms, question)
        [span] = tiny_student.extract([(prompt, steps)], layer_idx=ms.layer_idx, question_pooling="span")
        [token] = tiny_student.extract([(prompt, steps)], layer_idx=ms.layer_idx, question_pooling="token")
        assert not np.allclose(span.q.astype(np.float32), token.q.astype(np.float32), atol=1e-3)
        served = ms.scorer.score([span.H], [None], [span.q])[0].jepa_loss
        r = c.post("/score", json={"question": question, "steps": steps})
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["jepa_loss"] == pytest.approx(served, rel=1e-4)
        cand = Candidate(text="\n".join(steps), steps=list(steps), logprob=-1.0, H=None, final_answer="7")
        out = engine.rank(ms, prompt, [cand], RerankWeights(), None)
        assert out.outs[0]["jepa_loss"] == pytest.approx(served, rel=1e-4)
    update_meta(folder, question_pooling="both")
    with TestClient(create_app(make_settings(tmp_path, tiny_llm_dir))) as c:
        r = c.get("/health")
        assert "question_pooling 'both' is not one of" in r.text, r.text
