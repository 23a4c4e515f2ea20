"""Small REST calls: sequential latency percentiles and concurrent throughput.

Every (endpoint, target, client) combination is a "cell". Cells are measured in interleaved rounds
with a rotating order, so a burst of load from elsewhere on a shared machine is spread over all
cells instead of skewing whichever one happened to run at that moment.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp

KEEPALIVE = "keep-alive"
FRESH = "new connection"
CLIENT_MODES = (KEEPALIVE, FRESH)
DIRECT = "direct"
GATEWAY_KEEPALIVE_OFF = "gateway, upstream keep-alive off"
GATEWAY_KEEPALIVE_ON = "gateway, upstream keep-alive on"
# The same gateway, the admin's username and password instead of a token (basic auth).
GATEWAY_PASSWORD = "gateway, upstream keep-alive on, password"
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30)
SLICE_WARMUP = 2  # re-establish a connection the server may have idled out between rounds


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str
    json: dict[str, Any] | None = None


HEALTH = Endpoint("health", "GET", "/health")
SEARCH = Endpoint("experiments/search", "GET", "/api/2.0/mlflow/experiments/search?max_results=10")
CREATE = Endpoint("runs/create", "POST", "/api/2.0/mlflow/runs/create", {"experiment_id": "0"})
ENDPOINTS = (HEALTH, SEARCH, CREATE)


@dataclass(frozen=True)
class Target:
    name: str
    base_url: str
    headers: tuple[tuple[str, str], ...] = ()  # frozen, so a tuple of pairs


@dataclass(frozen=True)
class Cell:
    endpoint: Endpoint
    target: Target
    client: str

    @property
    def key(self) -> str:
        return f"{self.endpoint.name} | {self.target.name} | {self.client}"


@dataclass
class LatencyResult:
    samples_ms: list[float] = field(default_factory=list)
    errors: int = 0

    def percentile(self, pct: int) -> float:
        if len(self.samples_ms) < 2:
            return float("nan")
        return statistics.quantiles(self.samples_ms, n=100, method="inclusive")[pct - 1]


@dataclass
class ThroughputResult:
    completed: int = 0
    errors: int = 0
    seconds: float = 0.0
    wall_seconds: float = 0.0  # including warm-up and teardown: shows stalls outside the clock

    @property
    def per_second(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0


def make_cells(targets: list[Target]) -> list[Cell]:
    return [Cell(e, t, c) for e in ENDPOINTS for t in targets for c in CLIENT_MODES]


def _session(client: str, connections: int) -> aiohttp.ClientSession:
    # force_close: a new TCP connection per request, like a client without a connection pool.
    connector = aiohttp.TCPConnector(limit=connections, force_close=client == FRESH)
    return aiohttp.ClientSession(connector=connector, timeout=REQUEST_TIMEOUT)


async def _request(session: aiohttp.ClientSession, cell: Cell) -> bool:
    """One call, body read to the end; False on anything but a 200."""
    url = cell.target.base_url + cell.endpoint.path
    method, body, headers = cell.endpoint.method, cell.endpoint.json, dict(cell.target.headers)
    try:
        async with session.request(method, url, json=body, headers=headers) as resp:
            await resp.read()
            return resp.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


def _rotated(cells: list[Cell], shift: int) -> Iterator[Cell]:
    shift %= len(cells)
    yield from cells[shift:] + cells[:shift]


async def _timed(session: aiohttp.ClientSession, cell: Cell, result: LatencyResult) -> None:
    started = time.perf_counter()
    ok = await _request(session, cell)
    elapsed_ms = (time.perf_counter() - started) * 1000
    if ok:
        result.samples_ms.append(elapsed_ms)
    else:
        result.errors += 1


async def measure_latency(
    cells: list[Cell], requests: int, warmup: int, rounds: int
) -> dict[str, LatencyResult]:
    """Sequential calls, one at a time per cell, over one long-lived session per cell."""
    results = {cell.key: LatencyResult() for cell in cells}
    sessions = {cell.key: _session(cell.client, 1) for cell in cells}
    try:
        for cell in cells:
            for _ in range(warmup):
                await _request(sessions[cell.key], cell)
        per_round = max(1, requests // rounds)
        for round_no in range(rounds):
            for cell in _rotated(cells, round_no):
                session = sessions[cell.key]
                for _ in range(SLICE_WARMUP):
                    await _request(session, cell)
                for _ in range(per_round):
                    await _timed(session, cell, results[cell.key])
    finally:
        await asyncio.gather(*(s.close() for s in sessions.values()))
    return results


async def _throughput_slice(cell: Cell, concurrency: int, seconds: float) -> ThroughputResult:
    result = ThroughputResult()
    wall_started = time.perf_counter()
    async with _session(cell.client, concurrency) as session:
        # Open the pool (keep-alive) and wake the server before the clock starts.
        await asyncio.gather(*(_request(session, cell) for _ in range(concurrency)))

        async def client_loop(deadline: float) -> None:
            while time.perf_counter() < deadline:
                if await _request(session, cell):
                    result.completed += 1
                else:
                    result.errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(client_loop(started + seconds) for _ in range(concurrency)))
        result.seconds = time.perf_counter() - started
    result.wall_seconds = time.perf_counter() - wall_started
    return result


async def measure_throughput(
    cells: list[Cell], concurrency: int, seconds: float, rounds: int
) -> dict[str, ThroughputResult]:
    """`concurrency` clients in a closed loop; `seconds` per cell, split over `rounds` slices."""
    totals = {cell.key: ThroughputResult() for cell in cells}
    for round_no in range(rounds):
        for cell in _rotated(cells, round_no):
            part = await _throughput_slice(cell, concurrency, seconds / rounds)
            total = totals[cell.key]
            total.completed += part.completed
            total.errors += part.errors
            total.seconds += part.seconds
            total.wall_seconds += part.wall_seconds
    return totals
