"""Audit benchmark: sustained events/s from one writer into Redis, and proxy latency with the
audit trail on vs off, side by side in one run.

    .venv/bin/python bench/audit.py            # results into docs/benchmarks.md (audit section)
    .venv/bin/python bench/audit.py --quick    # smoke run, prints only
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.audit.writer import AuditWriter  # noqa: E402
from gateway.devstack import (  # noqa: E402
    find_redis_server,
    free_port,
    http_ok,
    mlflow_server_argv,
    redis_server_argv,
    start_child,
    stop_child,
    wait_until,
)

DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- audit:begin -->", "<!-- audit:end -->"
GATEWAY = str(Path(sys.executable).with_name("mlflow-gateway"))


async def wait_http(url: str, seconds: float = 180) -> None:
    await wait_until(url, None, seconds, partial(http_ok, url))


async def writer_throughput(redis_url: str, spool: Path, events: int) -> dict[str, float]:
    """Emit `events` request-sized events as fast as possible; time until all are in Redis."""
    client = aioredis.Redis.from_url(redis_url)
    writer = AuditWriter(client, spool, "bench-writer")
    writer.start()
    template = {
        "type": "request",
        "actor": {
            "subject": "alice",
            "method": "token",
            "token_id": "abc123",
            "groups": ["team-a"],
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
        "decision": "allow",
        "upstream_status": 200,
        "latency_ms": 12.5,
    }
    started = time.perf_counter()
    for _ in range(events):
        event = writer.new("request")
        event.update(template)
        writer.emit(event)
    emitted = time.perf_counter() - started
    await writer.flush()
    total = time.perf_counter() - started
    stored = await client.xlen("mlgw:audit")
    await writer.stop()
    await client.aclose()
    return {
        "events": events,
        "stored": stored,
        "emit_s": emitted,
        "total_s": total,
        "per_s": events / total,
    }


async def latency(url: str, token: str, n: int) -> list[float]:
    headers = {"Authorization": f"Bearer {token}"}
    samples = []
    async with aiohttp.ClientSession() as session:
        for i in range(n + 20):
            started = time.perf_counter()
            async with session.get(
                f"{url}/api/2.0/mlflow/experiments/get?experiment_id=0", headers=headers
            ) as r:
                await r.read()
                assert r.status == 200
            if i >= 20:
                samples.append((time.perf_counter() - started) * 1000)
    return sorted(samples)


def pct(samples: list[float], q: float) -> float:
    return samples[min(len(samples) - 1, int(q * len(samples)))]


async def main(quick: bool) -> None:
    events = 20_000 if quick else 100_000
    requests = 100 if quick else 500
    work = Path(tempfile.mkdtemp(prefix="bench-audit-"))
    children = []
    try:
        redis_port = free_port()
        binary = find_redis_server()
        assert binary, "redis-server needed"
        children.append(
            start_child(
                "redis",
                redis_server_argv(binary, redis_port, work),
                work / "redis.log",
                dict(os.environ),
            )
        )
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        await asyncio.sleep(0.5)
        throughput = await writer_throughput(redis_url, work / "spool", events)

        mlflow_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "MLFLOW_"))}
        children.append(
            start_child(
                "mlflow", mlflow_server_argv(mlflow_port, work, 1), work / "mlflow.log", env
            )
        )
        await wait_http(f"http://127.0.0.1:{mlflow_port}/health")
        gateways: dict[str, tuple[str, str]] = {}
        for name, enabled in (("audit on", "true"), ("audit off", "false")):
            port = free_port()
            genv = {
                **env,
                "GATEWAY_UPSTREAM_URL": f"http://127.0.0.1:{mlflow_port}",
                "GATEWAY_REDIS_URL": redis_url,
                "GATEWAY_PORT": str(port),
                "GATEWAY_DATA_DIR": str(work / name.replace(" ", "-")),
                "GATEWAY_ADMIN_PASSWORD": "bench-admin-password",
                "GATEWAY_AUDIT_ENABLED": enabled,
                "GATEWAY_LOG_LEVEL": "WARNING",
            }
            child = start_child(f"gateway-{name}", [GATEWAY, "serve"], work / f"{name}.log", genv)
            children.append(child)
            await wait_http(f"http://127.0.0.1:{port}/.gateway/healthz")
            proc = await asyncio.create_subprocess_exec(
                GATEWAY,
                "tokens",
                "create",
                "bench",
                "--user",
                "admin",
                env=genv,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
            out, _ = await proc.communicate()
            gateways[name] = (f"http://127.0.0.1:{port}", out.decode().strip().splitlines()[-1])
        # Interleaved rounds in A B B A order, so that neither side gets the warmer machine.
        results: dict[str, list[float]] = {name: [] for name in gateways}
        names = list(gateways)
        for order in (names, names[::-1], names[::-1], names):
            for name in order:
                url, token = gateways[name]
                results[name] += await latency(url, token, requests // 4)
        results = {name: sorted(samples) for name, samples in results.items()}
    finally:
        for child in reversed(children):
            stop_child(child)

    rows = [
        f"| {name} | {statistics.median(s):.2f} | {pct(s, 0.95):.2f} | {pct(s, 0.99):.2f} |"
        for name, s in results.items()
    ]
    report = "\n".join(
        [
            BEGIN,
            "<!-- Generated by bench/audit.py: edits between these markers are overwritten. -->",
            "",
            "- Command: `.venv/bin/python bench/audit.py`",
            f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} (UTC); machine: {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}",
            "",
            "### Audit writer throughput (one process, private redis-server)",
            "",
            "| events | stored | emit (s) | until all in Redis (s) | events/s |",
            "|---|---|---|---|---|",
            f"| {throughput['events']} | {throughput['stored']} | {throughput['emit_s']:.2f} "
            f"| {throughput['total_s']:.2f} | {throughput['per_s']:,.0f} |",
            "",
            f"### Proxy latency, audit on vs off ({requests} sequential `GetExperiment`, "
            "MLflow 1 worker)",
            "",
            "| gateway | p50 ms | p95 ms | p99 ms |",
            "|---|---|---|---|",
            *rows,
            "",
            END,
        ]
    )
    print(report)
    print(json.dumps(throughput))
    if not quick:
        text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
        if BEGIN in text:
            text = text[: text.index(BEGIN)] + report + text[text.index(END) + len(END) :]
        else:
            text = text.rstrip() + "\n\n## Audit trail\n\n" + report + "\n"
        DOC.write_text(text)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    asyncio.run(main(parser.parse_args().quick))
