"""The FastAPI service (SPEC F17): `create_app(settings)` and `serve(host, port, settings)`.

    >>> from fastapi.testclient import TestClient
    >>> from rjepa_serve.app import create_app
    >>> from rjepa_serve.settings import ServeSettings
    >>> with TestClient(create_app(ServeSettings(storage="/tmp/empty", load_student=False))) as c:
    ...     c.get("/health").json()["status"]
    'no_checkpoint'

The lifespan follows the LATEST pointer of the configured llm (published by the `jepa_checkpoint`
asset), loads that checkpoint and the matching student, and polls the pointer every
`reload_interval_s` seconds. With nothing published the service still starts: /health says so and
the model routes answer 503 naming the asset to materialize.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from rjepa_serve.metrics import Metrics
from rjepa_serve.routes import feedback, generation, health, page, scoring
from rjepa_serve.settings import ServeSettings
from rjepa_serve.state import ServiceState

log = logging.getLogger(__name__)
BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class BodyLimitMiddleware:
    """413 for bodies above the limit: by Content-Length up front, else by counting the streamed chunks."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _reject(self, send: Any, size: str) -> None:
        body = (
            f'{{"detail":"request body of {size} bytes is above the limit of {self.max_bytes} bytes: '
            f'send fewer or shorter sequences (RJEPA_MAX_BODY_BYTES)"}}'
        ).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared > self.max_bytes:
                return await self._reject(send, str(declared))
        # Buffer the body (bounded by the limit) so a chunked upload is cut off before the app parses it.
        messages, total = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                messages.append(message)
                break
            total += len(message.get("body", b""))
            if total > self.max_bytes:
                return await self._reject(send, f"more than {self.max_bytes}")
            messages.append(message)
            if not message.get("more_body", False):
                break

        async def replay() -> Any:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


class MetricsMiddleware:
    """Count requests and time them per route template (not per raw path, to bound label cardinality)."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe(scope["method"], route, status["code"], time.perf_counter() - start)


def _readable(errors: list[dict[str, Any]]) -> str:
    parts = []
    for e in errors:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
        parts.append(f"{loc}: {e.get('msg', 'invalid')}")
    return "; ".join(parts[:5]) + (f" (and {len(parts) - 5} more)" if len(parts) > 5 else "")


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
    return JSONResponse(status_code=422, content={"detail": _readable(errors), "errors": errors})


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(status_code=500, content={"detail": f"internal error ({type(exc).__name__}); see the logs"})


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    """The service app; nothing is loaded until the lifespan starts (TestClient context or uvicorn)."""
    settings = settings or ServeSettings()
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import torch

        from rjepa_serve.state import open_interaction_log

        torch.set_num_threads(settings.torch_threads)
        svc = ServiceState(settings, metrics=metrics, interactions=open_interaction_log(settings))
        app.state.service = svc
        await svc.reload()
        poller = asyncio.create_task(svc.poll()) if settings.reload_interval_s > 0 else None
        try:
            yield
        finally:
            if poller is not None:
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller
            await svc.publish()  # object storage: what was logged since the last poll
            svc.runner.shutdown()
            svc.scoring_runner.shutdown()

    app = FastAPI(
        title="rjepa",
        summary="R-JEPA scoring, reranking and chat over the latest published checkpoint",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
    for module in (health, scoring, generation, feedback, page):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=Path(page.STATIC_DIR)), name="static")
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def serve(host: str = "127.0.0.1", port: int = 8000, settings: ServeSettings | None = None) -> None:
    """`rjepa serve`: run the app under uvicorn (settings from RJEPA_* environment variables by default)."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
