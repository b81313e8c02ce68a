"""The service on RJEPA_STORAGE=s3://… (a real S3-compatible server, tests/s3server.py): it serves the
checkpoint another machine published to the bucket, follows the LATEST pointer when it moves, and
publishes the interactions it logged so that the pipeline (another cache folder) reads them; a deletion
request leaves no copy of the user's records in the bucket; a restarted replica continues the day's file."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from rjepa_core.store.latents import LatentStore
from tests.core.store.factories import make_seqs
from tests.serve.conftest import LLM_TAG, publish_tiny_checkpoint


def interaction_objects(bucket) -> dict[str, bytes]:
    keys = [k for k in bucket.keys() if "/.rjepa-objects/interactions/" in k]
    return {k: bucket.fs.cat_file(k) for k in keys}


def test_service_follows_the_bucket_and_publishes_its_interactions(bucket):
    from rjepa_serve.app import create_app
    from rjepa_serve.settings import ServeSettings

    bucket.on("pipeline")
    publish_tiny_checkpoint(bucket.uri, "run1")
    LatentStore(bucket.layout("pipeline")).write(LLM_TAG, "v1", make_seqs(3, hidden=64), shard_size=2)
    settings = ServeSettings(
        storage=bucket.uri,
        llm_tag=LLM_TAG,
        load_student=False,
        device="cpu",
        torch_threads=1,
        reload_interval_s=0,
        admin_token="t0ken",
    )
    bucket.on("service")  # the service's own cache folder: it shares nothing with the pipeline but the bucket
    with TestClient(create_app(settings)) as c:
        health = c.get("/health").json()
        assert health["status"] == "ok" and health["checkpoint_id"] == "run1"
        assert not (bucket.cache("service") / "latents").exists()  # it fetches what serving needs, no more
        bucket.on("pipeline")
        publish_tiny_checkpoint(bucket.uri, "run2", seed=1)
        bucket.on("service")
        assert c.post("/admin/reload", headers={"X-Admin-Token": "t0ken"}).json()["changed"] is True
        assert c.get("/health").json()["checkpoint_id"] == "run2"
        gone = c.post("/feedback", json={"rating": "up", "prompt": "2+2?", "answer": "4", "user_id": "u-gone"})
        assert gone.status_code == 200, gone.text
        c.portal.call(c.app.state.service.publish)  # what the poll does every reload_interval_s
        published = interaction_objects(bucket)
        assert len(published) == 1
        gone_hash = json.loads(next(iter(published.values())))["user_hash"]
        r = c.post("/feedback", json={"rating": "down", "prompt": "1+1?", "answer": "3", "user_id": "u-1"})
        assert r.status_code == 200, r.text
        # a deletion request publishes at once, and leaves no earlier copy of the user's records in the bucket
        assert c.delete("/feedback/user/u-gone").json()["removed"] == 1
        assert not [k for k, body in interaction_objects(bucket).items() if gone_hash.encode() in body]
    # a replica started later with a fresh cache continues the day's file instead of replacing it
    bucket.on("service-2")
    with TestClient(create_app(settings)) as c:
        assert c.get("/health").json()["checkpoint_id"] == "run2"
        later = c.post("/feedback", json={"rating": "up", "prompt": "3+3?", "answer": "6", "user_id": "u-2"})
        assert later.status_code == 200, later.text
    # the service published its interaction file when it stopped; the pipeline's machine reads it
    pipeline = bucket.layout("pipeline")
    files = sorted(pipeline.interactions_dir().glob("*.jsonl"))
    assert [f.name for f in files] == [f"{r.json()['date']}.jsonl"]
    rows = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert [row["rating"] for row in rows] == ["down", "up"]
    assert [row["interaction_id"] for row in rows] == [r.json()["interaction_id"], later.json()["interaction_id"]]
    assert "u-1" not in files[0].read_text()  # hashed, as on local storage
    assert gone_hash not in files[0].read_text()
