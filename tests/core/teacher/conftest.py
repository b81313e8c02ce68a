"""A real OpenAI-compatible HTTP server on 127.0.0.1 (FastAPI + uvicorn in a thread), scriptable.

`fake_server.script` is a list of actions consumed one per request; when it is empty the
`responder` answers. Actions: {"status": 429, "retry_after": "1"}, {"status": 500},
{"sleep": 1.5} (then the normal reply), {"content": "...", "finish_reason": "length", "usage": None}.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

_CALLS = itertools.count(1)


def default_responder(body: dict) -> str:
    """Plausible teacher output for our three prompt templates."""
    user = body["messages"][-1]["content"]
    if "problems about" in user:
        n = int(re.search(r"Write (\d+) new", user).group(1))
        k = 10 * next(_CALLS)  # new problems on every call
        return json.dumps(
            [
                {"statement": f"What is {k + i} + {i + 2}?", "answer": str(k + 2 * i + 2), "notions": ["addition"]}
                for i in range(n)
            ]
        )
    if "Known subdomains" in user:
        return '{"subdomain": "addition", "notions": ["addition", "integers"], "difficulty": "easy"}'
    m = re.search(r"What is (\d+) \+ (\d+)\?", user)
    a, b = (int(m.group(1)), int(m.group(2))) if m else (2, 3)
    return json.dumps(
        {"steps": [f"Add the numbers: {a} + {b} = {a + b}", f"So the answer is {a + b}"], "final_answer": str(a + b)}
    )


@dataclass
class FakeServer:
    base_url: str
    script: list[dict] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)  # {"t", "headers", "body"} per request
    responder: object = default_responder
    usage: dict | None = field(default_factory=lambda: {"prompt_tokens": 100, "completion_tokens": 20})

    def reset(self) -> None:
        self.script.clear()
        self.requests.clear()
        self.responder = default_responder
        self.usage = {"prompt_tokens": 100, "completion_tokens": 20}


def _make_app(state: FakeServer) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        state.requests.append({"t": time.monotonic(), "headers": dict(request.headers), "body": body})
        action = state.script.pop(0) if state.script else {}
        if "status" in action:
            headers = {"retry-after": action["retry_after"]} if "retry_after" in action else {}
            err = {"error": {"message": f"scripted {action['status']}", "type": "scripted"}}
            return JSONResponse(err, status_code=action["status"], headers=headers)
        if "sleep" in action:
            await asyncio.sleep(action["sleep"])
        content = action.get("content", None)
        if content is None:
            content = state.responder(body)
        usage = action.get("usage", state.usage)
        reply = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": action.get("finish_reason", "stop"),
                }
            ],
        }
        if usage is not None:
            reply["usage"] = {**usage, "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"]}
        return JSONResponse(reply)

    return app


@pytest.fixture(scope="session")
def _server():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    state = FakeServer(base_url=f"http://127.0.0.1:{port}/v1")
    server = uvicorn.Server(uvicorn.Config(_make_app(state), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("fake OpenAI server did not start")
        time.sleep(0.02)
    yield state
    server.should_exit = True
    thread.join(timeout=5)


@pytest.fixture
def fake_server(_server: FakeServer) -> FakeServer:
    _server.reset()
    return _server
