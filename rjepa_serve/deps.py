"""Dependencies shared by the routes: the service, the model state (or a 503), and guarded model calls.

>>> # in a route:  async def score(req: ScoreRequest, svc: Service): ms = require_model(svc); ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Request

from rjepa_serve.state import (
    ModelState,
    ServiceBusy,
    ServiceOverloaded,
    ServiceState,
    ServiceTimeout,
    no_checkpoint_message,
)

T = TypeVar("T")


def get_service(request: Request) -> ServiceState:
    return request.app.state.service


Service = Annotated[ServiceState, Depends(get_service)]


def require_model(svc: ServiceState) -> ModelState:
    """The model state at the start of the request (a reload during the request does not change it), or a 503.

    Called first thing in a route's body rather than as a dependency: FastAPI solves dependencies before it
    validates the body, so a dependency's 503 would hide a malformed request's 422 while no checkpoint exists.
    """
    ms = svc.current
    if ms is None:
        msg = svc.last_error or no_checkpoint_message(svc.settings)
        raise HTTPException(503, detail=msg)
    return ms


def require_generator(svc: ServiceState) -> ModelState:
    """The model state with a loaded student LLM (for sampling), or a 503; see `require_model`."""
    ms = require_model(svc)
    if ms.student is None:
        raise HTTPException(503, detail=f"generation is unavailable: {ms.student_error or 'no student LLM loaded'}")
    return ms


def require_decoder(ms: ModelState) -> Any:
    """The served checkpoint's latent decoder (loaded on first use), or a 503 that says how to get one."""
    if ms.decoder is None:
        raise HTTPException(
            503, detail="the served checkpoint names no dataset version, so no latent decoder can be found for it"
        )
    try:
        return ms.decoder.get()
    except (RuntimeError, FileNotFoundError, ValueError) as exc:
        raise HTTPException(503, detail=str(exc)) from exc


def client_error(msg: str) -> HTTPException:
    return HTTPException(422, detail=msg)


async def run_model(svc: ServiceState, fn: Callable[..., T], *args: Any, scoring: bool = False) -> T:
    """Run on a model thread; client-fixable ValueErrors → 422, queue full → 429, busy → 503, too slow → 504."""
    runner = svc.scoring_runner if scoring else svc.runner
    try:
        return await runner.run(fn, *args, timeout=svc.settings.generation_timeout_s)
    except ValueError as exc:
        raise client_error(str(exc)) from exc
    except ServiceOverloaded as exc:
        raise HTTPException(429, detail=str(exc), headers={"Retry-After": str(exc.retry_after_s)}) from exc
    except ServiceBusy as exc:
        raise HTTPException(503, detail=str(exc), headers={"Retry-After": "5"}) from exc
    except ServiceTimeout as exc:
        raise HTTPException(504, detail=str(exc)) from exc
