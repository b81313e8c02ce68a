"""Bounded admission: past the queue bound a model route answers 429 with Retry-After at once, and the
service keeps answering once the queue drains. The queue is held full by real calls on the app's own model
threads (each waits on an event), so which requests are refused does not depend on timing."""

from __future__ import annotations

import functools
import threading

import pytest

from tests.serve.conftest import HIDDEN, make_settings

LATENTS = {"latents": [[0.1 * (i + j) for j in range(HIDDEN)] for i in range(4)]}
CHAT = {"prompt": "What is 2 + 3?", "mode": "RERANK", "k": 2, "max_new_tokens": 4, "seed": 1}


@pytest.fixture(scope="module")
def bounded(store_root, tiny_llm_dir):
    from fastapi.testclient import TestClient

    from rjepa_serve.app import create_app

    settings = make_settings(store_root, tiny_llm_dir, max_queue_generation=2, max_queue_scoring=1)
    with TestClient(create_app(settings)) as c:
        yield c


def _fill(client, runner, n: int):
    """Put n calls on `runner` that block until the returned event is set; returns (event, futures)."""
    release = threading.Event()
    futures = [client.portal.start_task_soon(functools.partial(runner.run, release.wait, 30, timeout=60))
               for _ in range(n)]  # fmt: skip
    client.portal.call(_until, lambda: runner.pending == n)
    return release, futures


async def _until(cond) -> None:
    import asyncio

    for _ in range(2000):
        if cond():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the runner never reached the expected queue length")


def test_a_burst_past_the_bound_gets_429_with_retry_after_then_the_service_answers(bounded):
    svc = bounded.app.state.service
    assert bounded.post("/score", json=LATENTS).status_code == 200

    release, futures = _fill(bounded, svc.scoring_runner, 1)
    burst = [bounded.post("/score", json=LATENTS) for _ in range(5)]
    assert [r.status_code for r in burst] == [429] * 5
    for r in burst:
        assert int(r.headers["Retry-After"]) >= 1
        assert "scoring queue is full" in r.json()["detail"] and "limit 1" in r.json()["detail"]
    assert bounded.get("/health").status_code == 200  # light routes are not behind the model queue
    release.set()
    assert [f.result(timeout=30) for f in futures] == [True]
    assert svc.scoring_runner.pending == 0
    assert bounded.post("/score", json=LATENTS).status_code == 200

    # the generation thread has its own bound: /chat is refused while it is full, the scoring thread still works
    release, futures = _fill(bounded, svc.runner, 2)
    r = bounded.post("/chat", json=CHAT)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1 and "generation queue is full" in r.text
    assert bounded.post("/score", json=LATENTS).status_code == 200
    release.set()
    assert [f.result(timeout=30) for f in futures] == [True, True]
    chat = bounded.post("/chat", json=CHAT)
    assert chat.status_code == 200 and chat.json()["answer"] is not None
    metrics = bounded.get("/metrics").text
    assert 'rjepa_requests_total{method="POST",route="/score",status="429"} 5.0' in metrics
