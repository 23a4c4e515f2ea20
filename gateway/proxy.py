"""The streaming forwarder: request and response bodies flow through in chunks, never whole.

Header hygiene lives here: hop-by-hop headers go, the gateway writes X-Forwarded-* itself, Host
becomes the upstream's (MLflow refuses Hosts it does not know), Origin is dropped (the gateway makes
its own cross-origin checks; MLflow would refuse a non-local Origin), and identity headers or the
gateway's own credentials never reach MLflow.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.context import RequestContext, context_of
from gateway.errors import BAD_GATEWAY, UPSTREAM_TIMEOUT, mlflow_error
from gateway.paths import REQUEST_ID_HEADER
from gateway.upstream import Body, UpstreamAnswer, UpstreamPool

log = logging.getLogger(__name__)

CHUNK_SIZE = 256 * 1024
# How long an idle upstream connection is kept for reuse (uvicorn closes its own after 5 s).
IDLE_SECONDS = 4.0

HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
    )
)

# Never forwarded upstream: identity claims a client could forge, the gateway's own credentials,
# forwarding headers the gateway rewrites, and headers aiohttp or the gateway sets itself.
REQUEST_HEADERS_DROPPED = HOP_BY_HOP | frozenset(
    h.lower()
    for h in (
        "Host",
        "Origin",
        "Expect",
        "Authorization",
        "Forwarded",
        "X-Forwarded-For",
        "X-Forwarded-Proto",
        "X-Forwarded-Host",
        "X-Forwarded-Port",
        "X-Forwarded-Prefix",
        "X-Real-Ip",
        "X-Forwarded-User",
        "X-Forwarded-Email",
        "X-Forwarded-Groups",
        "X-Forwarded-Preferred-Username",
        "X-Forwarded-Access-Token",
        "X-Remote-User",
        "X-Remote-Group",
        "X-Auth-Request-User",
        "X-Auth-Request-Email",
        "X-Auth-Request-Groups",
        "X-Auth-Request-Access-Token",
        "Remote-User",
        "X-User",
        "X-Email",
        REQUEST_ID_HEADER,
    )
)

GATEWAY_COOKIE_PREFIXES = ("mlgw_", "__Host-mlgw_")

RESPONSE_HEADERS_DROPPED = HOP_BY_HOP | frozenset({"server", "date", REQUEST_ID_HEADER.lower()})


def _connection_tokens(headers: CIMultiDictProxy[str]) -> set[str]:
    """Headers named in Connection are hop-by-hop for this message too (RFC 9110 §7.6.1)."""
    tokens: set[str] = set()
    for value in headers.getall("Connection", []):
        tokens.update(token.strip().lower() for token in value.split(",") if token.strip())
    return tokens


def without_gateway_cookies(cookie_header: str) -> str:
    """The Cookie header minus the gateway's own cookies (its session never reaches MLflow)."""
    kept = [
        part.strip()
        for part in cookie_header.split(";")
        if part.strip() and not part.strip().startswith(GATEWAY_COOKIE_PREFIXES)
    ]
    return "; ".join(kept)


def upstream_request_headers(
    headers: CIMultiDictProxy[str], ctx: RequestContext, upstream_host: str
) -> CIMultiDict[str]:
    dropped = REQUEST_HEADERS_DROPPED | _connection_tokens(headers)
    out: CIMultiDict[str] = CIMultiDict(
        (name, value) for name, value in headers.items() if name.lower() not in dropped
    )
    cookies = [without_gateway_cookies(value) for value in out.popall("Cookie", [])]
    if any(cookies):
        out["Cookie"] = "; ".join(c for c in cookies if c)
    out["Host"] = upstream_host
    out["X-Forwarded-For"] = ctx.client_ip
    out["X-Forwarded-Proto"] = ctx.scheme
    out["X-Forwarded-Host"] = ctx.host
    out[REQUEST_ID_HEADER] = ctx.request_id
    return out


