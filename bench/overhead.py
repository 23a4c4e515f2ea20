"""What the gateway adds to a request: against a trivial upstream that answers at once, so nothing
but the gateway's own work is measured.

Ways to the same upstream, each with a keep-alive client (as the mlflow client is): direct; a
bare aiohttp forwarder (bench/bare_forwarder.py, the least any aiohttp proxy costs); the gateway
as shipped (upstream keep-alive on) with a token, a password and a browser-session caller; the
gateway with upstream keep-alive off; the gateway with its audit trail off. The caller is a
non-admin user with a grant on the experiment it reads (`GET experiments/get`), so every request is
authenticated, routed, judged, forwarded and audited. Sequential latency in rotated rounds; then
concurrent load with each process's CPU time, for requests per CPU-second (throughput per core);
then every request must have left exactly one audit event.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import redis.asyncio as aioredis

from bench.profile import Profile
from bench.small import (
    KEEPALIVE,
    Cell,
    Endpoint,
    LatencyResult,
    Target,
    measure_latency,
    measure_throughput,
)
from bench.stack import BenchStack, Service, cpu_seconds, user_credentials
from bench.summary import Target as Row
from bench.summary import table

PATH = "/api/2.0/mlflow/experiments/get"
GET_EXPERIMENT = Endpoint("experiments/get", "GET", PATH + "?experiment_id=0")
DIRECT = "direct"
BARE = "bare aiohttp forwarder"
GATEWAY_ON = "gateway (default), token caller"
GATEWAY_PASSWORD = "gateway (default), password caller"
GATEWAY_SESSION = "gateway (default), browser-session caller"
GATEWAY_OFF = "gateway, upstream keep-alive off, token caller"
GATEWAY_NO_AUDIT = "gateway (default), audit off, token caller"
# Callers of the default gateway judged against the target.
JUDGED = (GATEWAY_ON, GATEWAY_PASSWORD, GATEWAY_SESSION)
ADDED_P50_TARGET_MS = 0.3
GRANT = "p, user:bench-reader, experiment:0, read"
STREAM = "mlgw:audit"


def start(stack: BenchStack, profile: Profile) -> dict[str, Service]:
    upstream = stack.start_trivial_upstream()
    on = stack.start_gateway("gateway-trivial-on", upstream, keepalive=True)
    off = on if profile.share_gateways else None
    return {
        DIRECT: upstream,
        BARE: stack.start_bare_forwarder(upstream),
        GATEWAY_ON: on,
        GATEWAY_PASSWORD: on,
        GATEWAY_SESSION: on,
        GATEWAY_OFF: off or stack.start_gateway("gateway-trivial-off", upstream, keepalive=False),
        # What the audit trail costs a request (GATEWAY_AUDIT_ENABLED exists to measure this).
        GATEWAY_NO_AUDIT: on
        if profile.share_gateways
        else stack.start_gateway(
            "gateway-trivial-no-audit",
            upstream,
            keepalive=True,
            extra_env={"GATEWAY_AUDIT_ENABLED": "false"},
        ),
    }


async def _request_events_by_pid(redis_url: str, pids: dict[int, str]) -> dict[str, int]:
    """Request events in the stream, per gateway (its instance id carries its pid)."""
    client = aioredis.Redis.from_url(redis_url)
    counts = dict.fromkeys(pids.values(), 0)
    try:
        cursor = "-"
        while True:
            entries = await client.xrange(STREAM, min=cursor, count=10_000)
            for _, fields in entries:
                event = json.loads(fields[b"e"])
                if event.get("type") != "request" or event["http"]["path"] != PATH:
                    continue  # the admin API calls that made the user are audited too
                pid = int(str(event["instance"]).split("-")[-2])
                if pid in pids:
                    counts[pids[pid]] += 1
            if len(entries) < 10_000:
                return counts
            cursor = "(" + entries[-1][0].decode()
    finally:
        await client.aclose()


async def run(stack: BenchStack, services: dict[str, Service], profile: Profile) -> dict[str, Any]:
    names = (GATEWAY_ON, GATEWAY_PASSWORD, GATEWAY_SESSION, GATEWAY_OFF, GATEWAY_NO_AUDIT)
    gateways = {name: services[name] for name in names}
    distinct = {svc.name: svc for svc in gateways.values()}  # a smoke run shares one
    made = {
        svc.name: await user_credentials(svc, "bench-reader", GRANT) for svc in distinct.values()
    }

    def headers(name: str) -> tuple[tuple[str, str], ...]:
        if name not in gateways:
            return ()
        who = made[gateways[name].name]
        if name == GATEWAY_PASSWORD:
            return tuple(who.password.items())
        if name == GATEWAY_SESSION:
            return (("Cookie", who.session_cookie),)
        return (("Authorization", f"Bearer {who.token}"),)

    targets = [Target(name, svc.url, headers(name)) for name, svc in services.items()]
    cells = [Cell(GET_EXPERIMENT, target, KEEPALIVE) for target in targets]
    warmup = 20
    latency = await measure_latency(
        cells, profile.overhead_requests * profile.overhead_rounds, warmup, profile.overhead_rounds
    )
    sent = {
        c.target.name: warmup + (profile.overhead_requests + 2) * profile.overhead_rounds
        for c in cells
    }
    throughput: dict[str, dict[str, float]] = {}
    for cell in cells:
        pid = services[cell.target.name].pid
        cpu_before, started = cpu_seconds(pid), time.perf_counter()
        result = (await measure_throughput([cell], 16, profile.overhead_seconds, 1))[cell.key]
        cpu = cpu_seconds(pid) - cpu_before
        throughput[cell.target.name] = {
            "requests_per_second": result.per_second,
            "completed": result.completed,
            "errors": result.errors,
            "cpu_seconds": cpu,
            "wall_seconds": time.perf_counter() - started,
            "requests_per_cpu_second": result.completed / cpu if cpu else float("nan"),
        }
        # Every answered request of the gateway (also the warm-ups of the load) must be audited.
        sent[cell.target.name] += result.completed + result.errors + 16
    audited = {
        name: svc
        for name, svc in gateways.items()
        if svc.env.get("GATEWAY_AUDIT_ENABLED") != "false"
    }
    expected = {svc.name: 0 for svc in audited.values()}
    for name, svc in audited.items():
        expected[svc.name] += sent[name]
    pids = {svc.pid: svc.name for svc in audited.values()}
    deadline = time.monotonic() + 30
    while True:
        events = await _request_events_by_pid(stack.redis_url, pids)
        if all(events[n] >= expected[n] for n in expected) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    return {
        "requests": profile.overhead_requests * profile.overhead_rounds,
        "rounds": profile.overhead_rounds,
        "load_seconds": profile.overhead_seconds,
        "latency": {c.target.name: _latency_row(latency[c.key]) for c in cells},
        "throughput": throughput,
        "audit": {name: {"requests": expected[name], "events": events[name]} for name in expected},
    }


def _latency_row(result: LatencyResult) -> dict[str, Any]:
    return {
        "p50_ms": result.percentile(50),
        "p95_ms": result.percentile(95),
        "p99_ms": result.percentile(99),
        "errors": result.errors,
        "samples": len(result.samples_ms),
    }


def added_ms(results: dict[str, Any], name: str) -> float:
    lat = results["latency"]
    return lat[name]["p50_ms"] - lat[DIRECT]["p50_ms"]


def failures(results: dict[str, Any]) -> list[str]:
    found = []
    for name, row in results["latency"].items():
        if row["errors"] or results["throughput"][name]["errors"]:
            found.append(f"overhead: {name} answered errors")
    for name, row in results["audit"].items():
        if row["events"] != row["requests"]:
            found.append(
                f"overhead: {name} served {row['requests']} requests, audited {row['events']}"
            )
    return found


def targets(results: dict[str, Any], profile: Profile) -> list[Row]:
    tp = results["throughput"]
    bare = added_ms(results, BARE)
    rows = [
        Row(
            "Proxy overhead",
            f"added p50 latency, {name}",
            f"{added_ms(results, name):.2f} ms",
            f"≤ {ADDED_P50_TARGET_MS} ms" if name in JUDGED else "—",
            f"bare aiohttp forwarder adds {bare:.2f} ms; direct p50 "
            f"{results['latency'][DIRECT]['p50_ms']:.2f} ms",
            (added_ms(results, name) <= ADDED_P50_TARGET_MS)
            if profile.judged and name in JUDGED
            else None,
        )
        for name in (*JUDGED, GATEWAY_OFF)
        if name in results["latency"]
    ]
    lat = results["latency"]
    rows.append(
        Row(
            "Audit",
            "what the audit trail adds to a request (p50 / p95)",
            f"{lat[GATEWAY_ON]['p50_ms'] - lat[GATEWAY_NO_AUDIT]['p50_ms']:+.2f} ms / "
            f"{lat[GATEWAY_ON]['p95_ms'] - lat[GATEWAY_NO_AUDIT]['p95_ms']:+.2f} ms",
            "reported",
            f"audit off: p50 {lat[GATEWAY_NO_AUDIT]['p50_ms']:.2f} ms, "
            f"p95 {lat[GATEWAY_NO_AUDIT]['p95_ms']:.2f} ms",
            None,
        )
    )
    rows.append(
        Row(
            "Proxy overhead",
            "throughput per core (gateway, keep-alive on)",
            f"{tp[GATEWAY_ON]['requests_per_cpu_second']:,.0f} requests per CPU-second",
            "reported",
            f"bare forwarder {tp[BARE]['requests_per_cpu_second']:,.0f}/CPU-s",
            None,
        )
    )
    audit = results["audit"]
    rows.append(
        Row(
            "Audit",
            "events for requests under load",
            ", ".join(f"{r['events']:,} of {r['requests']:,}" for r in audit.values()),
            "no loss",
            "one event per request",
            all(r["events"] == r["requests"] for r in audit.values()),
        )
    )
    return rows


def render(results: dict[str, Any]) -> str:
    lat, tp = results["latency"], results["throughput"]
    rows = [
        [
            name,
            f"{row['p50_ms']:.2f}",
            f"{row['p95_ms']:.2f}",
            f"{row['p99_ms']:.2f}",
            "—" if name == DIRECT else f"{added_ms(results, name):+.2f}",
            f"{tp[name]['requests_per_second']:,.0f}",
            f"{tp[name]['cpu_seconds']:.1f}",
            f"{tp[name]['requests_per_cpu_second']:,.0f}",
            str(row["errors"] + tp[name]["errors"]),
        ]
        for name, row in lat.items()
    ]
    return "\n".join(
        [
            "### Proxy overhead (trivial upstream)",
            "",
            f"`GET experiments/get` through each path to a tiny aiohttp server that answers at "
            f"once: {results['requests']:,} sequential requests per path over a keep-alive "
            f"connection, in {results['rounds']} rotated rounds; then 16 concurrent clients for "
            f"{results['load_seconds']:g} s per path, with the "
            "CPU time of the process on the path (the upstream's own for *direct*). Through the "
            "gateways the client is a non-admin user with a gateway token, their password (basic "
            "auth) or a browser session cookie.",
            "",
            table(
                [
                    "Path",
                    "p50 ms",
                    "p95 ms",
                    "p99 ms",
                    "added p50 ms",
                    "req/s (16 clients)",
                    "CPU s of its process",
                    "requests per CPU-second",
                    "errors",
                ],
                rows,
            ),
        ]
    )
