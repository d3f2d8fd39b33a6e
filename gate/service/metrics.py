"""Prometheus metrics of the service (``GET /metrics``, read role)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics", "metrics_middleware"]


class Metrics:
    """One registry per app, so several apps in one process (tests) do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "gate_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "gate_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.submitted = Counter(
            "gate_releases_submitted_total", "Accepted submissions", registry=self.registry
        )
        self.conflicts = Counter(
            "gate_releases_conflicts_total", "Duplicate submissions", registry=self.registry
        )
        self.auth_failures = Counter(
            "gate_auth_failures_total", "Refused credentials", ["reason"], registry=self.registry
        )
        self.releases = Gauge("gate_releases", "Releases by status", ["status"], registry=self.registry)
        self.jobs = Gauge("gate_jobs", "Queue jobs by status", ["status"], registry=self.registry)

    def render(self) -> bytes:
        """The exposition text."""
        return generate_latest(self.registry)


def metrics_middleware(metrics: Metrics) -> Any:
    """ASGI middleware factory counting requests and their latency by route template."""

    def factory(app: Any) -> Any:
        async def middleware(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            start = time.perf_counter()
            status = {"code": 500}

            async def send_wrapper(message: Any) -> None:
                if message["type"] == "http.response.start":
                    status["code"] = message["status"]
                await send(message)

            try:
                await app(scope, receive, send_wrapper)
            except Exception as e:
                # Raised past us (auth refusals, 404s): the outer handler turns it into its status code.
                status["code"] = int(getattr(e, "status_code", 500))
                raise
            finally:
                route = scope.get("path_template") or "unmatched"
                method = scope.get("method", "GET")
                metrics.requests.labels(method, route, str(status["code"])).inc()
                metrics.latency.labels(method, route).observe(time.perf_counter() - start)

        return middleware

    return factory
