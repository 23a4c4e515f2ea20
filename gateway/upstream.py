"""Pooled HTTP/1.1 connections to the internal MLflow server, for the requests the gateway forwards.

aiohttp's ClientSession builds a ClientRequest, a ClientResponse, timers and a connector lookup for
every request: measured, a third of what a bare aiohttp proxy adds on a keep-alive connection
(docs/benchmarks.md). This pool writes the request itself and reads the answer with aiohttp's own
protocol (``ResponseHandler`` and its C HTTP parser), so what is accepted from MLflow, and the
errors a broken answer raises, are aiohttp's. The gateway's other calls to MLflow (lookups, search
pages, readiness) keep the ClientSession: they are not on every request's path.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
import time
from collections.abc import AsyncIterator

from aiohttp import ClientConnectorError, ClientError, ClientOSError, ServerDisconnectedError
from aiohttp.client import IDEMPOTENT_METHODS
from aiohttp.client_proto import ResponseHandler
from aiohttp.client_reqrep import ConnectionKey
from aiohttp.streams import StreamReader
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

# Methods that never carry a body unless the client sent one (aiohttp's client's GET_METHODS, and
# CONNECT).
_BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "CONNECT"})
_FORBIDDEN_IN_HEADERS = re.compile("[\r\n\0]")
READ_BUFFER = 2**16

Body = AsyncIterator[bytes] | bytes | None


def _streamed(body: Body) -> bool:
    """A body read from the client as it is sent: it cannot be sent a second time."""
    return body is not None and not isinstance(body, bytes)


class SwitchedProtocols(ClientError):
    """MLflow answered 101: the gateway relays no other protocol (a 502 to the client). An
    answer, not a connection found closed: never a reason to send the request again."""


class UpstreamAnswer:
    """An answer whose head has arrived; its body is read from ``content``. ``release()`` gives
    the connection back for reuse when the exchange ended cleanly, and closes it otherwise."""

    def __init__(
        self,
        pool: UpstreamPool,
        protocol: ResponseHandler,
        status: int,
        reason: str,
        headers: CIMultiDictProxy[str],
        content: StreamReader,
        sending: asyncio.Task[None] | None,
    ) -> None:
        self._pool = pool
        self._protocol: ResponseHandler | None = protocol
        self.status = status
        self.reason = reason
        self.headers = headers
        self.content = content
        self._sending = sending

    async def read(self, limit: int) -> bytes:
        """The whole body; more than ``limit`` bytes is an error (ValueError)."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in self.content.iter_chunked(READ_BUFFER):
            size += len(chunk)
            if size > limit:
                raise ValueError(f"MLflow's answer is larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def release(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is None:
            return
        # A body still streaming (MLflow answered before reading it all) is cut off with the
        # connection; a body that failed has marked the protocol as not reusable.
        sent = self._sending is None or self._sending.done()
        if not sent and self._sending is not None:
            self._sending.cancel()
        self._pool._give_back(protocol, reusable=sent and self.content.is_eof())


class UpstreamPool:
    """Keep-alive connections to one upstream, at most ``max_connections`` in use at once."""

    def __init__(
        self,
        url: URL,
        *,
        keepalive: bool,
        connect_timeout: float,
        read_timeout: float,
        idle_seconds: float,
        max_connections: int,
    ) -> None:
        self.host = url.raw_host or "127.0.0.1"
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self._ssl: ssl.SSLContext | None = (
            ssl.create_default_context() if url.scheme == "https" else None
        )
        self._keepalive = keepalive
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._idle_seconds = idle_seconds
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[tuple[float, ResponseHandler]] = []
        self._key = ConnectionKey(
            self.host, self.port, self._ssl is not None, self._ssl or False, None, None, None
        )

    async def request(
        self, method: str, target: str, headers: CIMultiDict[str], body: Body
    ) -> UpstreamAnswer:
        """Send the request; return once the answer's head has arrived. Raises TimeoutError when
        MLflow does not connect or answer in time, aiohttp.ClientError when it is unreachable or
        its answer is broken."""
        head, chunked = self._head(method, target, headers, body)
        # A kept connection MLflow closed just as it was taken (its keep-alive ran out, it
        # restarted) fails before any answer; an idempotent request with a body in hand is then
        # sent once more, on a new connection (the methods aiohttp's client retries). Nothing else
        # is ever sent twice.
        replayable = method in IDEMPOTENT_METHODS and not _streamed(body)
        await self._slots.acquire()
        try:
            reuse = True
            while True:
                protocol, kept = await self._connection(reuse=reuse)
                try:
                    return await self._exchange(protocol, method, head, body, chunked)
                except (ServerDisconnectedError, ClientOSError):
                    protocol.close()
                    if not (kept and replayable):
                        raise
                except BaseException:
                    protocol.close()
                    raise
                reuse = False  # the second attempt is on a new connection: never a third
        except BaseException:
            self._slots.release()
            raise

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for _, protocol in idle:
            protocol.close()

    def _head(
        self, method: str, target: str, headers: CIMultiDict[str], body: Body
    ) -> tuple[bytes, bool]:
        """The request line and headers, and whether the body goes chunked (a streamed body
        whose length the client did not say)."""
        chunked = False
        if isinstance(body, bytes):
            headers["Content-Length"] = str(len(body))
        elif body is not None and "Content-Length" not in headers:
            headers["Transfer-Encoding"] = "chunked"
            chunked = True
        elif body is None and method not in _BODYLESS_METHODS:
            headers["Content-Length"] = "0"
        if not self._keepalive:
            headers["Connection"] = "close"
        lines = [f"{method} {target} HTTP/1.1"]
        for name, value in headers.items():
            line = f"{name}: {value}"
            # aiohttp's server never lets these through; the gateway's own values are checked too.
            if _FORBIDDEN_IN_HEADERS.search(line):
                raise ValueError(f"header {name!r} holds a line break")
            lines.append(line)
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), chunked

    async def _connection(self, *, reuse: bool) -> tuple[ResponseHandler, bool]:
        """A connection, and whether it was kept from an earlier exchange."""
        now = time.monotonic()
        while reuse and self._idle:
            since, kept = self._idle.pop()
            if now - since < self._idle_seconds and kept.is_connected():
                return kept, True
            kept.close()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, protocol = await loop.create_connection(
                    lambda: ResponseHandler(loop),
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self._ssl else None,
                )
        except OSError as exc:
            raise ClientConnectorError(self._key, exc) from exc
        sock = protocol.transport.get_extra_info("socket") if protocol.transport else None
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return protocol, False

    async def _exchange(
        self, protocol: ResponseHandler, method: str, head: bytes, body: Body, chunked: bool
    ) -> UpstreamAnswer:
        protocol.set_response_params(
            skip_payload=method == "HEAD",
            auto_decompress=False,
            read_timeout=self._read_timeout,
            read_bufsize=READ_BUFFER,
        )
        transport = protocol.transport
        if transport is None:
            raise ClientOSError("the connection to MLflow closed before the request was sent")
        sending: asyncio.Task[None] | None = None
        if isinstance(body, bytes):
            transport.write(head + body)
        else:
            transport.write(head)
            if body is not None:
                # The body streams while the answer is awaited, as aiohttp's client does: MLflow
                # may answer (an error) before it has read everything.
                sending = asyncio.ensure_future(self._send(protocol, body, chunked))
        protocol.start_timeout()
        try:
            message, payload = await protocol.read()
            # Interim answers (100 Continue) are not the answer.
            while 100 <= message.code < 200 and message.code != 101:
                message, payload = await protocol.read()
        except BaseException:
            if sending is not None:
                sending.cancel()
            raise
        if message.code == 101:
            raise SwitchedProtocols("MLflow switched protocols; the gateway does not relay that")
        return UpstreamAnswer(
            self, protocol, message.code, message.reason, message.headers, payload, sending
        )

    @staticmethod
    async def _send(protocol: ResponseHandler, body: AsyncIterator[bytes], chunked: bool) -> None:
        try:
            async for chunk in body:
                transport = protocol.transport
                if transport is None:
                    raise ClientOSError("the connection to MLflow closed while the body was sent")
                if chunked:
                    if chunk:
                        transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                else:
                    transport.write(chunk)
                await protocol._drain_helper()  # backpressure: never buffer a large upload whole
            if chunked and protocol.transport is not None:
                protocol.transport.write(b"0\r\n\r\n")
        except Exception as exc:
            # The client's body broke off (or MLflow went away): MLflow must not wait for the
            # rest, and whoever awaits the answer learns why; the connection is never reused.
            protocol.set_exception(
                exc if isinstance(exc, ClientOSError) else ClientOSError(str(exc)), exc
            )
            if protocol.transport is not None:
                protocol.transport.close()

    def _give_back(self, protocol: ResponseHandler, *, reusable: bool) -> None:
        self._slots.release()
        if reusable and self._keepalive and not protocol.should_close and protocol.is_connected():
            self._idle.append((time.monotonic(), protocol))
        else:
            with contextlib.suppress(Exception):
                protocol.close()
