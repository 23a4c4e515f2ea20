"""Turning what happened into audit events: one per request, and security/admin events."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway.audit.events import REVIEW_PARAMS
from gateway.audit.writer import AuditWriter
from gateway.authn.csrf import SAFE_METHODS
from gateway.authn.principal import Principal
from gateway.authz.canonical import Ambiguous, camel
from gateway.authz.routes import RouteRule
from gateway.context import RequestContext, context_of
from gateway.errors import UNAVAILABLE, mlflow_error
from gateway.paths import PROBES, STATIC

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Probes and the gateway's own stylesheet and script would drown the trail in noise; they change
# nothing and reveal nothing.
UNAUDITED = PROBES
UNAUDITED_PREFIX = STATIC
# A search's filter names what it looked for (MLflow's FastAPI routes call it filter_string).
SEARCH_PARAMS = ("filter", "filter_string")
# Bounds on what a request event keeps of its parameters.
MAX_PARAM_CHARS = 256
MAX_PARAM_VALUES = 20
_USERINFO = re.compile(r"(?<=://)[^/@\s?#]*@")
_URI_QUERY = re.compile(r"(://[^?\s]*)\?\S*")


def actor(principal: Principal) -> dict[str, Any]:
    return {
        "subject": principal.subject,
        "method": principal.method,
        "token_id": principal.token_id,
        "groups": sorted(principal.groups),
        "admin": principal.is_admin,
    }


def _decision(ctx: RequestContext, status: int) -> str:
    if ctx.auth_refusal is not None:
        return (
            "unauthenticated" if status in (401, 429) or not ctx.principal.authenticated else "deny"
        )
    if ctx.authz_refusal is not None:
        return "deny"
    if ctx.upstream_error is not None:
        return "error"
    return "allow"


def _clip(value: str) -> str:
    """A value as the trail keeps it: no credentials or signed query of a URI, bounded."""
    value = _URI_QUERY.sub(r"\1?…", _USERINFO.sub("***@", value))
    return value if len(value) <= MAX_PARAM_CHARS else value[: MAX_PARAM_CHARS - 1] + "…"


def _identifying_fields(rule: RouteRule) -> list[str]:
    """What names a request's objects: the fields its route rule's needs read (ids, names,
    paths), a search's filter; never a value, a body or a secret."""
    fields = [f for need in rule.needs for f in (need.field, need.organization) if f]
    return [*dict.fromkeys([*fields, *SEARCH_PARAMS])]


def _review_params(ctx: RequestContext) -> dict[str, str | list[str]]:
    judgement = ctx.judgement
    params = getattr(judgement, "params", None)
    if params is None:
        return {}
    kept: dict[str, str | list[str]] = {}
    for name in REVIEW_PARAMS:
        if params.body is not None:
            value = params.body.get(name, params.body.get(camel(name)))
        else:
            value = (params.query.get(name) or [None])[0]
        if isinstance(value, str | int | float | bool):
            kept[name] = _clip(str(value))
    rule: RouteRule = judgement.rule
    many = {need.field for need in rule.needs if need.many}
    for name in _identifying_fields(rule):
        if name in kept:
            continue
        try:
            values = params.values(name)
        except Ambiguous:
            continue  # not a string or a number: nothing that names an object
        if not values:
            continue
        if len(values) == 1 and name not in many:
            kept[name] = _clip(values[0])
            continue
        listed = [_clip(v) for v in values[:MAX_PARAM_VALUES]]
        if len(values) > MAX_PARAM_VALUES:
            listed.append(f"… and {len(values) - MAX_PARAM_VALUES} more")
        kept[name] = listed
    return kept


def request_event(
    writer: AuditWriter,
    request: web.Request,
    ctx: RequestContext,
    status: int,
    bytes_out: int,
) -> dict[str, Any]:
    event = writer.new("request")
    judgement = ctx.judgement
    decisions = [
        {
            "resource": resource.names[0],
            "action": decision.action,
            "allowed": decision.allowed,
            "rule": str(decision.rule) if decision.rule else None,
        }
        for resource, decision in (judgement.decisions if judgement else [])
    ]
    event.update(
        request_id=ctx.request_id,
        actor=actor(ctx.principal),
        client={"ip": ctx.client_ip, "user_agent": request.headers.get("User-Agent", "")[:256]},
        http={"method": request.method, "path": request.path, "status": status},
        operation=judgement.rule.operation if judgement else None,
        decisions=decisions,
        resources=sorted({d["resource"] for d in decisions}),
        action=decisions[-1]["action"] if decisions else None,
        decision=_decision(ctx, status),
        reason=ctx.auth_refusal or ctx.authz_refusal,
        params=_review_params(ctx),
        upstream_status=ctx.upstream_status,
        bytes_in=request.content.total_bytes if request.body_exists else 0,
        bytes_out=bytes_out,
        latency_ms=round(1000 * (time.perf_counter() - ctx.started), 2),
        policy_changes=ctx.policy_changes,
    )
    return event


def _emit_request_event(
    writer: AuditWriter, request: web.Request, ctx: RequestContext, status: int, bytes_out: int
) -> None:
    writer.emit(request_event(writer, request, ctx, status, bytes_out))


def audit_middleware(
    writer: AuditWriter, required: bool
) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in UNAUDITED or request.path.startswith(UNAUDITED_PREFIX):
            return await handler(request)
        ctx = context_of(request)
        if required and request.method not in SAFE_METHODS and not writer.can_store:
            ctx.authz_refusal = "audit storage unavailable (GATEWAY_AUDIT_REQUIRED)"
            writer.emit(request_event(writer, request, ctx, 503, 0))
            return mlflow_error(
                UNAVAILABLE, "Changes are refused while the audit trail cannot be stored."
            )
        status, bytes_out = 500, 0
        try:
            response = await handler(request)
            status = response.status
            bytes_out = (
                response.body_length
                if response.prepared
                else len(getattr(response, "body", b"") or b"")
            )
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            # Built and chained just after the answer goes out, not before: the event costs the
            # caller nothing (call_soon keeps the order of events).
            asyncio.get_running_loop().call_soon(
                _emit_request_event, writer, request, ctx, status, bytes_out
            )

    return record


def security_event(
    writer: AuditWriter,
    kind: str,
    *,
    actor_principal: Principal | None = None,
    subject: str | None = None,
    client_ip: str | None = None,
    request_id: str | None = None,
    outcome: str = "success",
    **details: Any,
) -> None:
    """Sign-ins, lockouts, sign-outs, tokens, users, groups, policy: who, what, how it ended."""
    event = writer.new("security")
    event.update(
        event=kind,
        outcome=outcome,
        actor=actor(actor_principal) if actor_principal else {"subject": subject},
        client={"ip": client_ip},
        request_id=request_id,
        details=details,
    )
    writer.emit(event)
