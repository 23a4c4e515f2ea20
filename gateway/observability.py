"""Health, readiness and Prometheus metrics under /.gateway/."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from gateway.context import context_of
from gateway.paths import PREFIX

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# A check raises when its dependency is not ready; it may return a detail (e.g. a warning).
ReadinessCheck = Callable[[], Awaitable[str | None]]

READINESS_TIMEOUT = 2.0
# Labelled series kept at hand per label values, at most this many (methods are the client's
# to choose; past the bound a series is looked up each time, as prometheus_client does).
MAX_KEPT_SERIES = 1024


@dataclass
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    upstream_errors: Counter
    lookups: Counter
    request_io: Counter
    # The series of each (route class, method, status) and of each I/O kind: prometheus_client's
    # labels() validates and locks on every call, several microseconds on every request.
    _answered: dict[tuple[str, str, int], tuple[Any, Any]] = field(default_factory=dict)
    _io: dict[str, Any] = field(default_factory=dict)

    def answered(self, route: str, method: str, status: int, seconds: float) -> None:
        """A request answered: counted by route class, method and status; its time observed."""
        series = self._answered.get((route, method, status))
        if series is None:
            series = (self.requests.labels(route, method, str(status)), self.latency.labels(route))
            if len(self._answered) < MAX_KEPT_SERIES:
                self._answered[route, method, status] = series
        series[0].inc()
        series[1].observe(seconds)

    def request_made_io(self, kind: str, count: int) -> None:
        series = self._io.get(kind)
        if series is None:
            series = self.request_io.labels(kind)
            if len(self._io) < MAX_KEPT_SERIES:
                self._io[kind] = series
        series.inc(count)

    @classmethod
    def create(cls) -> Metrics:
        # One registry per app: no process-global state, so two apps in one test process are fine.
        registry = CollectorRegistry()
        return cls(
            registry=registry,
            requests=Counter(
                "gateway_requests",
                "Requests answered, by route class, method and status",
                ["route_class", "method", "status"],
                registry=registry,
            ),
            latency=Histogram(
                "gateway_request_duration_seconds",
                "Time from request received to response finished, by route class",
                ["route_class"],
                registry=registry,
                buckets=(
                    0.001,
                    0.0025,
                    0.005,
                    0.01,
                    0.025,
                    0.05,
                    0.1,
                    0.25,
                    0.5,
                    1,
                    2.5,
                    5,
                    10,
                    30,
                ),
            ),
            upstream_errors=Counter(
                "gateway_upstream_errors",
                "Requests MLflow did not answer (unreachable, timeout, cut mid-response)",
                ["route_class", "kind"],
                registry=registry,
            ),
            lookups=Counter(
                "gateway_mlflow_lookups",
                "Calls the gateway made to MLflow to judge requests (what a request names and "
                "which experiment owns it), by kind; remembered answers are not counted",
                ["kind"],
                registry=registry,
            ),
            request_io=Counter(
                "gateway_request_io",
                "SQL statements, Redis round trips and MLflow lookups made on requests' own paths",
                ["kind"],
                registry=registry,
            ),
        )

    def watch_audit(self, writer: Any) -> None:
        """Gauges read from the audit writer at scrape time."""
        spool = Gauge(
            "gateway_audit_spool_bytes", "Audit events waiting on disk", registry=self.registry
        )
        spool.set_function(lambda: writer.state.spooled_bytes)
        near = Gauge(
            "gateway_audit_spool_near_bound",
            "1 when the spool is above 80% of its bound",
            registry=self.registry,
        )
        near.set_function(lambda: 1 if writer.spool_near_bound else 0)
        dropped = Gauge(
            "gateway_audit_events_dropped", "Audit events lost (spool full)", registry=self.registry
        )
        dropped.set_function(lambda: writer.state.dropped)
        written = Gauge(
            "gateway_audit_events_written", "Audit events stored in Redis", registry=self.registry
        )
        written.set_function(lambda: writer.state.written)


def route_class(path: str) -> str:
    """A coarse, bounded label for metrics: never the raw path (unbounded cardinality)."""
    if path.startswith(PREFIX):
        return "gateway"
    for prefix, label in (
        ("/api/2.0/mlflow-artifacts/", "artifacts"),
        ("/ajax-api/2.0/mlflow-artifacts/", "artifacts"),
        ("/get-artifact", "artifacts"),
        ("/model-versions/get-artifact", "artifacts"),
        ("/api/", "api"),
        ("/ajax-api/", "ajax-api"),
        ("/graphql", "graphql"),
        ("/v1/traces", "otel"),
        ("/static-files/", "ui-static"),
        ("/gateway/", "ai-gateway"),
    ):
        if path.startswith(prefix):
            return label
    return "ui" if path in {"/", "/index.html"} else "other"


def metrics_middleware(metrics: Metrics) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def measure(request: web.Request, handler: Handler) -> web.StreamResponse:
        ctx = context_of(request)
        ctx.route_class = route_class(request.path)
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            metrics.answered(
                ctx.route_class, request.method, status, time.perf_counter() - ctx.started
            )
            if ctx.upstream_error:
                metrics.upstream_errors.labels(ctx.route_class, ctx.upstream_error).inc()
            for kind, count in ctx.io.items():
                metrics.request_made_io(kind, count)

    return measure


async def _run_check(check: ReadinessCheck) -> tuple[bool, str]:
    started = time.perf_counter()
    try:
        detail = await asyncio.wait_for(check(), READINESS_TIMEOUT)
    except TimeoutError:
        return False, f"no answer within {READINESS_TIMEOUT:g}s"
    except Exception as exc:  # any failure means "not ready"; the reason is reported, not raised
        return False, f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    return True, detail or f"ok in {1000 * (time.perf_counter() - started):.0f} ms"


class Observability:
    def __init__(self, metrics: Metrics, checks: dict[str, ReadinessCheck]) -> None:
        self.metrics = metrics
        self.checks = checks

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        names = list(self.checks)
        results = await asyncio.gather(*(_run_check(self.checks[name]) for name in names))
        dependencies = {
            name: {"ready": ok, "detail": detail}
            for name, (ok, detail) in zip(names, results, strict=True)
        }
        ready = all(ok for ok, _ in results)
        return web.json_response(
            {"status": "ready" if ready else "not ready", "dependencies": dependencies},
            status=200 if ready else 503,
        )

    async def metrics_page(self, request: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def http_check(session_factory: Callable[[], aiohttp.ClientSession], url: str) -> ReadinessCheck:
    async def check() -> None:
        async with session_factory().get(url, allow_redirects=False) as response:
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status} from {url}")
        return None

    return check
