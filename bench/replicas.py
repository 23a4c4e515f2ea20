"""Several gateways behind a load balancer: three replicas on one PostgreSQL and one Redis.

The shared database holds the large policy (bench/decisions.py). Clients spread their requests over
the replicas (each client starts at a different one and moves on after every request) and retry on
the next replica when one fails them. Mid-load one replica is killed with SIGKILL. Meanwhile a
policy change is made through one replica's admin API (before the kill and after it), and every
other live replica is polled until its decision changes: "committed on A → changed on B".
Afterwards every request answered by a surviving replica must have left exactly one audit event.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from secrets import token_urlsafe
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from bench import decisions
from bench.profile import Profile
from bench.stack import BenchStack, Service, auth_headers, user_token
from bench.summary import Target, table
from gateway.store.db import create_engine

REPLICAS = 3
PROPAGATION_TARGET_S = 1.0
GET = "/api/2.0/mlflow/experiments/get?experiment_id=0"
RETRYABLE = (502, 503, 504)
TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=2)


@dataclass
class LoadLog:
    answered: dict[str, list[str]] = field(default_factory=dict)  # replica → request ids
    retried: int = 0
    failed: list[str] = field(default_factory=list)
    attempts: Counter[str] = field(default_factory=Counter)


async def store_large_policy(database_url: str, profile: Profile) -> dict[str, int]:
    workload = decisions.WORKLOADS[profile.replica_policy]
    policy = decisions.generate(workload, decisions.SEED + workload.rules, n_requests=1)
    engine = create_engine(database_url)
    try:
        await decisions.store_policy(engine, policy)
    finally:
        await engine.dispose()
    return {"rules": len(policy.rules), "groupings": len(policy.groupings)}


def start(stack: BenchStack, upstream: Service, database_url: str) -> list[Service]:
    # One database, so one bootstrap admin: whichever replica starts first creates it.
    shared = {"GATEWAY_DATABASE_URL": database_url, "GATEWAY_ADMIN_PASSWORD": token_urlsafe(24)}
    return [
        stack.start_gateway(f"replica-{i}", upstream, keepalive=False, extra_env=shared)
        for i in range(REPLICAS)
    ]


async def _one(
    session: aiohttp.ClientSession,
    replicas: list[Service],
    start_at: int,
    headers: dict[str, str],
    log: LoadLog,
) -> None:
    """One request; on a connection failure or a 5xx from a replica, the next replica."""
    for attempt in range(2 * len(replicas)):
        replica = replicas[(start_at + attempt) % len(replicas)]
        log.attempts[replica.name] += 1
        try:
            async with session.get(replica.url + GET, headers=headers) as response:
                await response.read()
                status, request_id = response.status, response.headers.get("X-Request-Id", "")
        except (aiohttp.ClientError, TimeoutError):
            status = 0
        if status == 200:
            log.answered.setdefault(replica.name, []).append(request_id)
            log.retried += attempt > 0
            return
        if status and status not in RETRYABLE:
            log.failed.append(f"{replica.name}: HTTP {status}")
            return
        await asyncio.sleep(0.05)  # refused, reset or 5xx: the next replica
    log.failed.append("no replica answered")


async def _load(
    replicas: list[Service], token: str, clients: int, stop: asyncio.Event, log: LoadLog
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    # A fresh connection per request, as behind a load balancer that spreads requests.
    connector = aiohttp.TCPConnector(force_close=True, limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as session:

        async def client(number: int) -> None:
            turn = number
            while not stop.is_set():
                await _one(session, replicas, turn, headers, log)
                turn += 1

        await asyncio.gather(*(client(n) for n in range(clients)))


async def _allowed(session: aiohttp.ClientSession, replica: Service, token: str) -> bool:
    async with session.get(replica.url + GET, headers={"Authorization": f"Bearer {token}"}) as r:
        await r.read()
        return r.status == 200


async def _propagation(
    via: Service, watchers: list[Service], admin: dict[str, str], token: str, subject: str
) -> dict[str, float]:
    """Grant ``subject`` read through ``via``'s admin API; seconds until each watcher agrees."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        for replica in watchers:
            assert not await _allowed(session, replica, token), "granted before the change"
        rule = {"subject": subject, "object": "experiment:0", "action": "read"}
        async with session.post(
            via.url + "/.gateway/api/policy/rules", json=rule, headers=admin
        ) as response:
            body = await response.text()
            if response.status != 200:
                raise RuntimeError(f"admin API refused the rule: {response.status} {body}")
        committed = time.perf_counter()
        seen: dict[str, float] = {}
        while len(seen) < len(watchers) and time.perf_counter() - committed < 10:
            for replica in watchers:
                if replica.name not in seen and await _allowed(session, replica, token):
                    seen[replica.name] = time.perf_counter() - committed
            await asyncio.sleep(0.002)
        return {r.name: seen.get(r.name, float("inf")) for r in watchers}


