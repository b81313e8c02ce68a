"""The API through `TestClient(create_app(...))` on a tiny published checkpoint and the tiny student."""

from __future__ import annotations

import json

import numpy as np

from tests.serve.conftest import HIDDEN


def latents(steps: int, width: int = HIDDEN, seed: int = 0) -> list[list[float]]:
    return np.random.default_rng(seed).standard_normal((steps, width)).round(4).tolist()


def test_health_names_the_published_checkpoint(client):
    h = client.get("/health").json()
    assert h["status"] == "ok"
    assert (h["checkpoint_id"], h["llm_tag"], h["dataset_version"]) == ("run-a", "tiny", "v1")
    assert h["device"] == "cpu" and h["hidden_size"] == HIDDEN and h["student_loaded"] is True
    assert h["uptime_s"] >= 0


def test_score_one_chain_and_a_batch(client):
    one = client.post("/score", json={"latents": latents(4), "domain": "math"})
    assert one.status_code == 200, one.text
    [r] = one.json()["results"]
    assert len(r["step_surprise"]) == 4 and r["jepa_loss"] > 0
    assert 0.0 <= r["score01"] <= 1.0
    assert r["most_surprising_step"] == int(np.argmax(r["step_surprise"]))
    batch = client.post(
        "/score", json={"sequences": [{"latents": latents(3, seed=1)}, {"latents": latents(5, seed=2), "domain": "x"}]}
    )
    assert batch.status_code == 200, batch.text
    assert [len(r["step_surprise"]) for r in batch.json()["results"]] == [3, 5]
    assert batch.json()["checkpoint_id"] == "run-a"


def test_score_and_predict_take_a_question_latent(client):
    body = {"latents": latents(4, seed=4), "domain": "math"}
    question = latents(1, seed=5)[0]
    plain = client.post("/score", json=body).json()["results"][0]
    asked = client.post("/score", json={**body, "question_latent": question})
    assert asked.status_code == 200, asked.text
    assert asked.json()["results"][0]["jepa_loss"] != plain["jepa_loss"]  # the checkpoint has a question token
    batch = client.post("/score", json={"sequences": [{**body, "question_latent": question}]})
    assert batch.json()["results"][0] == asked.json()["results"][0]
    bad = client.post("/score", json={**body, "question_latent": question[:10]})
    assert bad.status_code == 422 and "question_latent" in bad.json()["detail"] and "10" in bad.json()["detail"]
    both = client.post("/score", json={"sequences": [body], "question_latent": question})
    assert both.status_code == 422 and "inside its sequence" in both.text
    nan_body = json.dumps({**body, "question_latent": [float("nan")] * HIDDEN})  # NaN literals, as JS writes them
    nan = client.post("/score", content=nan_body, headers={"content-type": "application/json"})
    assert nan.status_code == 422
    p = client.post("/predict_masked", json={"latents": latents(3), "indices": [1], "question_latent": question})
    q = client.post("/predict_masked", json={"latents": latents(3), "indices": [1]})
    assert p.status_code == 200 and p.json()["pred_jepa"] != q.json()["pred_jepa"]


