"""`GET /health`, `GET /metrics` (Prometheus) and `POST /admin/reload`."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Response

from rjepa_serve.deps import Service
from rjepa_serve.schemas import HealthResponse, ReloadResponse

router = APIRouter()


@router.get("/health", response_model=HealthResponse, tags=["service"])
async def health(svc: Service) -> HealthResponse:
    """Which checkpoint is served (or why none is), for which LLM, on which device, since when; `serving` says
    whether it is the llm's own checkpoint or another llm's read through a latent adapter."""
    ms = svc.current
    status = (
        "ok"
        if ms is not None
        else ("no_checkpoint" if svc.last_error is None or "materialize" in svc.last_error else "error")
    )
    return HealthResponse(
        status=status,
        checkpoint_id=ms.checkpoint_id if ms else None,
        llm_tag=ms.llm_tag if ms else svc.settings.llm_tag,
        dataset_version=ms.dataset_version if ms else None,
        hidden_size=ms.hidden_size if ms else None,
        device=svc.settings.resolved_device(),
        student_loaded=bool(ms is not None and ms.student is not None),
        uptime_s=round(svc.uptime(), 3),
        loaded_at=ms.loaded_at if ms else None,
        message=svc.last_error if ms is None else (ms.student_error or svc.last_error),
        serving=ms.serving if ms else None,
        adapter_id=ms.adapter_id if ms else None,
        reference_llm=ms.reference_llm if ms else None,
    )


@router.get("/metrics", tags=["service"], response_class=Response)
async def metrics(svc: Service) -> Response:
    """Prometheus text format: requests, latency histograms, errors, reloads, served model."""
    return Response(svc.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


@router.post("/admin/reload", response_model=ReloadResponse, tags=["service"])
async def reload(svc: Service, x_admin_token: Annotated[str | None, Header()] = None) -> ReloadResponse:
    """Load the LATEST checkpoint now instead of waiting for the next poll."""
    token = svc.settings.admin_token
    if token is not None and not hmac.compare_digest((x_admin_token or "").encode(), token.get_secret_value().encode()):
        raise HTTPException(403, detail="POST /admin/reload needs the X-Admin-Token header (RJEPA_ADMIN_TOKEN)")
    changed, message = await svc.reload()
    ms = svc.current
    return ReloadResponse(changed=changed, checkpoint_id=ms.checkpoint_id if ms else None, message=message)