def client_response_headers(headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    dropped = RESPONSE_HEADERS_DROPPED | _connection_tokens(headers)
    return CIMultiDict(
        (name, value) for name, value in headers.items() if name.lower() not in dropped
    )


def _describe_body(
    headers: CIMultiDict[str], body: bytes, rewritten: bool, decoded: bool = False
) -> None:
    """Headers for a body the gateway read (and, when ``rewritten``, wrote anew as JSON; when
    ``decoded``, decompressed to judge it)."""
    headers["Content-Length"] = str(len(body))
    if rewritten:
        headers["Content-Type"] = "application/json"
    if rewritten or decoded:
        headers.popall("Content-Encoding", None)


def _has_body(request: web.Request) -> bool:
    return request.body_exists


async def _body_chunks(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(CHUNK_SIZE):
        yield chunk


def _outgoing_body(
    request: web.Request,
    headers: CIMultiDict[str],
    replacement_body: bytes | None,
    rewritten: bool,
    decoded: bool = False,
) -> AsyncIterator[bytes] | bytes | None:
    """What goes upstream: the bytes the gateway read (headers adjusted to them), else the
    client's body streamed as it arrives, else nothing."""
    if replacement_body is not None:
        _describe_body(headers, replacement_body, rewritten, decoded)
        return replacement_body
    return _body_chunks(request) if _has_body(request) else None


class _RelayedResponse(web.StreamResponse):
    """Headers go out with the first piece of the body, not in a packet of their own (as
    ``web.Response`` does): one write instead of two for every small answer."""

    _send_headers_immediately = False


class UpstreamError(Exception):
    """MLflow could not be reached or did not answer in time."""


class MlflowProxy:
    """Forwards requests to the internal MLflow server over the app's pool of connections; its
    ClientSession serves the gateway's own calls to MLflow (lookups, search pages, readiness)."""

    def __init__(
        self,
        upstream_url: str,
        *,
        keepalive: bool,
        connect_timeout: float,
        read_timeout: float,
        max_connections: int = 100,
    ) -> None:
        self.upstream = URL(upstream_url)
        self.upstream_host = self.upstream.raw_authority
        self._keepalive = keepalive
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_read=read_timeout
        )
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._pool = UpstreamPool(
            self.upstream,
            keepalive=keepalive,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            idle_seconds=IDLE_SECONDS,
            max_connections=max_connections,
        )

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            force_close=not self._keepalive,
            # Idle connections are given up before uvicorn's own 5 s keep-alive timeout closes
            # them: a request never goes out on a connection MLflow is closing.
            keepalive_timeout=IDLE_SECONDS if self._keepalive else None,
            enable_cleanup_closed=True,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        )

    async def close(self) -> None:
        self._pool.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("MlflowProxy.start() was not awaited")
        return self._session

    def target_for(self, ctx: RequestContext) -> str:
        # The target as the edge parsed and the gateway judged it, written anew (never the raw
        # bytes beside it), below the upstream URL's own path.
        assert ctx.target is not None  # the edge refused the request otherwise
        return self.upstream.raw_path.rstrip("/") + ctx.target.upstream

    async def forward(
        self,
        request: web.Request,
        replacement_body: bytes | None = None,
        rewritten: bool = False,
        decoded: bool = False,
    ) -> web.StreamResponse:
        """Stream the request to MLflow, or send ``replacement_body`` (the bytes the gateway read
        and judged; ``rewritten`` when the gateway changed them into new JSON)."""
        ctx = context_of(request)
        headers = upstream_request_headers(request.headers, ctx, self.upstream_host)
        body = _outgoing_body(request, headers, replacement_body, rewritten, decoded)
        try:
            upstream = await self._upstream(request, ctx, headers, body)
        except TimeoutError as exc:
            return self._failure(ctx, UPSTREAM_TIMEOUT, "did not answer in time", exc)
        except aiohttp.ClientError as exc:
            return self._failure(ctx, BAD_GATEWAY, "is unreachable", exc)

        ctx.upstream_status = upstream.status
        try:
            return await self._relay(request, upstream, ctx)
        finally:
            upstream.release()

    def _upstream(
        self,
        request: web.Request,
        ctx: RequestContext,
        headers: CIMultiDict[str],
        body: Body,
    ) -> Awaitable[UpstreamAnswer]:
        """The upstream request: same method and target, never following redirects, never
        compressing what the client sent."""
        return self._pool.request(request.method, self.target_for(ctx), headers, body)

    async def exchange(
        self,
        request: web.Request,
        replacement_body: bytes | None,
        rewritten: bool = False,
        limit: int = 16 * 1024**2,
    ) -> tuple[web.Response, bytes]:
        """Like forward, but the (small JSON) answer is read whole, for after-success hooks."""
        ctx = context_of(request)
        headers = upstream_request_headers(request.headers, ctx, self.upstream_host)
        headers["Accept-Encoding"] = "identity"  # the gateway reads this answer itself
        # Only the answer is read whole: a body the gateway did not read streams, as in forward.
        body = _outgoing_body(request, headers, replacement_body, rewritten)
        try:
            upstream = await self._upstream(request, ctx, headers, body)
            try:
                ctx.upstream_status = upstream.status
                answer = await upstream.read(limit)
                response_headers = client_response_headers(upstream.headers)
            finally:
                upstream.release()
        except TimeoutError as exc:
            return self._failure(ctx, UPSTREAM_TIMEOUT, "did not answer in time", exc), b""
        except aiohttp.ClientError as exc:
            return self._failure(ctx, BAD_GATEWAY, "is unreachable", exc), b""
        except ValueError as exc:  # larger than the gateway reads whole
            return self._failure(ctx, BAD_GATEWAY, "answered too much to check", exc), b""
        response_headers.popall("Content-Length", None)
        response_headers.popall("Content-Encoding", None)
        response_headers[REQUEST_ID_HEADER] = ctx.request_id
        response = web.Response(status=upstream.status, body=answer, headers=response_headers)
        return response, answer

    async def _relay(
        self, request: web.Request, upstream: UpstreamAnswer, ctx: RequestContext
    ) -> web.StreamResponse:
        response = _RelayedResponse(status=upstream.status, reason=upstream.reason)
        response.headers.update(client_response_headers(upstream.headers))
        response.headers[REQUEST_ID_HEADER] = ctx.request_id
        await response.prepare(request)
        if request.method == "HEAD":
            await response.write_eof()
            return response
        try:
            if upstream.content.is_eof():
                # The whole answer came with its head (most API answers): one write, headers
                # and body, with no read loop.
                await response.write_eof(upstream.content.read_nowait())
                return response
            async for chunk in upstream.content.iter_chunked(CHUNK_SIZE):
                await response.write(chunk)
        except (TimeoutError, aiohttp.ClientError) as exc:
            # Headers are gone already: the only honest signal left is to cut the connection.
            ctx.upstream_error = f"{type(exc).__name__} mid-response"
            log.warning("upstream failed mid-response request_id=%s error=%s", ctx.request_id, exc)
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write_eof()
        return response

    def _failure(
        self, ctx: RequestContext, kind: tuple[str, int], what: str, exc: BaseException
    ) -> web.Response:
        reason = str(exc) or type(exc).__name__
        ctx.upstream_error = type(exc).__name__
        log.warning(
            "upstream %s %s request_id=%s error=%s",
            self.upstream_host,
            what,
            ctx.request_id,
            reason,
        )
        return mlflow_error(
            kind,
            f"The MLflow server behind this gateway ({self.upstream_host}) {what}. "
            f"Request id {ctx.request_id}; try again, or ask the operator to check MLflow.",
        )
