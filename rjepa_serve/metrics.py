"""Prometheus metrics of one app (its own registry, so several apps can live in one process).

>>> m = Metrics()
>>> m.requests.labels(method="GET", route="/health", status="200").inc()
>>> b"rjepa_requests_total" in m.render()
True
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("rjepa_requests", "HTTP requests", ["method", "route", "status"], registry=r)
        self.latency = Histogram(
            "rjepa_request_latency_seconds", "request latency", ["route"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.errors = Counter("rjepa_errors", "responses with status >= 400", ["route", "kind"], registry=r)
        self.model_info = Gauge(
            "rjepa_model_info",
            "served checkpoint (1 = current)",
            ["checkpoint_id", "llm_tag", "dataset_version"],
            registry=r,
        )
        self.model_loaded = Gauge("rjepa_model_loaded", "1 when a checkpoint is served", registry=r)
        self.reloads = Counter("rjepa_reloads", "checkpoint reload attempts", ["result"], registry=r)
        self.feedback = Counter("rjepa_feedback", "feedback received", ["rating", "consent"], registry=r)
        self.candidates = Histogram(
            "rjepa_candidates", "candidates per rerank/chat", buckets=(1, 2, 4, 8, 16, 32, 64), registry=r
        )

    def set_model(self, checkpoint_id: str, llm_tag: str, dataset_version: str | None) -> None:
        self.model_info.clear()
        self.model_info.labels(checkpoint_id=checkpoint_id, llm_tag=llm_tag, dataset_version=dataset_version or "").set(
            1
        )
        self.model_loaded.set(1)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method=method, route=route, status=str(status)).inc()
        self.latency.labels(route=route).observe(seconds)
        if status >= 400:
            kind = "client" if status < 500 else "server"
            self.errors.labels(route=route, kind=kind).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
