"""`GET /.gateway/api/audit`: the audit search over HTTP (admins only), for the console."""

from __future__ import annotations

from datetime import datetime

import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError

from gateway.audit.review import AuditQuery, search
from gateway.authz.enforcer import Enforcer
from gateway.context import context_of
from gateway.errors import BAD_REQUEST, PERMISSION_DENIED, UNAVAILABLE, mlflow_error


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("times need a timezone, e.g. 2026-11-26T10:00:00+00:00")
    return parsed


class AuditApi:
    def __init__(self, redis: aioredis.Redis, enforcer: Enforcer) -> None:
        self._redis = redis
        self._enforcer = enforcer

    async def search(self, request: web.Request) -> web.Response:
        principal = context_of(request).principal
        if not self._enforcer.is_admin(principal):
            context_of(request).authz_refusal = "audit search is for admins"
            return mlflow_error(PERMISSION_DENIED, "The audit trail is for admins.")
        q = request.query
        try:
            query = AuditQuery(
                actor=q.get("actor") or None,
                resource=q.get("resource") or None,
                action=q.get("action") or None,
                decision=q.get("decision") or None,
                status=int(q["status"]) if q.get("status") else None,
                type=q.get("type") or None,
                since=_time(q.get("since")),
                until=_time(q.get("until")),
            )
            limit = min(max(int(q.get("limit", "50")), 1), 1000)
        except ValueError as exc:
            return mlflow_error(BAD_REQUEST, f"Invalid audit query: {exc}")
        try:
            events, cursor = await search(self._redis, query, limit, q.get("cursor") or None)
        except RedisError:
            return mlflow_error(UNAVAILABLE, "The audit trail (Redis) is unreachable.")
        return web.json_response({"events": events, "next_cursor": cursor})
