"""NUDGE and PLAN in /chat, and /decode, served from a storage root that holds a checkpoint and its decoder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.serve.conftest import HIDDEN, LLM_TAG, make_settings, publish_tiny_checkpoint, random_chains

STEP = "3 + 4 = 7"


def _decoder_for(tokenizer):
    """A decoder that writes STEP whatever the latent: one text learned from many random latents."""
    from rjepa_core.jepa.decoder import DecoderConfig, StepPair, train_decoder

    ids = tokenizer(STEP, add_special_tokens=False)["input_ids"]
    Z = np.random.default_rng(1).standard_normal((32, HIDDEN)).astype(np.float32)
    pairs = [StepPair(z, ids) for z in Z]
    cfg = DecoderConfig(d_model=32, n_layers=1, n_heads=2, steps=150, batch_size=16, val_every=50, patience=10,
                        warmup_steps=10, max_tokens=16, dropout=0.0)  # fmt: skip
    return train_decoder(pairs, pairs[:4], cfg)


@pytest.fixture(scope="module")
def modes_client(tmp_path_factory, tiny_llm_dir, tiny_student):
    """A service whose checkpoint has a fitted NUDGE threshold and whose latent decoder is materialized."""
    from fastapi.testclient import TestClient

    from rjepa_core.inference.nudge import fit_threshold
    from rjepa_core.jepa.checkpoint import load_checkpoint, update_meta
    from rjepa_core.jepa.scoring import JEPAScorer
    from rjepa_core.store.layout import StorageLayout
    from rjepa_serve.app import create_app

    root = tmp_path_factory.mktemp("modes-store")
    folder = publish_tiny_checkpoint(root, "run-m")
    scorer = JEPAScorer.from_checkpoint(load_checkpoint(folder))
    chains = [(c.H.astype(np.float32), None, "math") for c in random_chains(30, 5)]
    update_meta(folder, nudge=fit_threshold(scorer, chains, 0.9, source="30 random chains").to_dict())
    _decoder_for(tiny_student.tokenizer).save(StorageLayout(root).decoder_dir(LLM_TAG, "v1"), llm_tag=LLM_TAG)
    with TestClient(create_app(make_settings(root, tiny_llm_dir, max_new_tokens=40))) as c:
        yield c


def test_nudge_returns_every_steps_decision(modes_client):
    body = {"prompt": "What is 3 + 4?", "mode": "NUDGE", "temperature": 0.9, "max_new_tokens": 30}
    for seed in range(8):  # the random tiny student may answer ("####...") at once: take a seed where it writes a step
        r = modes_client.post("/chat", json={**body, "seed": seed, "nudge": {"threshold": -1000, "m": 2}})
        assert r.status_code == 200, r.text
        if r.json()["nudge"]["trace"]:
            break
    out = r.json()
    nudge = out["nudge"]
    assert nudge["trace"], "no seed in 0..7 gave a step"
    assert nudge["threshold_source"] == "the request" and nudge["budget_tokens"] == 120
    assert [t["text"] for t in nudge["trace"]] == out["steps"][: len(nudge["trace"])]
    for t in nudge["trace"]:
        cosines = [a["cosine"] for a in t["alternatives"]]
        assert t["chosen"] == int(np.argmax(cosines)) and "above the threshold" in t["reason"]
        assert t["predicted_text"] == STEP  # the decoder is there: the prediction is shown in words
    assert nudge["nudged_steps"] == [t["index"] for t in nudge["trace"] if t["nudged"]]
    assert nudge["latents"] == "captured" and nudge["latent_fallbacks"] == 0  # the student captures by default
    assert len(out["jepa"]["step_surprise"]) == len(out["steps"])
    # teacher-forced on request: the same lines sampled (same seed), latents re-extracted after every line
    forced = modes_client.post(
        "/chat", json={**body, "seed": seed, "nudge": {"threshold": -1000, "m": 2, "teacher_forced": True}}
    )
    assert forced.status_code == 200, forced.text
    assert forced.json()["nudge"]["latents"] == "teacher_forced"
    assert forced.json()["nudge"]["trace"][0]["alternatives"][0]["text"] == nudge["trace"][0]["alternatives"][0]["text"]
    # the checkpoint's own threshold (fitted on validation) applies when the request gives none
    r = modes_client.post("/chat", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["nudge"]["threshold_source"].startswith("the checkpoint: 90% quantile per position")


def test_plan_verbalises_the_predicted_steps(modes_client):
    body = {"prompt": "What is 3 + 4?", "mode": "PLAN", "max_new_tokens": 10, "plan": {"steps": [STEP], "k": 2}}
    r = modes_client.post("/chat", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert [(p["index"], p["decoded"], p["text"]) for p in out["plan"]["plan"]] == [(1, STEP, STEP), (2, STEP, STEP)]
    assert out["text"].startswith(f"Step 1: {STEP}\nStep 2: {STEP}\nStep 3: {STEP}")
    assert out["steps"][:3] == [STEP] * 3
    hinted = {**body, "temperature": 0.9, "plan": {"steps": [], "k": 1, "verbalise": "student"}}
    r = modes_client.post("/chat", json=hinted)
    assert r.status_code == 200, r.text
    assert r.json()["plan"]["verbalise"] == "student" and r.json()["plan"]["given_steps"] == []
    too_long = {**body, "plan": {"steps": [STEP] * 15, "k": 4}}
    r = modes_client.post("/chat", json=too_long)
    assert r.status_code == 422 and "above the limit of 16 (max_steps)" in r.text


def test_decode_writes_text_for_latents(modes_client):
    Z = np.random.default_rng(2).standard_normal((3, HIDDEN)).tolist()
    r = modes_client.post("/decode", json={"latents": Z})
    assert r.status_code == 200, r.text
    assert r.json()["texts"] == [STEP] * 3 and r.json()["llm_tag"] == LLM_TAG
    r = modes_client.post("/decode", json={"latents": [[0.1] * (HIDDEN + 1)]})
    assert r.status_code == 422 and "decoder reads 64" in r.text
    nan = json.dumps({"latents": [[float("nan")] * HIDDEN]})  # NaN literals, as JS writes them
    r = modes_client.post("/decode", content=nan, headers={"content-type": "application/json"})
    assert r.status_code == 422 and "finite" in r.text


def test_plan_and_decode_without_a_decoder_say_what_to_materialize(client):
    r = client.post("/chat", json={"prompt": "What is 3 + 4?", "mode": "PLAN"})
    assert r.status_code == 503 and "latent_decoder" in r.json()["detail"]
    r = client.post("/decode", json={"latents": [[0.0] * HIDDEN]})
    assert r.status_code == 503 and "latent_decoder" in r.json()["detail"]
    # a checkpoint without a fitted NUDGE threshold asks for one in the request
    r = client.post("/chat", json={"prompt": "What is 3 + 4?", "mode": "NUDGE"})
    assert r.status_code == 422 and "nudge.threshold" in r.json()["detail"]


def test_malformed_mode_bodies_are_422_before_any_model(tmp_path):
    from fastapi.testclient import TestClient

    from rjepa_serve.app import create_app

    with TestClient(create_app(make_settings(tmp_path, None))) as c:  # no checkpoint, no student
        r = c.post("/chat", json={"prompt": "x", "mode": "NUDGE", "nudge": {"m": 0}})
        assert r.status_code == 422
        assert c.post("/decode", json={"latents": []}).status_code == 422
        assert c.post("/chat", json={"prompt": "x", "mode": "PLAN", "plan": {"verbalise": "poem"}}).status_code == 422


def test_client_decodes_predictions_and_chats_in_plan_mode(modes_client):
    """RJEPAClient.decode on /predict_masked's pred_hidden, and chat(mode="PLAN"), against the app."""
    from rjepa_serve.client import RJEPAClient

    client = RJEPAClient(client=modes_client)
    H = np.random.default_rng(3).standard_normal((3, HIDDEN)).astype(np.float32)
    pred = client.predict_masked(H, [1, 3])["pred_hidden"]
    assert client.decode(pred) == [STEP, STEP]
    out = client.chat("What is 3 + 4?", mode="PLAN", plan={"steps": [STEP], "k": 1}, max_new_tokens=8)
    assert out["plan"]["plan"][0]["decoded"] == STEP
