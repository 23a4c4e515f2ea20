"""The audit writer at full speed while the same process serves proxy traffic.

One process, one event loop: 16 concurrent aiohttp clients keep requesting the trivial upstream
(network I/O on the same loop, as a gateway has), while `audit_events` request-sized events are
emitted as fast as the loop lets them into an `AuditWriter` (chain, serialise, queue; batches go to
Redis by one script call each). Measured: events per second until the last is in Redis; then the
stream must hold every event exactly once, and `audit verify`'s check must find every chain intact.
A Redis database of its own keeps the stream apart from the other benchmarks'.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from bench.profile import Profile
from bench.stack import Service
from bench.summary import Target, table
from gateway.audit.review import AuditQuery, search, verify
from gateway.audit.writer import STREAM, AuditWriter

EVENTS_PER_SECOND_TARGET = 10_000
CLIENTS = 16
CHUNK = 200  # events emitted between two yields to the event loop
TEMPLATE: dict[str, Any] = {
    "request_id": "0" * 32,
    "actor": {
        "subject": "alice",
        "method": "token",
        "token_id": "abc123",
        "groups": ["team-a"],
        "admin": False,
    },
    "client": {"ip": "10.1.2.3", "user_agent": "mlflow-python-client/3.17.2"},
    "http": {"method": "POST", "path": "/api/2.0/mlflow/runs/log-metric", "status": 200},
    "operation": "LogMetric",
    "decisions": [
        {
            "resource": "experiment:12",
            "action": "edit",
            "allowed": True,
            "rule": "p, group:team-a, experiment:12, edit, allow",
        }
    ],
    "resources": ["experiment:12"],
    "action": "edit",
    "decision": "allow",
    "reason": None,
    "params": {},
    "upstream_status": 200,
    "bytes_in": 120,
    "bytes_out": 2,
    "latency_ms": 12.5,
    "policy_changes": [],
}


async def _load(url: str, stop: asyncio.Event, served: list[int]) -> None:
    async with aiohttp.ClientSession() as session:

        async def client() -> None:
            while not stop.is_set():
                async with session.get(url + "/api/2.0/mlflow/experiments/get") as response:
                    await response.read()
                served[0] += 1

        await asyncio.gather(*(client() for _ in range(CLIENTS)))


async def run(redis_url: str, upstream: Service, profile: Profile) -> dict[str, Any]:
    own_db = redis_url.rsplit("/", 1)[0] + "/1"
    client = aioredis.Redis.from_url(own_db)
    await client.delete(STREAM)
    with tempfile.TemporaryDirectory(prefix="mlgw-bench-audit-") as spool:
        writer = AuditWriter(client, Path(spool), "bench-audit-writer")
        writer.start()
        stop, served = asyncio.Event(), [0]
        load = asyncio.create_task(_load(upstream.url, stop, served))
        await asyncio.sleep(1.0)  # the load is running
        served_before = served[0]
        started = time.perf_counter()
        for emitted in range(profile.audit_events):
            event = writer.new("request")
            event.update(TEMPLATE)
            writer.emit(event)
            if emitted % CHUNK == 0:
                await asyncio.sleep(0)
        emit_s = time.perf_counter() - started
        await writer.flush()
        total_s = time.perf_counter() - started
        served_during = served[0] - served_before
        stop.set()
        await load
        await writer.stop()
    stored = await client.xlen(STREAM)
    report = await verify(client)
    # `audit search` reads the stream newest first: a rare actor means reading all of it.
    started = time.perf_counter()
    found, _ = await search(client, AuditQuery(actor="someone-rare"), limit=50)
    search_s = time.perf_counter() - started
    await client.delete(STREAM)
    await client.aclose()
    return {
        "events": profile.audit_events,
        "stored": stored,
        "emit_s": emit_s,
        "total_s": total_s,
        "events_per_second": profile.audit_events / total_s,
        "requests_served_meanwhile": served_during,
        "requests_per_second_meanwhile": served_during / total_s,
        "chain_intact": report.intact,
        "search_no_match_s": search_s,
        "search_found": len(found),
        "chain_problems": report.problems[:5],
    }


def failures(results: dict[str, Any]) -> list[str]:
    found = []
    if results["stored"] != results["events"]:
        found.append(f"audit: {results['events']} emitted, {results['stored']} stored")
    if not results["chain_intact"]:
        found.append(f"audit: chain broken: {results['chain_problems']}")
    return found


def targets(results: dict[str, Any], profile: Profile) -> list[Target]:
    rate = results["events_per_second"]
    return [
        Target(
            "Audit",
            "writer throughput while serving requests",
            f"{rate:,.0f} events/s, {results['stored']:,} of {results['events']:,} stored, "
            + ("chain intact" if results["chain_intact"] else "**chain broken**"),
            f"≥ {EVENTS_PER_SECOND_TARGET:,} events/s, no loss",
            f"{results['requests_per_second_meanwhile']:,.0f} requests/s served by the same loop",
            (rate >= EVENTS_PER_SECOND_TARGET and not failures(results))
            if profile.judged
            else None,
        ),
        Target(
            "Audit",
            f"`audit search` for an actor with no events, {results['stored']:,} in the stream",
            f"{results['search_no_match_s']:.1f} s (it reads every event)",
            "reported",
            f"{results['stored'] / results['search_no_match_s']:,.0f} events read per second",
            None,
        ),
    ]


def render(results: dict[str, Any]) -> str:
    return "\n".join(
        [
            "### Audit writer",
            "",
            f"{results['events']:,} request-sized events emitted by one `AuditWriter` while the "
            f"same event loop kept {CLIENTS} clients busy against the trivial upstream.",
            "",
            table(
                [
                    "events",
                    "stored",
                    "emitting took s",
                    "until all in Redis s",
                    "events/s",
                    "requests served meanwhile",
                    "chain",
                ],
                [
                    [
                        f"{results['events']:,}",
                        f"{results['stored']:,}",
                        f"{results['emit_s']:.2f}",
                        f"{results['total_s']:.2f}",
                        f"{results['events_per_second']:,.0f}",
                        f"{results['requests_served_meanwhile']:,}",
                        "intact" if results["chain_intact"] else "**broken**",
                    ]
                ],
            ),
        ]
    )
