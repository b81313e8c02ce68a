"""`POST /rerank`, `POST /chat` (modes OFF, RERANK, NUDGE, PLAN; SPEC F11) and `POST /decode` (F12)."""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter

from rjepa_serve import engine
from rjepa_serve.deps import Service, client_error, require_decoder, require_generator, run_model
from rjepa_serve.schemas import (
    CandidateOut,
    ChatRequest,
    ChatResponse,
    DecodeRequest,
    DecodeResponse,
    JepaDetails,
    NudgeOut,
    NudgeParams,
    PlanOut,
    PlanParams,
    PlanStepOut,
    RerankRequest,
    RerankResponse,
    StepTraceOut,
)
from rjepa_serve.settings import ServeSettings

router = APIRouter(tags=["generation"])


def _check_prompt(prompt: str, s: ServeSettings) -> str:
    if not prompt.strip():
        raise client_error("prompt is blank: send the problem statement")
    if len(prompt) > s.max_prompt_chars:
        raise client_error(f"prompt has {len(prompt)} characters, above the limit of {s.max_prompt_chars}: shorten it")
    return prompt


def _check_k(k: int, s: ServeSettings, what: str) -> None:
    if k > s.max_candidates:
        raise client_error(f"{what}={k} is above the limit of {s.max_candidates} candidates: ask for fewer")


def _new_tokens(requested: int | None, s: ServeSettings) -> int:
    if requested is not None and requested > s.max_new_tokens:
        raise client_error(f"max_new_tokens={requested} is above the limit of {s.max_new_tokens}: ask for fewer")
    return requested or min(s.default_new_tokens, s.max_new_tokens)


@router.post("/rerank", response_model=RerankResponse)
async def rerank(req: RerankRequest, svc: Service) -> RerankResponse:
    """Rank given candidate chains (or K chains sampled from the student) by the composite JEPA score."""
    ms = require_generator(svc)  # after the body's validation: a malformed request is a 422 even with no model
    s = svc.settings
    prompt = _check_prompt(req.prompt, s)
    weights = ms.weights
    if req.weights is not None:
        from rjepa_core.inference.rerank import RerankWeights

        weights = RerankWeights(req.weights.alpha, req.weights.beta, req.weights.gamma)

    def work():
        if req.candidates is not None:
            full, cands = engine.candidates_from_texts(ms, prompt, list(req.candidates))
        else:
            k = req.k or min(4, s.max_candidates)
            n = _new_tokens(req.max_new_tokens, s)
            full, cands = engine.candidates_from_samples(ms, prompt, k, req.sampling_temperature(), n, req.seed)
        return engine.rank(ms, full, cands, weights, req.domain, req.selection)

    if req.candidates is not None:
        _check_k(len(req.candidates), s, "len(candidates)")
        for i, c in enumerate(req.candidates):
            if len(c) > s.max_candidate_chars:
                raise client_error(
                    f"candidates[{i}] has {len(c)} characters, above the limit of {s.max_candidate_chars}"
                )
    else:
        _check_k(req.k or 1, s, "k")
        _new_tokens(req.max_new_tokens, s)
    ranked = await run_model(svc, work)
    svc.metrics.candidates.observe(len(ranked.outs))
    outs = [CandidateOut(**o) for o in ranked.outs]
    return RerankResponse(
        best_index=ranked.best_index,
        best=outs[ranked.best_index],
        candidates=outs,
        order=ranked.order,
        weights={"alpha": weights.alpha, "beta": weights.beta, "gamma": weights.gamma},
        selection=req.selection,
        checkpoint_id=ms.checkpoint_id,
    )


def _nudge_out(result, budget: int, source: str) -> NudgeOut:
    return NudgeOut(
        trace=[StepTraceOut(**t.to_dict()) for t in result.trace],
        nudged_steps=result.nudged_steps,
        tokens_used=result.tokens_used,
        chain_tokens=result.chain_tokens,
        budget_tokens=budget,
        threshold_source=source,
        latents=result.latents,
        latent_fallbacks=result.latent_fallbacks,
    )


def _plan_out(result, verbalise: str) -> PlanOut:
    return PlanOut(
        given_steps=result.given_steps,
        plan=[PlanStepOut(**vars(p)) for p in result.plan],
        verbalise=verbalise,
        tokens_used=result.tokens_used,
        notes=result.notes,
    )


