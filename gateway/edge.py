"""The edge: request id, the real client address, and what the client believes the URL is.

X-Forwarded-* headers are believed only from configured trusted proxies; anyone else could write
them, so for everyone else the socket's peer address is the client.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from gateway.config_values import IPNetwork
from gateway.context import REQUEST_CONTEXT, RequestContext, context_of
from gateway.errors import BAD_REQUEST
from gateway.io_counts import open_count
from gateway.paths import REQUEST_ID_HEADER
from gateway.refusals import Refused
from gateway.target import BadTarget, parse_target

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}\Z")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def new_request_id() -> str:
    return secrets.token_hex(16)


def _is_trusted(address: str, trusted: Sequence[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def client_address(
    peer: str, forwarded_for: str | None, trusted: Sequence[IPNetwork]
) -> tuple[str, bool]:
    """The client's address, and whether the request came through a trusted proxy.

    Walks X-Forwarded-For from the right, skipping trusted proxies: the first untrusted hop is the
    client. Entries left of it were written by the client itself and are ignored.
    """
    if not forwarded_for or not _is_trusted(peer, trusted):
        return peer, False
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer, True
        if not _is_trusted(hop, trusted):
            return hop, True
    return (hops[0] if hops else peer), True


def edge_middleware(
    trusted_proxies: Sequence[IPNetwork],
) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
        peer = request.remote or ""
        ip, via_proxy = client_address(
            peer, request.headers.get("X-Forwarded-For"), trusted_proxies
        )
        scheme, host = request.scheme, request.host
        request_id = new_request_id()
        if via_proxy:
            scheme = request.headers.get("X-Forwarded-Proto", scheme).split(",")[0].strip()
            host = request.headers.get("X-Forwarded-Host", host).split(",")[0].strip()
            inbound_id = request.headers.get(REQUEST_ID_HEADER, "")
            if _SAFE_REQUEST_ID.match(inbound_id):
                request_id = inbound_id
        ctx = RequestContext(request_id=request_id, client_ip=ip, scheme=scheme, host=host)
        try:
            ctx.target = parse_target(request.raw_path)
        except BadTarget as exc:
            ctx.target_refusal = str(exc)
        ctx.io = open_count()
        request[REQUEST_CONTEXT] = ctx
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers[REQUEST_ID_HEADER] = request_id
            raise
        if not response.prepared:
            response.headers[REQUEST_ID_HEADER] = request_id
        return response

    return edge


def target_guard_middleware() -> Callable[..., Awaitable[web.StreamResponse]]:
    """Refuses a request whose target MLflow could read differently (after the audit middleware,
    so the refusal is in the trail)."""

    @web.middleware
    async def target_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        ctx = context_of(request)
        if ctx.target is None:
            ctx.authz_refusal = f"request target refused: {ctx.target_refusal}"
            message = f"Bad request target: {ctx.target_refusal}."
            return Refused(BAD_REQUEST, message, ctx.authz_refusal, stage="target").response()
        return await handler(request)

    return target_guard