async def _audited(redis_url: str, ids: set[str]) -> Counter[str]:
    client = aioredis.Redis.from_url(redis_url)
    found: Counter[str] = Counter()
    cursor = "-"
    try:
        while True:
            entries = await client.xrange("mlgw:audit", min=cursor, count=10_000)
            for _, fields in entries:
                event = json.loads(fields[b"e"])
                if event.get("request_id") in ids:
                    found[event["request_id"]] += 1
            if len(entries) < 10_000:
                return found
            cursor = "(" + entries[-1][0].decode()
    finally:
        await client.aclose()


async def run(stack: BenchStack, replicas: list[Service], profile: Profile) -> dict[str, Any]:
    first = replicas[0]
    load_token = await user_token(
        first, "bench-replica", "p, user:bench-replica, experiment:0, edit"
    )
    watcher_tokens = [await user_token(first, f"bench-watcher-{n}") for n in range(2)]
    admin = await auth_headers(first)
    log, stop = LoadLog(), asyncio.Event()
    load = asyncio.create_task(_load(replicas, load_token, profile.replica_clients, stop, log))
    quarter = profile.replica_load_seconds / 4
    await asyncio.sleep(quarter)
    before_kill = await _propagation(
        first, replicas[1:], admin, watcher_tokens[0], "user:bench-watcher-0"
    )
    await asyncio.sleep(quarter)
    victim = replicas[-1]
    os.kill(victim.pid, signal.SIGKILL)
    killed_at = sum(len(v) for v in log.answered.values())
    await asyncio.sleep(quarter)
    survivors = replicas[:-1]
    after_kill = await _propagation(
        survivors[-1], survivors[:-1], admin, watcher_tokens[1], "user:bench-watcher-1"
    )
    await asyncio.sleep(quarter)
    stop.set()
    await load
    await asyncio.sleep(1.0)  # the survivors' writers linger a few ms; leave them time
    survivor_ids = {i for r in survivors for i in log.answered.get(r.name, [])}
    audited = await _audited(stack.redis_url, survivor_ids | set(log.answered.get(victim.name, [])))
    missing = [i for i in survivor_ids if audited[i] == 0]
    duplicated = [i for i in survivor_ids if audited[i] > 1]
    victim_ids = log.answered.get(victim.name, [])
    return {
        "replicas": REPLICAS,
        "clients": profile.replica_clients,
        "load_seconds": profile.replica_load_seconds,
        "answered": {name: len(ids) for name, ids in log.answered.items()},
        "attempts": dict(log.attempts),
        "answered_before_kill": killed_at,
        "retried": log.retried,
        "failed": log.failed[:10],
        "failed_count": len(log.failed),
        "survivor_requests": len(survivor_ids),
        "survivor_events_missing": len(missing),
        "survivor_events_duplicated": len(duplicated),
        "killed_requests": len(victim_ids),
        "killed_events_found": sum(1 for i in victim_ids if audited[i]),
        "propagation_s": {"3 replicas": before_kill, "2 survivors": after_kill},
    }


