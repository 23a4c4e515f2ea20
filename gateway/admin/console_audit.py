"""The console's audit pages: the trail searched and paged, the chain verified, the live view."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from redis.exceptions import RedisError

from gateway.admin.audit_api import FILTERS, audit_query, last_verification, verify_and_record
from gateway.admin.console_frame import Frame, Pages, form_post, page
from gateway.admin.fields import BadInput
from gateway.admin.service import Actor
from gateway.audit.review import search

AUDIT_PAGE = 50


def _audit_filters(request: web.Request) -> dict[str, Any]:
    raw = {f.name: request.query.get(f.name, "").strip() for f in FILTERS}
    checked: dict[str, Any] = {}
    for field in FILTERS:
        if raw[field.name]:
            value: Any = raw[field.name]
            if field.kind == "integer":
                if not value.isdigit():
                    raise BadInput(f"{field.name} must be a number")
                value = int(value)
            # People type times loosely ("2026-12-01T10:00"); parse_time says what it takes.
            checked[field.name] = value if field.kind == "time" else field.check(value, "filter")
    return checked


class AuditPages(Pages):
    def __init__(self, frame: Frame, redis: Any) -> None:
        super().__init__(frame)
        self.redis = redis

    @page("/audit")
    async def audit(self, request: web.Request) -> web.Response:
        error = None
        events: list[dict[str, Any]] = []
        cursor = None
        filters: dict[str, Any] = {}
        try:
            filters = _audit_filters(request)
            events, cursor = await search(
                self.redis,
                audit_query(filters),
                AUDIT_PAGE,
                request.query.get("cursor") or None,
            )
        except (BadInput, ValueError) as exc:
            error = str(exc)
        except RedisError:
            error = "The audit trail (Redis) is unreachable."
        keep = {k: str(v) for k, v in filters.items()}
        try:
            verification = await last_verification(self.redis)
        except RedisError:
            verification = None
        return self.frame.render(
            request,
            "admin/audit.html",
            {
                "events": events,
                "error": error,
                "filters": {f.name: request.query.get(f.name, "") for f in FILTERS},
                "next": f"?{urlencode({**keep, 'cursor': cursor})}" if cursor else None,
                "first_page": not request.query.get("cursor"),
                "export_query": urlencode(keep),
                "verification": verification,
            },
        )

    @form_post("/audit/verify")
    async def audit_verify(self, request: web.Request, form: Any, actor: Actor) -> str:
        outcome = await verify_and_record(self.redis, actor.principal.subject)
        if outcome["intact"]:
            return (
                f"Audit trail intact: {outcome['events']} events "
                f"from {outcome['instances']} gateways."
            )
        return f"Audit trail NOT intact: {outcome['problem_count']} problems (listed below)."

    @page("/audit/live")
    async def audit_live(self, request: web.Request) -> web.Response:
        return self.frame.render(request, "admin/live.html", {})
