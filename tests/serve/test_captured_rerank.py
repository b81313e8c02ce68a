"""RERANK scores sampled candidates from the latents captured while sampling: no second forward over them."""

from __future__ import annotations

import pytest

from rjepa_serve import engine


class ForwardLog:
    """Sequence length of every forward of the served student's model (a pre-hook on the real model)."""

    def __init__(self, model) -> None:
        self.model, self.lengths = model, []

    def __enter__(self) -> ForwardLog:
        self.handle = self.model.register_forward_pre_hook(self._log, with_kwargs=True)
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()

    def _log(self, _module, args, kwargs) -> None:
        self.lengths.append(int(kwargs.get("input_ids", args[0] if args else None).shape[1]))


def test_rerank_of_sampled_candidates_runs_no_second_forward(client):
    ms = client.app.state.service.current
    body = {"prompt": "What is 2 + 5?", "k": 3, "seed": 0, "max_new_tokens": 16, "domain": "math"}
    with ForwardLog(ms.student.model) as log:
        r = client.post("/rerank", json=body)
    assert r.status_code == 200, r.text
    # one prefill, then one token per decode step (and capture's extra step): no forward over whole candidates
    assert log.lengths[0] > 1 and log.lengths[1:] and set(log.lengths[1:]) == {1}
    out = r.json()["candidates"]
    assert all(c["jepa_loss"] is not None for c in out if c["steps"])

    # the scores are those of these very samples' captured latents (same seed, same chains)
    _, cands = engine.candidates_from_samples(ms, body["prompt"], 3, 0.7, 16, 0)
    assert [c["text"] for c in out] == [c.text for c in cands]
    scorable = [c for c in cands if c.steps]
    assert scorable and all(c.H is not None and c.H.shape[0] == len(c.steps) for c in scorable)
    scores = ms.scorer.score([c.H for c in scorable], ["math"] * len(scorable), [c.Q for c in scorable])
    got = [c["jepa_loss"] for c in out if c["steps"]]
    assert got == pytest.approx([float(s.jepa_loss) for s in scores], rel=1e-6)


def test_given_candidate_texts_are_still_extracted(client):
    """Texts from the client carry no latents: the student runs over them (the path capture replaces)."""
    ms = client.app.state.service.current
    body = {"prompt": "What is 2 + 5?", "candidates": ["Step 1: 2 + 5 = 7\nAnswer: 7", "Step 1: 2 + 5 = 8\nAnswer: 8"]}
    with ForwardLog(ms.student.model) as log:
        r = client.post("/rerank", json=body)
    assert r.status_code == 200, r.text
    assert len([n for n in log.lengths if n > 1]) >= 2  # log-probs, then teacher-forced extraction