@router.post("/chat", response_model=ChatResponse)
async def chat(req: ChatRequest, svc: Service) -> ChatResponse:
    """Answer a problem: OFF = one chain from the student; RERANK = the best of K chains by JEPA; NUDGE = step by
    step, surprising steps regenerated toward R-JEPA's prediction; PLAN = R-JEPA proposes the next steps."""
    ms = require_generator(svc)  # after the body's validation: a malformed request is a 422 even with no model
    s = svc.settings
    start = time.perf_counter()
    prompt = _check_prompt(req.prompt, s)
    k = req.k if req.mode == "RERANK" else 1
    _check_k(k, s, "k")
    n = _new_tokens(req.max_new_tokens, s)
    temperature = req.sampling_temperature()
    nudge_params = req.nudge or NudgeParams()
    plan_params = req.plan or PlanParams()
    if req.mode == "NUDGE":
        _check_k(nudge_params.m, s, "nudge.m")
        if nudge_params.budget_tokens is not None and nudge_params.budget_tokens > s.max_candidates * s.max_new_tokens:
            raise client_error(
                f"nudge.budget_tokens={nudge_params.budget_tokens} is above the limit of "
                f"{s.max_candidates * s.max_new_tokens} (max_candidates x max_new_tokens): ask for fewer"
            )
    decoder = require_decoder(ms) if req.mode == "PLAN" or (req.mode == "NUDGE" and nudge_params.alpha > 0) else None
    if req.mode == "PLAN":
        total = len(plan_params.steps) + plan_params.k
        if total > s.max_steps:
            raise client_error(
                f"plan.steps ({len(plan_params.steps)}) + plan.k ({plan_params.k}) = {total} steps, above the limit "
                f"of {s.max_steps} (max_steps): plan fewer"
            )
        for i, step in enumerate(plan_params.steps):
            if len(step) > s.max_candidate_chars:
                raise client_error(f"plan.steps[{i}] has {len(step)} characters, above {s.max_candidate_chars}")
    extra: dict = {}

    def work():
        if req.mode == "NUDGE":
            result, budget, source = engine.nudge_chain(
                ms, decoder, prompt, nudge_params, n, temperature, req.seed, req.domain
            )
            extra["nudge"] = _nudge_out(result, budget, source)
            return engine.score_written(ms, prompt, result.text, result.steps, result.final_answer, req.domain)
        if req.mode == "PLAN":
            result = engine.plan_chain(ms, decoder, prompt, plan_params, n, temperature, req.seed, req.domain)
            extra["plan"] = _plan_out(result, plan_params.verbalise)
            return engine.score_written(ms, prompt, result.text, result.steps, result.final_answer, req.domain)
        full, cands = engine.candidates_from_samples(ms, prompt, k, temperature, n, req.seed)
        return engine.rank(ms, full, cands, ms.weights, req.domain, req.selection)

    ranked = await run_model(svc, work)
    svc.metrics.candidates.observe(len(ranked.outs))
    best = ranked.outs[ranked.best_index]
    details = JepaDetails(
        jepa_loss=best["jepa_loss"],
        score01=best["score01"],
        step_surprise=best["step_surprise"],
        step_z=best["step_z"],
        surprising_steps=engine.surprising_steps(best["step_surprise"], best["step_z"]),
        first_unlawful_step=best.get("first_unlawful_step"),
        candidates=[CandidateOut(**o) for o in ranked.outs] if req.mode == "RERANK" else [],
    )
    resp = ChatResponse(
        interaction_id=uuid.uuid4().hex,
        mode=req.mode,
        answer=best["final_answer"] or best["text"],
        text=best["text"],
        steps=best["steps"],
        final_answer=best["final_answer"],
        jepa=details,
        llm_tag=ms.llm_tag,
        checkpoint_id=ms.checkpoint_id,
        latency_ms=round((time.perf_counter() - start) * 1000, 1),
        **extra,
    )
    svc.recent.put(
        resp.interaction_id,
        {
            "prompt": prompt,
            "answer": resp.answer,
            "steps": resp.steps,
            "final_answer": resp.final_answer,
            "mode": resp.mode,
            "jepa": {
                "jepa_loss": details.jepa_loss,
                "score01": details.score01,
                "step_surprise": details.step_surprise,
            },
            "num_candidates": len(ranked.outs),
            "llm_tag": ms.llm_tag,
            "checkpoint_id": ms.checkpoint_id,
            "extra": {"temperature": req.sampling_temperature(), "latency_ms": resp.latency_ms},
        },
    )
    return resp


@router.post("/decode", response_model=DecodeResponse)
async def decode(req: DecodeRequest, svc: Service) -> DecodeResponse:
    """Verbalise step latents with the latent decoder of the served checkpoint's student and dataset version."""
    ms = require_generator(svc)  # the decoder writes the student's tokens: it needs the student's tokenizer
    if len(req.latents) > svc.settings.max_steps:
        raise client_error(f"{len(req.latents)} latents, above the limit of {svc.settings.max_steps}: send fewer")
    decoder = require_decoder(ms)
    texts = await run_model(svc, engine.decode_latents, ms, decoder, req.latents, req.max_tokens)
    metrics = (decoder.meta.get("metrics") or {}).get("held_out") or {}
    return DecodeResponse(
        texts=texts,
        llm_tag=ms.llm_tag,
        dataset_version=ms.dataset_version,
        checkpoint_id=ms.checkpoint_id,
        decoder={k: metrics[k] for k in ("n", "token_accuracy", "exact_match", "numeric_accuracy") if k in metrics},
    )
