"""/feedback and user deletion: what lands in interactions/<date>.jsonl of the storage root."""

from __future__ import annotations

from rjepa_core.interactions import hash_user, read_jsonl


def _records(settings) -> list[dict]:
    from rjepa_serve.state import interactions_dir

    files = sorted(interactions_dir(settings).glob("*.jsonl"))
    return [r for f in files for r in read_jsonl(f)]


def test_feedback_on_a_chat_keeps_the_server_record_pii_filtered(client, serve_settings):
    chat = client.post("/chat", json={"prompt": "Email me at ann@example.org: what is 2 + 2?", "seed": 0}).json()
    r = client.post(
        "/feedback",
        json={
            "interaction_id": chat["interaction_id"],
            "rating": "up",
            "consent": True,
            "user_id": "ann",
            "comment": "call me on +33 6 12 34 56 78",
            "prompt": "client text is ignored for known chats",
        },
    )
    assert r.status_code == 200, r.text
    assert r.json() == {**r.json(), "recorded": True, "text_kept": True, "source": "server"}
    [rec] = [x for x in _records(serve_settings) if x["interaction_id"] == chat["interaction_id"]]
    assert rec["prompt"] == "Email me at [EMAIL]: what is 2 + 2?"
    assert rec["comment"] == "call me on [PHONE]"
    assert rec["pii_redactions"] == {"email": 1, "phone": 1}
    assert rec["user_hash"] == hash_user("ann", "test-salt") and "ann" not in rec["user_hash"]
    assert rec["mode"] == "OFF" and rec["rating"] == "up" and rec["checkpoint_id"] == "run-a"
    assert rec["jepa"]["step_surprise"] == chat["jepa"]["step_surprise"]
    assert rec["steps"] == chat["steps"]


def test_feedback_without_consent_keeps_no_text(client, serve_settings):
    r = client.post(
        "/feedback",
        json={
            "rating": "down",
            "consent": False,
            "user_id": "bob",
            "prompt": "my card 4111 1111 1111 1111",
            "answer": "42",
            "steps": ["a step"],
            "mode": "RERANK",
        },
    )
    assert r.status_code == 200 and r.json()["text_kept"] is False and r.json()["source"] == "client"
    [rec] = [x for x in _records(serve_settings) if x["interaction_id"] == r.json()["interaction_id"]]
    assert rec["prompt"] is None and rec["answer"] is None and rec["steps"] == [] and rec["comment"] is None
    assert rec["num_steps"] == 1 and rec["rating"] == "down" and rec["mode"] == "RERANK"
    assert "4111" not in str(rec)


def test_feedback_needs_something_to_rate(client):
    r = client.post("/feedback", json={"rating": "up"})
    assert r.status_code == 422 and "interaction_id" in r.json()["detail"]
    r = client.post("/feedback", json={"rating": "up", "prompt": "x", "user_id": ""})
    assert r.status_code == 422


def test_delete_user_removes_only_that_users_records(client, serve_settings):
    for user in ("carl", "dana", "carl"):
        body = {"rating": "up", "consent": True, "user_id": user, "prompt": f"question of {user}", "answer": "1"}
        assert client.post("/feedback", json=body).status_code == 200
    before = _records(serve_settings)
    r = client.delete("/feedback/user/carl")
    assert r.status_code == 200 and r.json() == {"removed": 2}
    after = _records(serve_settings)
    assert len(after) == len(before) - 2
    assert hash_user("carl", "test-salt") not in {x["user_hash"] for x in after}
    assert any(x["user_hash"] == hash_user("dana", "test-salt") for x in after)
    assert client.delete("/feedback/user/carl").json() == {"removed": 0}
    from rjepa_serve.state import interactions_dir

    assert not [p for p in interactions_dir(serve_settings).iterdir() if p.name.endswith(".tmp")]


def test_a_canary_api_key_in_the_environment_never_reaches_storage(tmp_path, tiny_llm_dir, monkeypatch):
    """Issue 17 item 6 for the service: with teacher and OpenAI keys set, a chat, its feedback and a /score
    leave no trace of them under the storage root — also when the user pastes the key into the comment (the
    PII filter stores it as [SECRET]); the same scan finds the chat's own words, so it reads what was written."""
    from fastapi.testclient import TestClient

    from rjepa_serve.app import create_app
    from tests.serve.conftest import make_settings, publish_tiny_checkpoint

    canary = "sk-canary-7f3e9d1c4b2a"
    for var in ("TEACHER_FAKE_API_KEY", "OPENAI_API_KEY", "RJEPA_TEACHER_API_KEY"):
        monkeypatch.setenv(var, canary)
    publish_tiny_checkpoint(tmp_path, "run-c")
    with TestClient(create_app(make_settings(tmp_path, tiny_llm_dir))) as c:
        chat = c.post("/chat", json={"prompt": "What is 6 + 7, zebra?", "seed": 0}).json()
        fb = c.post(
            "/feedback",
            json={"interaction_id": chat["interaction_id"], "rating": "up", "consent": True, "user_id": "u1",
                  "comment": f"my key is {canary}"},
        )  # fmt: skip
        assert fb.status_code == 200, fb.text
        assert c.post("/score", json={"question": "What is 1 + 1?", "steps": ["1 + 1 = 2"]}).status_code == 200
    written = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert b"zebra" in written and b"my key is [SECRET]" in written
    assert canary.encode() not in written
