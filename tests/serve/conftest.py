"""Fixtures of the service tests: a tiny trained checkpoint published through the LATEST pointer, the
settings that serve it with the tiny student, and a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

LLM_TAG = "tiny"
HIDDEN = 64  # width of the tiny test student (rjepa_core.llm.testing.build_tiny_llm)


def random_chains(n: int, seed: int, hidden: int = HIDDEN) -> list:
    from rjepa_core.jepa.collate import Chain

    rng = np.random.default_rng(seed)
    return [Chain(rng.standard_normal((int(rng.integers(3, 7)), hidden)).astype("float16"), "math") for _ in range(n)]


def publish_tiny_checkpoint(root: Path, run_id: str, version: str = "v1", seed: int = 0) -> Path:
    """Train the tiny preset for a few steps on random latents, calibrate it, publish LATEST; returns its folder."""
    from rjepa_core.config import RJEPAConfig, rjepa_tiny
    from rjepa_core.jepa.calibration import fit_calibration
    from rjepa_core.jepa.checkpoint import load_checkpoint, update_meta
    from rjepa_core.jepa.scoring import JEPAScorer
    from rjepa_core.jepa.trainer import train
    from rjepa_core.store.layout import StorageLayout
    from rjepa_core.store.pointers import publish_latest_checkpoint

    layout = StorageLayout(root)
    cfg = RJEPAConfig(model=rjepa_tiny(hidden_size=HIDDEN, max_steps=32, question_token=True)).replace(
        optim={"total_steps": 4, "warmup_steps": 1}, train={"batch_size": 8, "val_every": 4, "seed": seed}
    )
    chains = random_chains(24, seed)
    out = Path(layout.checkpoint_dir(LLM_TAG, version, run_id))
    result = train(cfg, chains[:16], chains[16:], out, resume=False, device="cpu")
    ck = load_checkpoint(result.checkpoint_dir)
    cal = fit_calibration(JEPAScorer.from_checkpoint(ck), chains[16:])
    meta = update_meta(result.checkpoint_dir, calibration=cal.to_dict(), llm_tag=LLM_TAG, layer_idx=-2)
    publish_latest_checkpoint(layout, LLM_TAG, version, run_id, {**meta, "path": str(result.checkpoint_dir)})
    return Path(result.checkpoint_dir)


def make_settings(root: Path, llm_dir: Path | None, **kw):
    from rjepa_serve.settings import ServeSettings

    base = dict(
        storage=root,
        llm_tag=LLM_TAG,
        llm_source=str(llm_dir) if llm_dir else None,
        load_student=llm_dir is not None,
        device="cpu",
        torch_threads=1,
        reload_interval_s=0,
        max_sequences=8,
        max_steps=16,
        max_candidates=4,
        max_prompt_chars=500,
        max_new_tokens=24,
        default_new_tokens=12,
        max_body_bytes=200_000,
        interactions_salt="test-salt",
        generation_timeout_s=60,
    )
    return ServeSettings(**{**base, **kw})


@pytest.fixture(scope="session")
def store_root(tmp_path_factory) -> Path:
    """A storage root holding one published checkpoint (run id "run-a")."""
    root = tmp_path_factory.mktemp("serve-store")
    publish_tiny_checkpoint(root, "run-a")
    return root


@pytest.fixture(scope="session")
def serve_settings(store_root, tiny_llm_dir):
    return make_settings(store_root, tiny_llm_dir)


@pytest.fixture(scope="module")
def client(serve_settings):
    from fastapi.testclient import TestClient

    from rjepa_serve.app import create_app

    with TestClient(create_app(serve_settings)) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn in a background thread on 127.0.0.1:<free port>."""

    def __init__(self, settings):
        import uvicorn

        from rjepa_serve.app import create_app

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings = settings
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="session")
def live_server(tmp_path_factory, store_root, tiny_llm_dir):
    """A real server on the published checkpoint; its interactions go to their own storage copy."""
    import shutil

    root = tmp_path_factory.mktemp("live-store")
    shutil.copytree(store_root, root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("interactions"))
    with LiveServer(make_settings(root, tiny_llm_dir)) as server:
        yield server