def test_score_text_is_the_score_of_the_students_latents(client, tiny_student):
    """Text in: the service asks the student the question, extracts the steps' latents and scores them: the
    same numbers as /score on the latents the student gives for that prompt (a route that scored anything
    else -- other steps, another prompt, no question latent -- would differ)."""
    from rjepa_serve import engine

    question, steps = "What is (3 + 4) * 2?", ["3 + 4 = 7", "7 * 2 = 14"]
    r = client.post("/score", json={"question": question, "steps": steps, "domain": "math"})
    assert r.status_code == 200, r.text
    [out] = r.json()["results"]
    prompt = engine.ask(client.app.state.service.current, question)
    [ex] = tiny_student.extract([(prompt, steps)], layer_idx=-2, pooling="mean")
    body = {"latents": ex.H.astype("float32").tolist(), "question_latent": ex.q.astype("float32").tolist()}
    [ref] = client.post("/score", json={**body, "domain": "math"}).json()["results"]
    assert np.isclose(out["jepa_loss"], ref["jepa_loss"], rtol=1e-3, atol=1e-5), (out["jepa_loss"], ref["jepa_loss"])
    np.testing.assert_allclose(out["step_surprise"], ref["step_surprise"], rtol=1e-3, atol=1e-5)
    assert out["steps"] == steps and out["final_answer"] is None
    assert out["most_surprising_text"] == steps[out["most_surprising_step"]]
    assert 0.0 <= out["score01"] <= 1.0
    # the same chain as raw text is segmented into the same steps and scored the same
    text = "Step 1: 3 + 4 = 7\nStep 2: 7 * 2 = 14\nAnswer: 14"
    raw = client.post("/score", json={"question": question, "text": text, "domain": "math"})
    [seg] = raw.json()["results"]
    assert seg["steps"] == steps and seg["final_answer"] == "14"
    np.testing.assert_allclose(seg["step_surprise"], out["step_surprise"], rtol=1e-5, atol=1e-7)
    # a batch keeps its order and each chain's domain (the domain changes the score)
    chains = [{"question": question, "steps": steps, "domain": "math"}, {"question": question, "text": "7 * 3 = 20"}]
    batch = client.post("/score", json={"chains": chains})
    assert batch.status_code == 200, batch.text
    a, b = batch.json()["results"]
    assert a["steps"] == steps and b["steps"] == ["7 * 3 = 20"] and len(b["step_surprise"]) == 1
    np.testing.assert_allclose(a["step_surprise"], out["step_surprise"], rtol=1e-5, atol=1e-7)


def test_score_text_mistakes_are_422_with_what_to_send(client, serve_settings):
    q = "What is 2 + 2?"
    cases = {
        "steps": ({"steps": ["2 + 2 = 4"]}, "question"),
        "both forms": ({"question": q, "steps": ["2 + 2 = 4"], "text": "2 + 2 = 4"}, "not both"),
        "neither": ({"question": q}, "steps"),
        "blank step": ({"question": q, "steps": ["2 + 2 = 4", "  "]}, "blank"),
        "only an answer": ({"question": q, "text": "Answer: 4"}, "no step found"),
        "latents and text": ({"question": q, "text": "2 + 2 = 4", "latents": latents(2)}, "exactly one"),
        "question latent": ({"question": q, "text": "2 + 2 = 4", "question_latent": latents(1)[0]}, "goes with"),
        "too many steps": ({"question": q, "steps": ["1 + 1 = 2"] * (serve_settings.max_steps + 1)}, "fewer steps"),
        "long question": ({"question": "x" * (serve_settings.max_prompt_chars + 1), "text": "1"}, "shorten"),
        "batch too big": (
            {"chains": [{"question": q, "text": "2 + 2 = 4"}] * (serve_settings.max_sequences + 1)},
            "split the batch",
        ),
        "bad batch item": ({"chains": [{"question": q, "text": "2 + 2 = 4"}, {"question": q}]}, "steps"),
    }
    for name, (body, words) in cases.items():
        r = client.post("/score", json=body)
        assert r.status_code == 422, (name, r.status_code, r.text)
        assert words in json.dumps(r.json()["detail"]), (name, r.json()["detail"])


def test_score_is_deterministic(client):
    body = {"latents": latents(5, seed=3)}
    assert client.post("/score", json=body).json() == client.post("/score", json=body).json()


def test_hidden_size_mismatch_names_both_sizes(client):
    r = client.post("/score", json={"latents": latents(3, width=10)})
    assert r.status_code == 422
    assert "10" in r.json()["detail"] and str(HIDDEN) in r.json()["detail"]
    r = client.post("/predict_masked", json={"latents": latents(3, width=12), "indices": [1]})
    assert r.status_code == 422 and "12" in r.json()["detail"]


