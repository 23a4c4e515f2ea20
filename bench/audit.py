"""The audit writer at full speed while the same process serves proxy traffic.

One process, one event loop: 16 concurrent aiohttp clients keep requesting the trivial upstream
(network I/O on the same loop, as a gateway has), while `audit_events` request-sized events are
emitted as fast as the loop lets them into an `AuditWriter` (chain, serialise, queue; batches go to
Redis by one script call each). Measured: events per second until the last is in Redis; then the
stream must hold every event exactly once, and `audit verify`'s check must find every chain intact.

Then `audit search` at scale: a stream of `audit_search_events` request-sized events (100 actors,
1,000 experiments, and one rare actor with 5 events spread through it), written through the
writer's own script (so indexed as a gateway indexes them), searched for the rare actor from the
index and by reading the stream; both must find the same 5 events. What the index costs in Redis
memory is reported beside it. A Redis database of its own keeps these apart from the other
benchmarks'.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from bench.profile import Profile
from bench.stack import Service
from bench.summary import Target, table
from gateway.audit import index
from gateway.audit.events import canonical
from gateway.audit.review import AuditQuery, search, verify
from gateway.audit.writer import STREAM, AuditWriter, Queued, queued

EVENTS_PER_SECOND_TARGET = 10_000
CLIENTS = 16
CHUNK = 200  # events emitted between two yields to the event loop
# The search at scale: who and what the stream's events name, and the actor searched for.
SEARCH_ACTORS = 100
SEARCH_RESOURCES = 1_000
RARE_ACTOR = "someone-rare"
RARE_EVENTS = 5
FILL_CHUNK = 1_000  # events per call of the writer's script
INDEX_REPEATS = 5
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


async def _drop(client: aioredis.Redis) -> None:
    """The stream and its index, unlinked (freed in the background, not blocking Redis)."""
    sets = [key async for key, _ in client.zscan_iter(index.REGISTRY, count=1000)]
    for start in range(0, len(sets), 1000):
        await client.unlink(*sets[start : start + 1000])
    await client.unlink(STREAM, index.REGISTRY, index.FROM)


async def _fill(client: aioredis.Redis, spool: Path, events: int) -> float:
    """``events`` request-sized events written through the writer's script; seconds taken.

    Stored as the template event with its id, actor and resource changed (not chained: the
    chain is the writer benchmark's; here only what the search reads matters)."""
    writer = AuditWriter(client, spool, "bench-audit-search", maxlen=events + 1_000)
    rnd = random.Random(17)
    rare = set(rnd.sample(range(events), RARE_EVENTS))
    shape = writer.new("request")
    shape.update(TEMPLATE, seq=0, prev="0" * 64, hash="0" * 64)
    shape["actor"] = {**TEMPLATE["actor"], "subject": "@SUBJECT@"}
    shape["decisions"] = [{**TEMPLATE["decisions"][0], "resource": "@RESOURCE@"}]
    shape["resources"] = ["@RESOURCE@"]
    shape["id"], shape["seq"] = "@ID@", -1
    parts = canonical(shape).decode()
    started = time.perf_counter()
    batch: list[Queued] = []
    for n in range(events):
        subject = RARE_ACTOR if n in rare else f"user-{rnd.randrange(SEARCH_ACTORS)}"
        resource = f"experiment:{rnd.randrange(SEARCH_RESOURCES)}"
        stored = (
            parts.replace("@SUBJECT@", subject)
            .replace("@RESOURCE@", resource)
            .replace('"@ID@"', f'"{n:013d}-{n:012x}"')
            .replace('"seq":-1', f'"seq":{n + 1}')
        )
        event = {
            "instance": writer.instance,
            "seq": n + 1,
            "actor": {"subject": subject},
            "decisions": [{"resource": resource, "action": "edit"}],
            "action": "edit",
        }
        batch.append(queued(event, stored.encode()))
        if len(batch) == FILL_CHUNK:
            await writer.store(batch)
            batch = []
    if batch:
        await writer.store(batch)
    return time.perf_counter() - started


async def _memory(client: aioredis.Redis, key: str) -> int:
    return int(await client.memory_usage(key) or 0)


async def search_at_scale(client: aioredis.Redis, events: int) -> dict[str, Any]:
    await _drop(client)
    used_before = int((await client.info("memory"))["used_memory"])
    with tempfile.TemporaryDirectory(prefix="mlgw-bench-audit-search-") as spool:
        fill_s = await _fill(client, Path(spool), events)
    used_after = int((await client.info("memory"))["used_memory"])
    sets = [key async for key, _ in client.zscan_iter(index.REGISTRY, count=1000)]
    index_bytes = sum([await _memory(client, key) for key in sets])
    query = AuditQuery(actor=RARE_ACTOR)
    times: list[float] = []
    found: list[dict[str, Any]] = []
    for _ in range(INDEX_REPEATS):
        started = time.perf_counter()
        found, _ = await search(client, query, limit=50)
        times.append(time.perf_counter() - started)
    started = time.perf_counter()
    scanned, _ = await search(client, query, limit=50, indexed=False)
    scan_s = time.perf_counter() - started
    stored = await client.xlen(STREAM)
    await _drop(client)
    return {
        "events": events,
        "stored": stored,
        "fill_s": fill_s,
        "index_s": statistics.median(times),
        "scan_s": scan_s,
        "index_found": [e["id"] for e in found],
        "scan_found": [e["id"] for e in scanned],
        "index_sets": len(sets),
        "index_bytes": index_bytes,
        "used_bytes": used_after - used_before,
    }


async def run(redis_url: str, upstream: Service, profile: Profile) -> dict[str, Any]:
    own_db = redis_url.rsplit("/", 1)[0] + "/1"
    client = aioredis.Redis.from_url(own_db)
    await _drop(client)
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
    scale = await search_at_scale(client, profile.audit_search_events)
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
        "chain_problems": report.problems[:5],
        "search": scale,
    }


