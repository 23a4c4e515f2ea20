"""The gateway's pool of connections to MLflow (gateway/upstream.py), against a real HTTP server.

What a forwarded request relies on: every byte of a streamed upload arrives (with the client's
length, or chunked), a connection is reused only after a clean exchange, and every way an exchange
can break — a client's upload breaking off, MLflow closing, an answer too large — ends with the
connection closed and the next request served on a new one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from gateway.upstream import SwitchedProtocols, UpstreamPool
from tests.helpers import free_port

pytestmark = pytest.mark.asyncio(loop_scope="session")


class Upstream:
    """An aiohttp server recording, per request, the peer port and the body it read."""

    def __init__(self) -> None:
        self.peers: list[int] = []
        self.bodies: list[bytes] = []
        self.runner: web.AppRunner | None = None
        self.port = free_port()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.peers.append(peer[1] if peer else 0)
        self.bodies.append(await request.read())
        if request.path == "/close":
            return web.Response(text="bye", headers={"Connection": "close"})
        if request.path == "/large":
            return web.Response(body=b"x" * 300_000)
        return web.Response(text=f"{request.method} {request.path_qs}")

    async def __aenter__(self) -> Upstream:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None, keepalive_timeout=0.3)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


def _pool(port: int, *, keepalive: bool = True, max_connections: int = 10) -> UpstreamPool:
    return UpstreamPool(
        URL(f"http://127.0.0.1:{port}"),
        keepalive=keepalive,
        connect_timeout=2,
        read_timeout=5,
        idle_seconds=4,
        max_connections=max_connections,
    )


def _headers() -> CIMultiDict[str]:
    return CIMultiDict({"Host": "mlflow"})


async def _text(pool: UpstreamPool, method: str, target: str, body: object = None) -> str:
    answer = await pool.request(method, target, _headers(), body)  # type: ignore[arg-type]
    try:
        return (await answer.read(1_000_000)).decode()
    finally:
        answer.release()


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        await asyncio.sleep(0)
        yield part


async def test_streamed_uploads_arrive_whole_and_the_connection_is_reused() -> None:
    async with Upstream() as upstream:
        pool = _pool(upstream.port)
        parts = [b"a" * 100_000, b"", b"b" * 70_000, b"c"]
        # Chunked (the client said no length) and with the client's Content-Length.
        assert await _text(pool, "POST", "/up?x=1", _chunks(*parts)) == "POST /up?x=1"
        headers = _headers()
        headers["Content-Length"] = str(sum(map(len, parts)))
        answer = await pool.request("PUT", "/up", headers, _chunks(*parts))
        assert answer.status == 200
        await answer.read(100)
        answer.release()
        assert await _text(pool, "POST", "/bytes", b"judged") == "POST /bytes"
        assert await _text(pool, "GET", "/get") == "GET /get"
        pool.close()
    assert upstream.bodies[:3] == [b"".join(parts), b"".join(parts), b"judged"]
    assert len(set(upstream.peers)) == 1, upstream.peers


async def test_head_has_no_body_and_keeps_the_connection() -> None:
    async with Upstream() as upstream:
        pool = _pool(upstream.port)
        answer = await pool.request("HEAD", "/h", _headers(), None)
        assert answer.status == 200
        assert await answer.read(10) == b""
        answer.release()
        assert await _text(pool, "GET", "/after") == "GET /after"
        pool.close()
    assert len(set(upstream.peers)) == 1


async def test_an_upload_that_breaks_off_never_leaves_its_connection_in_the_pool() -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"partial"
        await asyncio.sleep(0.05)
        raise ConnectionResetError("the client went away")

    async with Upstream() as upstream:
        pool = _pool(upstream.port)
        headers = _headers()
        headers["Content-Length"] = "1000"
        with pytest.raises(aiohttp.ClientError):
            answer = await pool.request("POST", "/broken", headers, broken())
            answer.release()
        assert await _text(pool, "GET", "/next") == "GET /next"
        pool.close()
    assert upstream.bodies[-1] == b""  # /next; /broken never completed upstream
    assert len(set(upstream.peers)) == len(upstream.peers)


async def test_connections_mlflow_closes_are_not_reused() -> None:
    async with Upstream() as upstream:
        pool = _pool(upstream.port)
        assert await _text(pool, "GET", "/close") == "bye"  # answered with Connection: close
        assert await _text(pool, "GET", "/one") == "GET /one"
        await asyncio.sleep(0.8)  # past the upstream's own keep-alive timeout: it closes
        assert await _text(pool, "GET", "/two") == "GET /two"
        pool.close()
    assert len(set(upstream.peers)) == 3, upstream.peers


async def test_an_answer_larger_than_the_limit_is_refused_and_its_connection_closed() -> None:
    async with Upstream() as upstream:
        pool = _pool(upstream.port)
        answer = await pool.request("GET", "/large", _headers(), None)
        with pytest.raises(ValueError, match="larger than"):
            await answer.read(100_000)
        answer.release()
        assert await _text(pool, "GET", "/next") == "GET /next"
        pool.close()
    assert len(set(upstream.peers)) == 2


async def test_keepalive_off_uses_a_connection_per_request() -> None:
    async with Upstream() as upstream:
        pool = _pool(upstream.port, keepalive=False)
        for n in range(3):
            assert await _text(pool, "GET", f"/{n}") == f"GET /{n}"
        pool.close()
    assert len(set(upstream.peers)) == 3


async def test_the_pool_never_has_more_connections_in_use_than_its_limit() -> None:
    async with Upstream() as upstream:
        pool = _pool(upstream.port, max_connections=1)
        first = await pool.request("GET", "/first", _headers(), None)
        second = asyncio.ensure_future(_text(pool, "GET", "/second"))
        await asyncio.sleep(0.2)
        assert not second.done()  # waits for the one connection
        await first.read(100)
        first.release()
        assert await second == "GET /second"
        pool.close()
    assert len(set(upstream.peers)) == 1


async def test_an_unreachable_upstream_is_a_connector_error() -> None:
    pool = _pool(free_port())
    with pytest.raises(aiohttp.ClientConnectorError):
        await pool.request("GET", "/", _headers(), None)
    pool.close()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-Bad", "a\r\nX-Injected: 1"),
        ("X-Bad", "a\nX-Injected: 1"),
        ("X-Bad", "a\rb"),
        ("X-Bad", "a\0b"),
        ("X-Bad\nX-Injected", "1"),
    ],
)
async def test_a_header_with_a_line_break_is_never_written(name: str, value: str) -> None:
    async with Upstream() as upstream:
        pool = _pool(upstream.port)
        headers = _headers()
        headers[name] = value
        with pytest.raises(ValueError, match="line break"):
            await pool.request("GET", "/", headers, None)
        pool.close()
    assert upstream.peers == []


SWITCHING_PROTOCOLS = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
)


class OneAnswerServer:
    """A raw HTTP server that answers one request per connection and closes the connection,
    without a word, when a second request arrives on it (as a server does whose keep-alive ran
    out as the request was on its way); ``/die`` is closed on without an answer at once, and
    ``/switch`` answered with 101 Switching Protocols wherever it comes. Records every request it
    read, in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, str]] = []  # (connection number, request line)
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number, answered = self.connections, 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                length = next(
                    (
                        int(h.split(":", 1)[1])
                        for h in lines
                        if h.lower().startswith("content-length:")
                    ),
                    0,
                )
                await reader.readexactly(length)
                self.seen.append((number, lines[0]))
                if " /switch " in lines[0]:
                    writer.write(SWITCHING_PROTOCOLS)
                    await writer.drain()
                    return
                if answered or " /die " in lines[0]:
                    return
                text = lines[0].rsplit(" ", 1)[0].encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(text), text))
                await writer.drain()
                answered += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    async def __aenter__(self) -> OneAnswerServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