def _slowest(results: dict[str, Any]) -> float:
    return max(t for round_ in results["propagation_s"].values() for t in round_.values())


def failures(results: dict[str, Any]) -> list[str]:
    found = []
    if results["failed_count"]:
        found.append(f"replicas: {results['failed_count']} requests failed despite retries")
    if results["survivor_events_missing"] or results["survivor_events_duplicated"]:
        found.append(
            f"replicas: {results['survivor_events_missing']} audit events missing, "
            f"{results['survivor_events_duplicated']} duplicated"
        )
    if _slowest(results) == float("inf"):
        found.append("replicas: a policy change never reached a replica")
    return found


def targets(results: dict[str, Any], profile: Profile) -> list[Target]:
    slowest = _slowest(results)
    policy = results["policy"]
    return [
        Target(
            "Replicas",
            f"{REPLICAS} replicas, one SIGKILLed mid-load: requests that retried",
            f"{sum(results['answered'].values()):,} answered, {results['retried']} retried, "
            f"{results['failed_count']} failed",
            "all succeed",
            f"{results['clients']} clients, {results['load_seconds']:g} s",
            results["failed_count"] == 0,
        ),
        Target(
            "Replicas",
            "audit events of requests answered by survivors",
            f"{results['survivor_requests'] - results['survivor_events_missing']:,} of "
            f"{results['survivor_requests']:,} (duplicates: "
            f"{results['survivor_events_duplicated']})",
            "none lost",
            f"killed replica: {results['killed_events_found']:,} of "
            f"{results['killed_requests']:,} were out before the kill",
            not results["survivor_events_missing"] and not results["survivor_events_duplicated"],
        ),
        Target(
            "Replicas",
            f"policy change committed on one replica → changed on the others "
            f"({policy['rules']:,} rules)",
            f"slowest {slowest * 1000:,.0f} ms",
            f"≤ {PROPAGATION_TARGET_S:g} s",
            "; ".join(
                f"{label}: " + ", ".join(f"{t * 1000:,.0f} ms" for t in seen.values())
                for label, seen in results["propagation_s"].items()
            ),
            slowest <= PROPAGATION_TARGET_S if profile.judged else None,
        ),
    ]


def render(results: dict[str, Any]) -> str:
    rows = [
        [
            name,
            f"{results['attempts'].get(name, 0):,}",
            f"{results['answered'].get(name, 0):,}",
        ]
        for name in sorted(results["attempts"])
    ]
    policy = results["policy"]
    return "\n".join(
        [
            "### Several replicas",
            "",
            f"{results['replicas']} gateways on one PostgreSQL database holding "
            f"{policy['rules']:,} rules and {policy['groupings']:,} `g` lines, one Redis, "
            f"in front of the same MLflow; {results['clients']} clients for "
            f"{results['load_seconds']:g} s, a new connection per request, each request to "
            "the next replica in turn and, when one fails, retried on the next. The last "
            f"replica was SIGKILLed after {results['answered_before_kill']:,} answers. Full "
            f"policy load at start: every replica read and indexed the policy before it was "
            "ready.",
            "",
            table(["Replica", "requests sent to it", "answered"], rows),
            "",
            f"Retried: {results['retried']}; failed after retries: {results['failed_count']}. "
            f"Audit: {results['survivor_requests'] - results['survivor_events_missing']:,} of "
            f"the {results['survivor_requests']:,} requests answered by survivors have their "
            f"event ({results['survivor_events_duplicated']} twice); of the killed replica's "
            f"{results['killed_requests']:,} answers, {results['killed_events_found']:,} had "
            "reached Redis before the kill (its queue of a few milliseconds dies with it).",
            "",
            "Policy change, from the admin API's answer on one replica to the first changed "
            "decision on each other live replica (polled every 2 ms): "
            + "; ".join(
                f"{label}: " + ", ".join(f"{name} {t * 1000:,.0f} ms" for name, t in seen.items())
                for label, seen in results["propagation_s"].items()
            )
            + ".",
        ]
    )
