"""create_app(settings): wiring only — middlewares, routes, startup and cleanup."""

from __future__ import annotations

from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import Settings
from gateway.edge import edge_middleware
from gateway.errors import NOT_FOUND, mlflow_error
from gateway.observability import (
    Metrics,
    Observability,
    ReadinessCheck,
    http_check,
    metrics_middleware,
)
from gateway.proxy import MlflowProxy
from gateway.store.db import create_engine, ping

GATEWAY_PREFIX = "/.gateway/"

SETTINGS = web.AppKey("settings", Settings)
PROXY = web.AppKey("proxy", MlflowProxy)
REDIS = web.AppKey("redis", aioredis.Redis)
DATABASE = web.AppKey("database", AsyncEngine)
METRICS = web.AppKey("metrics", Metrics)


def create_app(settings: Settings) -> web.Application:
    if not settings.upstream_url:
        raise ValueError("settings.upstream_url is required")
    metrics = Metrics.create()
    app = web.Application(
        middlewares=[edge_middleware(settings.trusted_proxies), metrics_middleware(metrics)],
        # Bodies are streamed, never read whole by the gateway; this only bounds what aiohttp itself
        # would buffer if a handler ever called request.read().
        client_max_size=1024**2,
        handler_args={"max_field_size": 16 * 1024},
    )
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app[PROXY] = MlflowProxy(
        settings.upstream_url,
        keepalive=settings.upstream_keepalive,
        connect_timeout=settings.upstream_connect_timeout,
        read_timeout=settings.upstream_read_timeout,
    )
    app[REDIS] = aioredis.Redis.from_url(
        settings.redis_url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30
    )
    app[DATABASE] = create_engine(settings.effective_database_url)
    app.cleanup_ctx.append(_lifecycle)

    observability = Observability(
        metrics,
        checks={
            "mlflow": http_check(lambda: app[PROXY].session, f"{settings.upstream_url}/health"),
            "redis": _redis_check(app),
            "database": _database_check(app),
        },
    )
    app.router.add_get(GATEWAY_PREFIX + "healthz", observability.healthz)
    app.router.add_get(GATEWAY_PREFIX + "readyz", observability.readyz)
    app.router.add_get(GATEWAY_PREFIX + "metrics", observability.metrics_page)
    app.router.add_route("*", "/.gateway/{tail:.*}", _gateway_not_found)
    app.router.add_route("*", "/{tail:.*}", _forward)
    return app


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    await app[PROXY].start()
    yield
    await app[PROXY].close()
    await app[REDIS].aclose()
    await app[DATABASE].dispose()


async def _forward(request: web.Request) -> web.StreamResponse:
    return await request.app[PROXY].forward(request)


async def _gateway_not_found(request: web.Request) -> web.Response:
    return mlflow_error(NOT_FOUND, f"No gateway endpoint at {request.path}")


def _redis_check(app: web.Application) -> ReadinessCheck:
    async def check() -> None:
        await app[REDIS].ping()

    return check


def _database_check(app: web.Application) -> ReadinessCheck:
    async def check() -> None:
        await ping(app[DATABASE])

    return check
