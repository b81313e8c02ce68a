"""`POST /feedback` and `DELETE /feedback/user/{user_id}` (SPEC F14, logging half)."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Path

from rjepa_core.interactions import Interaction
from rjepa_serve import engine
from rjepa_serve.deps import Service, client_error, run_model
from rjepa_serve.schemas import DeleteUserResponse, FeedbackRequest, FeedbackResponse

router = APIRouter(tags=["feedback"])
log = logging.getLogger(__name__)


async def _score_rated(svc: Any, it: Interaction) -> dict[str, Any] | None:
    """The served model's JEPA score of a rated answer the service did not write itself (None when it cannot).

    Feedback validation (SPEC F14) trusts only a score computed here, never one a client sends.
    """
    ms = svc.current
    if ms is None or ms.student is None or not it.prompt or not it.steps:
        return None
    if len(it.prompt) > svc.settings.max_prompt_chars:
        return None
    text = it.answer or "\n".join(it.steps)
    try:
        ranked = await run_model(svc, engine.score_written, ms, it.prompt, text, list(it.steps), None, None)
    except Exception as exc:  # a rating is recorded even when its answer cannot be scored
        log.info("feedback answer not scored: %s", exc)
        return None
    best = ranked.outs[ranked.best_index]
    if best["jepa_loss"] is None:
        return None
    it.llm_tag, it.checkpoint_id = ms.llm_tag, ms.checkpoint_id
    return {"jepa_loss": best["jepa_loss"], "score01": best["score01"], "step_surprise": best["step_surprise"]}


@router.post("/feedback", response_model=FeedbackResponse)
async def feedback(req: FeedbackRequest, svc: Service) -> FeedbackResponse:
    """Thumbs up/down on an answer; the text is kept (PII-filtered) only with consent."""
    known = svc.recent.get(req.interaction_id)
    if known is not None:
        it = Interaction(**known, source="server")
    else:
        if req.prompt is None and req.answer is None and req.interaction_id is None:
            raise client_error("send the interaction_id returned by /chat, or the prompt and answer rated")
        it = Interaction(prompt=req.prompt, answer=req.answer, steps=list(req.steps or []), mode=req.mode or "OFF")
        if req.consent and svc.settings.collect_text:  # only text that may be trained on is worth scoring
            it.jepa = await _score_rated(svc, it)
    it.rating = req.rating
    it.consent = req.consent
    it.user_id = req.user_id
    it.comment = req.comment
    it.interaction_id = req.interaction_id
    rec = await asyncio.to_thread(svc.interactions.append, it)
    svc.metrics.feedback.labels(rating=req.rating, consent=str(req.consent).lower()).inc()
    return FeedbackResponse(
        recorded=True,
        interaction_id=rec["interaction_id"],
        text_kept=rec["text_kept"],
        source=rec["source"],
        date=rec["created_at"][:10],
    )


@router.delete("/feedback/user/{user_id:path}", response_model=DeleteUserResponse)
async def delete_user(user_id: Annotated[str, Path(min_length=1, max_length=200)], svc: Service) -> DeleteUserResponse:
    """Remove every interaction of one user from all interaction files (each file rewritten atomically)."""
    removed = await asyncio.to_thread(svc.interactions.delete_user, user_id)
    return DeleteUserResponse(removed=removed)
