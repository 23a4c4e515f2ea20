"""Why a multi-worker MLflow answers ~40 ms late on reused connections: evidence, not a guess.

A raw-socket client (aiohttp cannot arm TCP_QUICKACK between sending a request and reading the
answer) times the same GET on one keep-alive connection in a few variants, then reads the socket
state the hypothesis predicts: how many data segments MLflow sends per response (`ss -ti`) and
whether MLflow's accepted socket has TCP_NODELAY (read from inside the worker via pidfd_getfd).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import re
import socket
import statistics
import subprocess
import time
from dataclasses import dataclass, field

import psutil  # type: ignore[import-untyped]

from bench.small import SEARCH
from bench.stack import LOOPBACK

_SYS_PIDFD_OPEN = 434
_SYS_PIDFD_GETFD = 438
RECV_SIZE = 65536


@dataclass(frozen=True)
class ProbeServer:
    label: str
    port: int
    pid: int
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class ProbeResult:
    """Per-request latencies on one connection; the first request opened it, so it is separate."""

    label: str
    first_ms: float
    reused_ms: list[float] = field(default_factory=list)
    non_200: int = 0
    server_segments_per_response: float | None = None
    client_ato_ms: int | None = None
    server_tcp_nodelay: int | None = None

    @property
    def reused_median_ms(self) -> float:
        return statistics.median(self.reused_ms) if self.reused_ms else float("nan")


def _request_bytes(server: ProbeServer) -> bytes:
    lines = [
        f"GET {SEARCH.path} HTTP/1.1",
        f"Host: {LOOPBACK}:{server.port}",
        "User-Agent: bench-probe",
        *(f"{name}: {value}" for name, value in server.headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_response(sock: socket.socket) -> int:
    """Read one response with a Content-Length body; return its status code."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        buffer += _recv(sock)
    head, _, body = buffer.partition(b"\r\n\r\n")
    match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    if match is None:
        raise RuntimeError("probe expects a Content-Length response")
    while len(body) < int(match.group(1)):
        body += _recv(sock)
    return int(head.split(b" ", 2)[1])


def _recv(sock: socket.socket) -> bytes:
    data = sock.recv(RECV_SIZE)
    if not data:
        raise RuntimeError("server closed the connection")
    return data


def _exchange(sock: socket.socket, request: bytes, quickack: bool) -> tuple[float, int]:
    """Milliseconds from sending the request to the end of the answer, and its status."""
    started = time.perf_counter()
    sock.sendall(request)
    if quickack:
        # Linux clears QUICKACK on its own, so it is re-armed after every send: the ACK for
        # the first segment of the answer then leaves at once instead of after the ~40 ms timer.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
    status = _read_response(sock)
    return (time.perf_counter() - started) * 1000, status


def _ss_field(line: str, name: str) -> int | None:
    match = re.search(rf"\b{name}:(\d+)", line)
    return int(match.group(1)) if match else None


def _ss_info(src_port: int, dst_port: int) -> str:
    argv = [
        "ss",
        "-tinH",
        "state",
        "established",
        f"( sport = :{src_port} and dport = :{dst_port} )",
    ]
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _remote_tcp_nodelay(root_pid: int, server_port: int, client_port: int) -> int | None:
    """TCP_NODELAY of the server's end of our connection, read from whichever worker holds it."""
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        processes = [psutil.Process(root_pid), *psutil.Process(root_pid).children(recursive=True)]
    except psutil.Error:
        return None
    for process in processes:
        with contextlib.suppress(psutil.Error):
            for conn in process.net_connections(kind="tcp"):
                ours = conn.laddr and conn.raddr and conn.laddr.port == server_port
                if ours and conn.raddr.port == client_port:
                    return _getsockopt_in(libc, process.pid, conn.fd)
    return None


def _getsockopt_in(libc: ctypes.CDLL, pid: int, fd: int) -> int | None:
    pidfd = libc.syscall(_SYS_PIDFD_OPEN, pid, 0)
    if pidfd < 0:
        return None
    try:
        local_fd = libc.syscall(_SYS_PIDFD_GETFD, pidfd, fd, 0)  # needs ptrace rights on pid
        if local_fd < 0:
            return None
        with socket.socket(fileno=local_fd) as dup:
            return dup.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        os.close(pidfd)


def _probe(
    server: ProbeServer, requests: int, *, nodelay: bool = False, quickack: bool = False
) -> ProbeResult:
    """`requests` + 1 requests on one connection, then the TCP state of both of its ends."""
    label = f"{server.label}, keep-alive"
    label += " + client TCP_NODELAY" if nodelay else ""
    label += " + client TCP_QUICKACK" if quickack else ""
    request = _request_bytes(server)
    _warm_up(server, request)
    with socket.create_connection((LOOPBACK, server.port), timeout=30) as sock:
        if nodelay:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        exchanges = [_exchange(sock, request, quickack) for _ in range(requests + 1)]
        result = _result(label, exchanges)
        client_port = sock.getsockname()[1]
        segments = _ss_field(_ss_info(server.port, client_port), "data_segs_out")
        if segments is not None:
            result.server_segments_per_response = segments / (requests + 1)
        result.client_ato_ms = _ss_field(_ss_info(client_port, server.port), "ato")
        result.server_tcp_nodelay = _remote_tcp_nodelay(server.pid, server.port, client_port)
    return result


def _warm_up(server: ProbeServer, request: bytes) -> None:
    # A worker's very first answer is slow for reasons that have nothing to do with TCP.
    with socket.create_connection((LOOPBACK, server.port), timeout=30) as sock:
        _exchange(sock, request, quickack=False)


def _fresh_probe(server: ProbeServer, requests: int) -> ProbeResult:
    request = _request_bytes(server)
    exchanges = []
    for _ in range(requests + 1):
        with socket.create_connection((LOOPBACK, server.port), timeout=30) as sock:
            exchanges.append(_exchange(sock, request, quickack=False))
    return _result(f"{server.label}, new connection per request", exchanges)


def _result(label: str, exchanges: list[tuple[float, int]]) -> ProbeResult:
    return ProbeResult(
        label,
        first_ms=exchanges[0][0],
        reused_ms=[ms for ms, _ in exchanges[1:]],
        non_200=sum(status != 200 for _, status in exchanges),
    )


async def run_probes(
    multi: ProbeServer, single: ProbeServer | None, gateway: ProbeServer, requests: int
) -> list[ProbeResult]:
    """Blocking sockets on purpose (exact control of socket options), so run off the loop."""

    def all_probes() -> list[ProbeResult]:
        results = [
            _fresh_probe(multi, requests),
            _probe(multi, requests),
            _probe(multi, requests, nodelay=True),
            _probe(multi, requests, quickack=True),
        ]
        if single is not None:
            results.append(_probe(single, requests))
        results.append(_probe(gateway, requests))
        return results

    return await asyncio.to_thread(all_probes)
