"""/chat NUDGE and PLAN and /decode on the embedded default student (SmolLM2-135M-Instruct, marker `smollm2`).

The R-JEPA checkpoint and the decoder are small and briefly trained (seconds): what is checked is that the
service answers 200 with its traces on the real student's text and latents, not their quality.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.smollm2

TAG = "smollm2-135m"
STEPS = [["3 + 4 = 7", "7 * 2 = 14"], ["5 + 1 = 6", "6 - 2 = 4"], ["8 - 3 = 5", "5 + 5 = 10"]]


@pytest.fixture(scope="module")
def smol_client(tmp_path_factory, smollm2_dir):
    from fastapi.testclient import TestClient

    from rjepa_core.config import RJEPAConfig, rjepa_tiny
    from rjepa_core.jepa.checkpoint import update_meta
    from rjepa_core.jepa.collate import Chain
    from rjepa_core.jepa.decoder import DecoderConfig, StepPair, train_decoder
    from rjepa_core.jepa.trainer import train
    from rjepa_core.llm.adapter import StudentLLM
    from rjepa_core.store.layout import StorageLayout
    from rjepa_core.store.pointers import publish_latest_checkpoint
    from rjepa_serve.app import create_app
    from rjepa_serve.settings import ServeSettings

    smol = StudentLLM.load(TAG, device="cpu")
    root = tmp_path_factory.mktemp("smol-store")
    layout = StorageLayout(root)
    items = [(smol.prompt_for(q), steps) for q, steps in zip(("What is (3 + 4) * 2?", "What is 5 + 1 - 2?",
                                                               "What is 8 - 3 + 5?"), STEPS, strict=True)]  # fmt: skip
    ex = smol.extract(items, layer_idx=14)
    chains = [Chain(e.H, "math", q=e.q) for e in ex] * 4
    cfg = RJEPAConfig(model=rjepa_tiny(hidden_size=576, max_steps=16, question_token=True)).replace(
        optim={"total_steps": 4, "warmup_steps": 1}, train={"batch_size": 4, "val_every": 4, "seed": 0}
    )
    out = Path(layout.checkpoint_dir(TAG, "v1", "run-s"))
    result = train(cfg, chains, chains[:3], out, resume=False, device="cpu")
    meta = update_meta(
        result.checkpoint_dir, llm_tag=TAG, layer_idx=14, pooling="mean", question_pooling=smol.spec.question_pooling
    )
    publish_latest_checkpoint(layout, TAG, "v1", "run-s", {**meta, "path": str(result.checkpoint_dir)})
    pairs = [StepPair(e.H[j].astype(np.float32), list(e.token_ids[a:b])) for e in ex
             for j, (a, b) in enumerate(e.step_spans)]  # fmt: skip
    dec_cfg = DecoderConfig(d_model=64, n_layers=1, n_heads=2, steps=200, batch_size=6, val_every=100, patience=5,
                            warmup_steps=10, latent_noise=0.0, dropout=0.0)  # fmt: skip
    train_decoder(pairs, pairs, dec_cfg).save(layout.decoder_dir(TAG, "v1"), llm_tag=TAG)
    settings = ServeSettings(storage=root, llm_tag=TAG, device="cpu", torch_threads=1, reload_interval_s=0,
                             max_new_tokens=48, interactions_salt="t", generation_timeout_s=300)  # fmt: skip
    with TestClient(create_app(settings)) as c:
        yield c


def test_nudge_and_plan_on_smollm2(smol_client):
    q = "What is 3 + 4 + 2?"
    r = smol_client.post(
        "/chat", json={"prompt": q, "mode": "NUDGE", "max_new_tokens": 40, "nudge": {"threshold": 0, "m": 2}}
    )
    assert r.status_code == 200, r.text
    nudge = r.json()["nudge"]
    assert nudge["trace"], r.json()["text"]  # SmolLM2 writes "Step 1: ..." lines: every one is above 0
    assert all(len(t["alternatives"]) >= 1 and t["predicted_text"] is not None for t in nudge["trace"])
    r = smol_client.post("/chat", json={"prompt": q, "mode": "PLAN", "max_new_tokens": 40, "plan": {"k": 2}})
    assert r.status_code == 200, r.text
    plan = r.json()["plan"]
    assert plan["given_steps"] == [] and 1 <= len(plan["plan"]) <= 2 and all(p["decoded"] for p in plan["plan"])
    assert r.json()["text"].startswith(f"Step 1: {plan['plan'][0]['text']}")
    H = np.zeros((1, 576)).tolist()
    assert smol_client.post("/decode", json={"latents": H}).status_code == 200