def test_nan_and_inf_are_rejected_with_a_clear_message(client):
    row = ", ".join(["0.5"] * (HIDDEN - 1))
    for bad in ("NaN", "Infinity", "-Infinity"):
        body = f'{{"latents": [[{row}, 0.1], [{row}, {bad}]]}}'
        r = client.post("/score", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422, bad
        assert "finite" in r.json()["detail"] and "[1][63]" in r.json()["detail"]
    r = client.post("/score", json={"latents": [[1e300] * HIDDEN]})
    assert r.status_code == 422 and "float32" in r.json()["detail"]


def test_shape_and_count_limits(client, serve_settings):
    too_long = client.post("/score", json={"latents": latents(serve_settings.max_steps + 1)})
    assert too_long.status_code == 422 and "limit of 16 steps" in too_long.json()["detail"]
    many = {"sequences": [{"latents": latents(2)}] * (serve_settings.max_sequences + 1)}
    r = client.post("/score", json=many)
    assert r.status_code == 422 and "split the batch" in r.json()["detail"]
    ragged = client.post("/score", json={"latents": [[0.1] * HIDDEN, [0.1] * (HIDDEN - 1)]})
    assert ragged.status_code == 422 and "matrix" in ragged.json()["detail"]
    for body in ({}, {"latents": latents(2), "sequences": [{"latents": latents(2)}]}, {"latents": []}):
        r = client.post("/score", json=body)
        assert r.status_code == 422, body
        assert isinstance(r.json()["detail"], str) and r.json()["detail"]


def test_malformed_json_and_wrong_types_are_4xx(client):
    r = client.post("/score", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert client.post("/score", json={"latents": "abc"}).status_code == 422
    assert client.post("/chat", json={"prompt": 3}).status_code == 422
    assert client.post("/feedback", json={"rating": "meh"}).status_code == 422
    assert client.get("/score").status_code == 405


def test_predict_masked_returns_both_spaces(client):
    r = client.post("/predict_masked", json={"latents": latents(4), "indices": [3, 1, 1, 5]})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["indices"] == [1, 3, 5]
    assert np.asarray(out["pred_jepa"]).shape == (3, 64)  # tiny preset d_model
    assert np.asarray(out["pred_hidden"]).shape == (3, HIDDEN)
    assert np.isfinite(out["pred_hidden"]).all()


def test_predict_masked_rejects_bad_indices(client):
    r = client.post("/predict_masked", json={"latents": latents(3), "indices": [40]})
    assert r.status_code == 422 and "32" in r.json()["detail"]
    r = client.post("/predict_masked", json={"latents": latents(2), "indices": [0, 1]})
    assert r.status_code == 422 and "context" in r.json()["detail"]
    assert client.post("/predict_masked", json={"latents": latents(2), "indices": []}).status_code == 422
    assert client.post("/predict_masked", json={"latents": latents(2), "indices": [-1]}).status_code == 422


def test_rerank_given_candidates(client):
    cands = [
        "Step 1: 3 + 4 = 7\nStep 2: 7 * 2 = 14\nAnswer: 14",
        "Step 1: 3 + 4 = 8\nAnswer: 8",
        "   ",
    ]
    r = client.post("/rerank", json={"prompt": "What is (3 + 4) * 2?", "candidates": cands, "domain": "math"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert sorted(out["order"]) == [0, 1, 2] and out["order"][-1] == 2
    assert out["best_index"] == out["order"][0] in (0, 1)
    assert [c["chosen"] for c in out["candidates"]].count(True) == 1
    assert [len(c["steps"]) for c in out["candidates"]] == [2, 1, 0]
    assert out["candidates"][0]["final_answer"] == "14" and out["candidates"][0]["jepa_loss"] > 0
    assert out["candidates"][2]["jepa_loss"] is None and "no step" in out["candidates"][2]["note"]
    assert out["best"] == out["candidates"][out["best_index"]]
    assert out["weights"] == {"alpha": 0.0, "beta": 1.0, "gamma": 0.0}


def test_rerank_weights_change_the_composite(client):
    cands = ["Step 1: 3 + 4 = 7\nAnswer: 7", "Step 1: 3 + 4 = 8\nStep 2: 8 - 1 = 7\nAnswer: 7"]
    body = {"prompt": "3 + 4?", "candidates": cands, "weights": {"alpha": 0, "beta": 0, "gamma": 1}}
    out = client.post("/rerank", json=body).json()
    assert out["best_index"] == 1  # pure length: the longer chain wins


def test_rerank_jepa_votes_follow_the_answers(client):
    # three chains answer 14, one answers 8: with the vote weighted by lawfulness a lone answer can only
    # win if its chain is far more lawful than all three others together; the filtered vote drops one
    cands = [
        "Step 1: 3 + 4 = 7\nStep 2: 7 * 2 = 14\nAnswer: 14",
        "Step 1: 3 + 4 = 8\nAnswer: 8",
        "Step 1: 4 + 3 = 7\nStep 2: 7 * 2 = 14\nAnswer: 14",
        "Step 1: 7 * 2 = 14\nAnswer: 14",
    ]
    body = {"prompt": "What is (3 + 4) * 2?", "candidates": cands}
    for selection in ("jepa_vote", "jepa_filter_majority", "jepa_last_filter_majority"):
        out = client.post("/rerank", json={**body, "selection": selection}).json()
        assert out["selection"] == selection and out["order"][0] == out["best_index"]
        shares = [c["vote_share"] for c in out["candidates"]]
        assert all(0.0 <= x <= 1.0 for x in shares) and out["best"]["vote_share"] == max(shares)
        if selection == "jepa_vote":  # everyone votes: the answer "14" and the answer "8" share the whole vote
            assert shares[0] == shares[2] == shares[3] and abs(shares[0] + shares[1] - 1.0) < 1e-9
        if selection != "jepa_vote":  # 3 of the 4 vote; "14" holds at least 2 of 3 votes
            assert out["best"]["final_answer"] == "14"
    composite = client.post("/rerank", json=body).json()
    assert composite["selection"] == "composite" and all(c["vote_share"] is None for c in composite["candidates"])
    r = client.post("/rerank", json={**body, "selection": "best_guess"})
    assert r.status_code == 422 and "jepa_vote" in r.text
    # the excess-surprise filter needs the checkpoint's surprise normaliser, which this one has not
    r = client.post("/rerank", json={**body, "selection": "jepa_excess_filter_majority"})
    assert r.status_code == 422 and "surprise normaliser" in r.text


def test_rerank_samples_k_from_the_student(client):
    r = client.post("/rerank", json={"prompt": "What is 2 + 5?", "k": 3, "seed": 0, "max_new_tokens": 16})
    assert r.status_code == 200, r.text
    out = r.json()
    assert len(out["candidates"]) == 3 and sorted(out["order"]) == [0, 1, 2]
    assert all(c["num_tokens"] is None or c["num_tokens"] <= 16 for c in out["candidates"])


def test_rerank_limits(client, serve_settings):
    base = {"prompt": "2 + 2?"}
    r = client.post("/rerank", json={**base, "candidates": ["Step 1: 4"] * 5})
    assert r.status_code == 422 and "limit of 4 candidates" in r.json()["detail"]
    r = client.post("/rerank", json={**base, "k": 5})
    assert r.status_code == 422 and "k=5" in r.json()["detail"]
    r = client.post("/rerank", json={**base, "k": 2, "candidates": ["a"]})
    assert r.status_code == 422 and "not both" in r.json()["detail"]
    r = client.post("/rerank", json={"prompt": "x" * 501, "k": 1})
    assert r.status_code == 422 and "limit of 500" in r.json()["detail"]
    r = client.post("/rerank", json={**base, "k": 1, "max_new_tokens": 25})
    assert r.status_code == 422 and "max_new_tokens=25" in r.json()["detail"]
    r = client.post("/rerank", json={"prompt": "   ", "k": 1})
    assert r.status_code == 422 and "blank" in r.json()["detail"]


def test_chat_off_and_rerank(client):
    off = client.post("/chat", json={"prompt": "What is 3 + 4?", "mode": "off", "seed": 1})
    assert off.status_code == 200, off.text
    o = off.json()
    assert o["mode"] == "OFF" and o["jepa"]["candidates"] == [] and o["llm_tag"] == "tiny"
    assert len(o["jepa"]["step_surprise"]) == len(o["steps"])
    assert set(o["jepa"]["surprising_steps"]) <= set(range(len(o["steps"])))
    rr = client.post("/chat", json={"prompt": "What is 3 + 4?", "mode": "RERANK", "k": 3, "seed": 1})
    assert rr.status_code == 200, rr.text
    r = rr.json()
    assert r["mode"] == "RERANK" and len(r["jepa"]["candidates"]) == 3
    chosen = [c for c in r["jepa"]["candidates"] if c["chosen"]]
    assert len(chosen) == 1 and chosen[0]["text"] == r["text"]
    assert r["interaction_id"] != o["interaction_id"]
    body = {"prompt": "What is 3 + 4?", "mode": "RERANK", "k": 3, "seed": 1, "selection": "jepa_vote"}
    voted = client.post("/chat", json=body).json()
    assert [c["text"] for c in voted["jepa"]["candidates"]] == [c["text"] for c in r["jepa"]["candidates"]]
    assert [c["text"] for c in voted["jepa"]["candidates"] if c["chosen"]] == [voted["text"]]


def test_chat_tiny_temperature_means_greedy(client):
    body = {"prompt": "What is 3 + 4?", "max_new_tokens": 8}
    tiny = client.post("/chat", json={**body, "temperature": 1e-300, "seed": 1})
    assert tiny.status_code == 200, tiny.text
    assert tiny.json()["text"] == client.post("/chat", json={**body, "temperature": 0, "seed": 2}).json()["text"]


def test_chat_rejects_unknown_modes_and_mismatched_settings(client):
    r = client.post("/chat", json={"prompt": "2+2?", "mode": "FAST"})
    assert r.status_code == 422 and "use one of OFF, RERANK, NUDGE, PLAN" in r.text
    r = client.post("/chat", json={"prompt": "2+2?", "mode": "RERANK", "plan": {"k": 2}})
    assert r.status_code == 422 and "go with mode PLAN" in r.text
    r = client.post("/chat", json={"prompt": "2+2?", "mode": "RERANK", "k": 9})
    assert r.status_code == 422 and "limit of 4" in r.json()["detail"]
    assert client.post("/chat", json={"prompt": "2+2?", "temperature": -1}).status_code == 422


def test_body_limits_give_413(client, serve_settings):
    big = b'{"latents": [[' + b"0.1," * 60_000 + b"0.1]]}"
    r = client.post("/score", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "limit" in r.json()["detail"]

    def chunks():  # no Content-Length: the streamed size is counted
        yield b'{"latents": [['
        for _ in range(100):
            yield b"0.1," * 1000
        yield b"0.1]]}"

    r = client.post("/score", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_metrics_count_requests_and_show_the_model(client):
    client.post("/score", json={"latents": latents(2)})
    client.post("/score", json={"latents": latents(2, width=3)})
    text = client.get("/metrics").text
    assert 'rjepa_requests_total{method="POST",route="/score",status="200"}' in text
    assert 'rjepa_errors_total{kind="client",route="/score"}' in text
    assert 'rjepa_request_latency_seconds_bucket{le="0.5",route="/score"}' in text
    assert 'rjepa_model_info{checkpoint_id="run-a",dataset_version="v1",llm_tag="tiny"} 1.0' in text


def test_openapi_and_page_are_served(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/health", "/score", "/predict_masked", "/rerank", "/chat", "/feedback", "/metrics"} <= set(paths)
    page = client.get("/")
    assert page.status_code == 200 and 'id="prompt"' in page.text
    assert client.get("/static/app.js").status_code == 200


def test_unknown_route_is_404_json(client):
    r = client.get("/nope")
    assert r.status_code == 404 and json.loads(r.text)["detail"]