async def test_a_kept_connection_found_closed_sends_an_idempotent_request_once_more() -> None:
    async with OneAnswerServer() as upstream:
        pool = _pool(upstream.port)
        assert await _text(pool, "GET", "/one") == "GET /one"
        assert await _text(pool, "GET", "/two") == "GET /two"  # the kept one closed on it
        assert await _text(pool, "PUT", "/three", b"x") == "PUT /three"
        pool.close()
    assert upstream.seen == [
        (1, "GET /one HTTP/1.1"),
        (1, "GET /two HTTP/1.1"),
        (2, "GET /two HTTP/1.1"),
        (2, "PUT /three HTTP/1.1"),
        (3, "PUT /three HTTP/1.1"),
    ]


async def test_a_request_that_may_change_something_is_never_sent_twice() -> None:
    async with OneAnswerServer() as upstream:
        pool = _pool(upstream.port)
        assert await _text(pool, "GET", "/one") == "GET /one"
        with pytest.raises(aiohttp.ClientConnectionError):
            await _text(pool, "POST", "/create", b'{"name": "x"}')
        # Nor is a streamed body (it cannot be read twice), nor a request on a new connection.
        assert await _text(pool, "GET", "/two") == "GET /two"
        with pytest.raises(aiohttp.ClientConnectionError):
            await _text(pool, "PUT", "/upload", _chunks(b"part"))
        with pytest.raises(aiohttp.ClientConnectionError):
            await _text(pool, "GET", "/die")
        pool.close()
    requests = [line for _, line in upstream.seen]
    assert requests.count("POST /create HTTP/1.1") == 1
    assert requests.count("PUT /upload HTTP/1.1") == 1
    assert requests.count("GET /die HTTP/1.1") == 1


async def test_an_answer_switching_protocols_is_refused_and_not_asked_again() -> None:
    """101 is an answer, not a connection found closed: the request is not sent a second time."""
    async with OneAnswerServer() as upstream:
        pool = _pool(upstream.port)
        assert await _text(pool, "GET", "/one") == "GET /one"
        with pytest.raises(SwitchedProtocols, match="switched protocols"):
            await _text(pool, "GET", "/switch")  # on the connection kept from /one
        pool.close()
    assert upstream.seen == [(1, "GET /one HTTP/1.1"), (1, "GET /switch HTTP/1.1")]
