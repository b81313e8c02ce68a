"""RJEPAClient against a real uvicorn server on 127.0.0.1 (numpy, torch and list latents)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rjepa_serve.client import RJEPAClient, RJEPAError
from tests.serve.conftest import HIDDEN


@pytest.fixture(scope="module")
def api(live_server):
    with RJEPAClient(live_server.url, timeout=60) as c:
        yield c


def test_health_and_metrics(api):
    assert api.health()["checkpoint_id"] == "run-a"
    assert "rjepa_requests_total" in api.metrics()


def test_score_accepts_numpy_torch_and_lists(api):
    H = np.random.default_rng(0).standard_normal((4, HIDDEN)).astype(np.float32)
    from_np = api.score(H, domains="math")
    from_torch = api.score(torch.from_numpy(H), domains="math")
    from_list = api.score(H.tolist(), domains="math")
    assert len(from_np) == 1 and len(from_np[0]["step_surprise"]) == 4
    assert from_np == from_torch == from_list
    batch = api.score([H, H[:2]])
    assert [len(r["step_surprise"]) for r in batch] == [4, 2]
    assert batch[0]["jepa_loss"] == pytest.approx(api.score(H)[0]["jepa_loss"])
    assert len(api.score(np.stack([H, H]))) == 2


def test_score_sends_text_chains(api):
    question = "What is (3 + 4) * 2?"
    [as_text] = api.score(question=question, chain="Step 1: 3 + 4 = 7\nStep 2: 7 * 2 = 14\nAnswer: 14")
    [as_steps] = api.score(question=question, chain=["3 + 4 = 7", "7 * 2 = 14"])
    assert as_text["steps"] == as_steps["steps"] == ["3 + 4 = 7", "7 * 2 = 14"]
    assert as_text["jepa_loss"] == pytest.approx(as_steps["jepa_loss"], rel=1e-5)
    batch = api.score(chains=[(question, ["3 + 4 = 7"]), (question, "7 * 2 = 14")], domains=["math", None])
    assert [r["steps"] for r in batch] == [["3 + 4 = 7"], ["7 * 2 = 14"]]
    [alone] = api.score(question=question, chain=["3 + 4 = 7"], domains="math")
    assert batch[0]["jepa_loss"] == pytest.approx(alone["jepa_loss"], rel=1e-5)
    with pytest.raises(ValueError, match="both"):
        api.score(question=question)
    with pytest.raises(ValueError, match="not both"):
        api.score(np.zeros((2, HIDDEN)), question=question, chain="1 + 1 = 2")
    with pytest.raises(RJEPAError) as err:
        api.score(question=question, chain="Answer: 14")
    assert err.value.status == 422 and "no step found" in str(err.value.detail)


def test_score_and_predict_send_question_latents(api):
    rng = np.random.default_rng(1)
    H, q = rng.standard_normal((3, HIDDEN)).astype(np.float32), rng.standard_normal(HIDDEN).astype(np.float32)
    single = api.score(H, "math", questions=q)
    assert single == api.score(H, "math", questions=torch.from_numpy(q)) == api.score([H], "math", questions=[q])
    assert single[0]["jepa_loss"] != api.score(H, "math")[0]["jepa_loss"]
    both = api.score([H, H], "math", questions=[q, None])
    assert both[0]["jepa_loss"] == pytest.approx(single[0]["jepa_loss"])
    assert both[1]["jepa_loss"] == pytest.approx(api.score(H, "math")[0]["jepa_loss"])
    with pytest.raises(ValueError, match="2 chains but 1 question"):
        api.score([H, H], questions=[q])
    with pytest.raises(ValueError, match="1-D"):
        api.predict_masked(H, [1], question=H)
    p = api.predict_masked(H, [1], question=q)
    assert not np.allclose(p["pred_jepa"], api.predict_masked(H, [1])["pred_jepa"])


def test_predict_masked_returns_arrays(api):
    H = torch.randn(3, HIDDEN)
    out = api.predict_masked(H, [1, 3])
    assert out["indices"] == [1, 3]
    assert out["pred_hidden"].shape == (2, HIDDEN) and out["pred_jepa"].dtype == np.float32


def test_rerank_chat_feedback_delete(api):
    rr = api.rerank("2 + 3?", candidates=["Step 1: 2 + 3 = 5\nAnswer: 5", "Step 1: 2 + 3 = 6\nAnswer: 6"])
    assert rr["best_index"] in (0, 1) and len(rr["candidates"]) == 2
    sampled = api.rerank("2 + 3?", k=2, seed=0, max_new_tokens=8)
    assert len(sampled["candidates"]) == 2
    chat = api.chat("What is 2 + 3?", mode="RERANK", k=2, seed=0, max_new_tokens=8)
    assert len(chat["jepa"]["candidates"]) == 2
    fb = api.feedback("up", interaction_id=chat["interaction_id"], consent=True, user_id="client user/1")
    assert fb["source"] == "server" and fb["text_kept"] is True
    assert api.delete_user("client user/1") == 1
    assert api.reload()["changed"] is False


def test_errors_raise_with_status_and_message(api):
    with pytest.raises(RJEPAError) as e:
        api.score(np.zeros((2, 5)))
    assert e.value.status == 422 and "hidden size" in str(e.value.detail)
    with pytest.raises(ValueError, match="2-D"):
        api.predict_masked(np.zeros(5), [0])
