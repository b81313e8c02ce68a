"""`POST /score` (latents or text in) and `POST /predict_masked` (latents in): JEPA-loss / predictions out."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, HTTPException

from rjepa_serve import engine
from rjepa_serve.deps import Service, client_error, require_model, run_model
from rjepa_serve.schemas import (
    ChainScoreOut,
    PredictMaskedRequest,
    PredictMaskedResponse,
    ScoreRequest,
    ScoreResponse,
)
from rjepa_serve.settings import ServeSettings
from rjepa_serve.state import ModelState

router = APIRouter(tags=["model"])


def as_matrix(latents: list[list[float]], ms: ModelState, max_steps: int, where: str) -> np.ndarray:
    """(num_steps, hidden) float32, checked against the checkpoint's width and the step caps."""
    H64 = np.asarray(latents, dtype=np.float64)  # (S, Dh)
    if H64.shape[1] != ms.hidden_size:
        raise client_error(
            f"{where}: latent width {H64.shape[1]} does not match hidden size {ms.hidden_size} of checkpoint "
            f"{ms.checkpoint_id} (llm {ms.llm_tag}): send latents of that student, or serve your llm through its "
            "calibration adapter (materialize `calibration_adapter` for it, then run the service with "
            "RJEPA_LLM_TAG=<your llm>)"
        )
    cap = min(max_steps, ms.max_steps)
    if H64.shape[0] > cap:
        raise client_error(
            f"{where}: {H64.shape[0]} steps is above the limit of {cap} steps per chain: send fewer steps"
        )
    if np.abs(H64).max() > np.finfo(np.float32).max:  # finite doubles can still overflow float32
        raise client_error(f"{where}: values overflow float32: latents must be finite float32 numbers")
    return H64.astype(np.float32)


def as_question(q: list[float] | None, ms: ModelState, where: str) -> np.ndarray | None:
    """(hidden,) float32 question latent checked against the checkpoint's width, or None."""
    if q is None:
        return None
    Q = as_matrix([q], ms, 1, where)  # (1, Dh)
    return Q[0]


def text_chains(req: ScoreRequest, ms: ModelState, s: ServeSettings) -> list[engine.TextChain]:
    """The request's text chains cut into steps and checked against the service's and the checkpoint's caps."""
    texts = req.all_texts()
    single = req.chains is None
    out = []
    for i, t in enumerate(texts):
        where = "chain" if single else f"chains[{i}]"
        if len(t.question) > s.max_prompt_chars:
            raise client_error(
                f"{where}: question has {len(t.question)} characters, above the limit of {s.max_prompt_chars}: "
                "shorten it"
            )
        size = len(t.text) if t.text is not None else sum(len(x) for x in t.steps)
        if size > s.max_candidate_chars:
            raise client_error(
                f"{where}: the chain has {size} characters, above the limit of {s.max_candidate_chars}: shorten it"
            )
        try:
            chain = engine.text_chain(t.question, t.steps, t.text, t.domain, where)
        except ValueError as exc:
            raise client_error(str(exc)) from exc
        cap = min(s.max_steps, ms.max_steps)
        if len(chain.steps) > cap:
            raise client_error(
                f"{where}: {len(chain.steps)} steps is above the limit of {cap} steps per chain: send fewer steps"
            )
        out.append(chain)
    return out


@router.post("/score", response_model=ScoreResponse)
async def score(req: ScoreRequest, svc: Service) -> ScoreResponse:
    """JEPA-loss, per-step surprise and calibrated 0-1 score of one chain or a batch, as latents or as text.

    Text (`question` + `steps` or `text`, or a batch `chains`) is extracted by the served student first,
    so it needs the student loaded (else 503, and latents still work).
    """
    n = len(req.chains or []) if req.chains is not None else len(req.sequences or [None])
    cap = svc.settings.max_sequences
    if n > cap:
        what = "chains" if req.is_text else "sequences"
        raise client_error(f"{n} {what} is above the limit of {cap} per request: split the batch")
    if req.is_text:
        ms = require_model(svc)  # after the body's validation: a malformed request is a 422 even with no model
        if ms.student is None:
            raise HTTPException(
                503,
                detail="scoring text needs the student LLM to extract step latents and none is loaded "
                f"({ms.student_error or 'load_student is off'}): send `latents` instead, or serve with the student",
            )
        chains = text_chains(req, ms, svc.settings)
        out = await run_model(svc, engine.score_texts, ms, chains)
        return ScoreResponse(results=[ChainScoreOut(**r) for r in out], checkpoint_id=ms.checkpoint_id)
    ms = require_model(svc)  # after the body's validation: a malformed request is a 422 even with no model
    seqs = req.all_sequences()
    where = "latents" if req.sequences is None else "sequences[{}].latents"
    mats = [as_matrix(s.latents, ms, svc.settings.max_steps, where.format(i)) for i, s in enumerate(seqs)]
    qwhere = "question_latent" if req.sequences is None else "sequences[{}].question_latent"
    qs = [as_question(s.question_latent, ms, qwhere.format(i)) for i, s in enumerate(seqs)]
    out = await run_model(svc, engine.score_chains, ms, mats, [s.domain for s in seqs], qs, scoring=True)
    return ScoreResponse(results=[ChainScoreOut(**r) for r in out], checkpoint_id=ms.checkpoint_id)


@router.post("/predict_masked", response_model=PredictMaskedResponse)
async def predict_masked(req: PredictMaskedRequest, svc: Service) -> PredictMaskedResponse:
    """Predict the latents of steps `indices` from the other steps (indices past the end predict future steps)."""
    ms = require_model(svc)  # after the body's validation: a malformed request is a 422 even with no model
    H = as_matrix(req.latents, ms, svc.settings.max_steps, "latents")
    bad = [i for i in req.indices if i >= ms.max_steps]
    if bad:
        raise client_error(f"indices {bad} are outside [0, {ms.max_steps}): the checkpoint covers {ms.max_steps} steps")
    if set(range(H.shape[0])) <= set(req.indices):
        raise client_error("every step is masked: leave at least one step of `latents` visible as context")
    q = as_question(req.question_latent, ms, "question_latent")
    idx, pj, ph = await run_model(svc, engine.predict, ms, H, req.indices, req.domain, q, scoring=True)
    return PredictMaskedResponse(indices=idx, pred_jepa=pj, pred_hidden=ph, checkpoint_id=ms.checkpoint_id)