def failures(results: dict[str, Any]) -> list[str]:
    found = []
    if results["stored"] != results["events"]:
        found.append(f"audit: {results['events']} emitted, {results['stored']} stored")
    if not results["chain_intact"]:
        found.append(f"audit: chain broken: {results['chain_problems']}")
    scale = results["search"]
    if scale["stored"] != scale["events"]:
        found.append(f"audit search: {scale['events']} written, {scale['stored']} stored")
    if len(scale["index_found"]) != RARE_EVENTS or scale["index_found"] != scale["scan_found"]:
        found.append(
            f"audit search: the index found {len(scale['index_found'])} events, reading the "
            f"stream {len(scale['scan_found'])} (expected the same {RARE_EVENTS})"
        )
    return found


def targets(results: dict[str, Any], profile: Profile) -> list[Target]:
    rate = results["events_per_second"]
    scale = results["search"]
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
            f"`audit search --actor` for a rare actor ({RARE_EVENTS} events) among "
            f"{scale['stored']:,} events",
            f"{1000 * scale['index_s']:.1f} ms from the index",
            "reported",
            f"reading the stream: {scale['scan_s']:.1f} s "
            f"({scale['scan_s'] / scale['index_s']:,.0f} times longer); the index takes "
            f"{scale['index_bytes'] / scale['stored']:.0f} bytes of Redis memory per event",
            None,
        ),
    ]


def render(results: dict[str, Any]) -> str:
    scale = results["search"]
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
            "",
            "### Audit search",
            "",
            f"A stream of {scale['stored']:,} request-sized events ({SEARCH_ACTORS} actors, "
            f"{SEARCH_RESOURCES:,} experiments, one rare actor with {RARE_EVENTS} events), "
            f"written through the writer's script in {scale['fill_s']:.0f} s; "
            f"`audit search --actor` for the rare actor (median of {INDEX_REPEATS} from the "
            "index, once by reading the stream).",
            "",
            table(
                [
                    "events",
                    "from the index ms",
                    "reading the stream s",
                    "found (index / stream)",
                    "index sets",
                    "index MiB",
                    "index bytes/event",
                    "stream and index MiB",
                ],
                [
                    [
                        f"{scale['stored']:,}",
                        f"{1000 * scale['index_s']:.1f}",
                        f"{scale['scan_s']:.1f}",
                        f"{len(scale['index_found'])} / {len(scale['scan_found'])}",
                        f"{scale['index_sets']:,}",
                        f"{scale['index_bytes'] / 2**20:,.0f}",
                        f"{scale['index_bytes'] / scale['stored']:.0f}",
                        f"{scale['used_bytes'] / 2**20:,.0f}",
                    ]
                ],
            ),
        ]
    )
