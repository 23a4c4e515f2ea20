"""Runs the whole benchmark: start the stack, measure, stop the stack, report.

Results go to bench/results/<time>-<profile>.json; a full run also rewrites the generated section
of docs/benchmarks.md (a --quick smoke run does not, its numbers are too thin to publish).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from bench import report
from bench.artifacts import Payload, RoundTrip, abba_order, round_trip, watching_memory
from bench.diagnose import ProbeResult, ProbeServer, run_probes
from bench.small import (
    DIRECT,
    GATEWAY_KEEPALIVE_OFF,
    GATEWAY_KEEPALIVE_ON,
    Cell,
    LatencyResult,
    Target,
    ThroughputResult,
    make_cells,
    measure_latency,
    measure_throughput,
)
from bench.stack import MLFLOW_WORKERS, BenchStack, Service, StackError, auth_headers

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
DOCS = REPO / "docs" / "benchmarks.md"
MIB = 1024**2
GATEWAY = "gateway"


@dataclass(frozen=True)
class Profile:
    name: str
    latency_requests: int  # sequential, per cell, after warm-up
    warmup: int
    latency_rounds: int
    throughput_seconds: float  # per cell
    throughput_rounds: int
    concurrency: int
    artifact_bytes: int
    artifact_repetitions: int  # per path, in A B B A order
    probe_requests: int
    single_worker_probe: bool  # one more MLflow, to show the slowdown needs several workers
    mlflow_workers: int = MLFLOW_WORKERS
    rss_target_mb: int = 100  # decimal megabytes, like the MB/s figures


FULL = Profile("full", 300, 20, 6, 10.0, 2, 16, 1024 * MIB, 2, 30, True)
QUICK = Profile("quick", 30, 3, 2, 1.5, 1, 16, 128 * MIB, 1, 10, False)


@dataclass
class Services:
    mlflow: Service
    single_worker_mlflow: Service | None
    gateway_off: Service
    gateway_on: Service
    gateway_artifacts: Service
    # Per gateway name: the Authorization header its clients send (empty without authentication).
    auth: dict[str, dict[str, str]] = field(default_factory=dict)

    def headers(self, gateway: Service) -> tuple[tuple[str, str], ...]:
        return tuple(self.auth.get(gateway.name, {}).items())


class Clock:
    def __init__(self) -> None:
        self.started = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def step(self, message: str) -> None:
        print(f"[{self.elapsed:6.1f}s] {message}", flush=True)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke run, < 2 minutes, no docs")
    parser.add_argument("--no-docs", action="store_true", help="do not touch docs/benchmarks.md")
    parser.add_argument("--keep-temp", action="store_true", help="keep logs and data afterwards")
    return parser.parse_args(argv)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # SystemExit unwinds through every finally: children stopped, temp dir removed.
    raise SystemExit(128 + signum)


def _start(stack: BenchStack, profile: Profile) -> Services:
    stack.start_redis()
    mlflow = stack.start_mlflow("mlflow", profile.mlflow_workers)
    single = stack.start_mlflow("mlflow-1-worker", 1) if profile.single_worker_probe else None
    return Services(
        mlflow=mlflow,
        single_worker_mlflow=single,
        gateway_off=stack.start_gateway("gateway-keepalive-off", mlflow, keepalive=False),
        gateway_on=stack.start_gateway("gateway-keepalive-on", mlflow, keepalive=True),
        # Idle until the artifact test: no earlier traffic has shaped its memory.
        gateway_artifacts=stack.start_gateway("gateway-artifacts", mlflow, keepalive=False),
    )


def _small_rows(
    cells: list[Cell],
    latency: dict[str, LatencyResult],
    throughput: dict[str, ThroughputResult],
) -> list[dict[str, Any]]:
    rows = []
    for cell in cells:
        lat, tp = latency[cell.key], throughput[cell.key]
        rows.append(
            {
                "endpoint": cell.endpoint.name,
                "target": cell.target.name,
                "client": cell.client,
                "p50_ms": lat.percentile(50),
                "p95_ms": lat.percentile(95),
                "p99_ms": lat.percentile(99),
                "latency_errors": lat.errors,
                "requests_per_second": tp.per_second,
                "throughput_completed": tp.completed,
                "throughput_seconds": tp.seconds,
                "throughput_wall_seconds": tp.wall_seconds,
                "throughput_errors": tp.errors,
                "latency_samples_ms": [round(s, 3) for s in lat.samples_ms],
            }
        )
    return rows


async def _small(services: Services, profile: Profile, clock: Clock) -> list[dict[str, Any]]:
    gateway_off, gateway_on = services.gateway_off, services.gateway_on
    targets = [
        Target(DIRECT, services.mlflow.url),
        Target(GATEWAY_KEEPALIVE_OFF, services.gateway_off.url, services.headers(gateway_off)),
        Target(GATEWAY_KEEPALIVE_ON, services.gateway_on.url, services.headers(gateway_on)),
    ]
    cells = make_cells(targets)
    clock.step(f"latency: {len(cells)} cells x {profile.latency_requests} sequential requests")
    latency = await measure_latency(
        cells, profile.latency_requests, profile.warmup, profile.latency_rounds
    )
    clock.step(
        f"throughput: {len(cells)} cells x {profile.throughput_seconds:g}s, "
        f"{profile.concurrency} concurrent clients"
    )
    throughput = await measure_throughput(
        cells, profile.concurrency, profile.throughput_seconds, profile.throughput_rounds
    )
    return _small_rows(cells, latency, throughput)


def _probe_rows(probes: list[ProbeResult]) -> list[dict[str, Any]]:
    return [
        {
            "label": p.label,
            "first_ms": p.first_ms,
            "reused_median_ms": p.reused_median_ms,
            "reused_ms": [round(v, 3) for v in p.reused_ms],
            "server_segments": p.server_segments_per_response,
            "client_ato_ms": p.client_ato_ms,
            "server_tcp_nodelay": p.server_tcp_nodelay,
            "non_200": p.non_200,
        }
        for p in probes
    ]


async def _probes(services: Services, profile: Profile, clock: Clock) -> list[dict[str, Any]]:
    clock.step("keep-alive slowdown probe (raw sockets)")
    multi = services.mlflow
    single = services.single_worker_mlflow
    gateway = services.gateway_off
    probes = await run_probes(
        ProbeServer(f"MLflow {profile.mlflow_workers} workers", multi.port, multi.pid),
        None if single is None else ProbeServer("MLflow 1 worker", single.port, single.pid),
        ProbeServer(
            "gateway (upstream keep-alive off)",
            gateway.port,
            gateway.pid,
            services.headers(gateway),
        ),
        profile.probe_requests,
    )
    return _probe_rows(probes)


def _trip_row(trip: RoundTrip) -> dict[str, Any]:
    row = asdict(trip)
    row.update(upload_mb_s=trip.upload_mb_s, download_mb_s=trip.download_mb_s, ok=trip.ok)
    return row


def _path_summary(trips: list[RoundTrip]) -> dict[str, Any]:
    """Bytes over seconds summed across repetitions, and each repetition's own rate."""
    return {
        "upload_mb_s": sum(t.size for t in trips) / sum(t.upload_seconds for t in trips) / 1e6,
        "download_mb_s": sum(t.downloaded_bytes for t in trips)
        / sum(t.download_seconds for t in trips)
        / 1e6,
        "upload_mb_s_each": [t.upload_mb_s for t in trips],
        "download_mb_s_each": [t.download_mb_s for t in trips],
        "verified": all(t.sha256_ok for t in trips),
        "ok": all(t.ok for t in trips),
    }


async def _artifacts(
    stack: BenchStack, services: Services, profile: Profile, clock: Clock
) -> dict[str, Any]:
    payload = Payload.random(profile.artifact_bytes)
    expected = await asyncio.to_thread(payload.sha256)
    folder = stack.artifacts_dir(services.mlflow)
    gateway = services.gateway_artifacts
    base_urls = {DIRECT: services.mlflow.url, GATEWAY: gateway.url}
    auth = {DIRECT: {}, GATEWAY: services.auth.get(gateway.name, {})}
    trips: list[RoundTrip] = []
    async with watching_memory(gateway.pid) as memory:
        for via in abba_order(DIRECT, GATEWAY, profile.artifact_repetitions):
            clock.step(f"artifact round trip, {payload.size / 1024**3:.3g} GiB, {via}")
            trip = await round_trip(via, base_urls[via], auth[via], payload, expected, folder)
            trips.append(trip)
    return {
        "size": profile.artifact_bytes,
        "repetitions": profile.artifact_repetitions,
        "paths": {via: _path_summary([t for t in trips if t.via == via]) for via in base_urls},
        "round_trips": [_trip_row(t) for t in trips],
        "gateway_upstream_keepalive": False,
        "gateway_startup_peak_rss_mib": memory.startup_hwm_kib / 1024,
        "gateway_peak_reset_before_transfers": memory.hwm_reset,
        "gateway_baseline_rss_mib": memory.baseline_rss_kib / 1024,
        "gateway_sampled_max_rss_mib": memory.sampled_max_rss_kib / 1024,
        "gateway_peak_rss_mib": memory.peak_hwm_kib / 1024,
    }


async def _measure(stack: BenchStack, profile: Profile, clock: Clock) -> dict[str, Any]:
    services = _start(stack, profile)
    clock.step(f"started MLflow, Redis and gateways under {stack.root}; waiting until ready")
    every = [
        services.mlflow,
        services.gateway_off,
        services.gateway_on,
        services.gateway_artifacts,
    ]
    if services.single_worker_mlflow is not None:
        every.append(services.single_worker_mlflow)
    await stack.wait_ready(every)
    gateways = [services.gateway_off, services.gateway_on, services.gateway_artifacts]
    tokens = await asyncio.gather(*(auth_headers(g) for g in gateways))
    services.auth = {g.name: headers for g, headers in zip(gateways, tokens, strict=True)}
    clock.step("all ready" + (", clients authenticate with gateway tokens" if any(tokens) else ""))
    return {
        "gateway_auth": "Bearer gateway token (admin)" if any(tokens) else "none",
        "small": await _small(services, profile, clock),
        "probes": await _probes(services, profile, clock),
        "artifacts": await _artifacts(stack, services, profile, clock),
    }


def _command(argv: list[str]) -> str:
    python = Path(sys.executable)
    shown = python.relative_to(REPO) if python.is_relative_to(REPO) else python
    return " ".join([str(shown), "bench/run.py", *argv])


def _save(results: dict[str, Any], profile: Profile) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"{stamp}-{profile.name}.json"
    path.write_text(json.dumps(results, indent=2, allow_nan=True) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parse_args(argv)
    profile = QUICK if args.quick else FULL
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    clock = Clock()
    started_utc = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
    loadavg_start = os.getloadavg()[0]
    stack = BenchStack(keep_temp=args.keep_temp)
    try:
        measured = asyncio.run(_measure(stack, profile, clock))
    except StackError as exc:
        print(f"bench: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        clock.step("stopping every child process")
        stack.close()
    results = {
        "command": _command(argv),
        "profile": asdict(profile),
        "started_utc": started_utc,
        "duration_s": clock.elapsed,
        "loadavg_start": loadavg_start,
        "loadavg_end": os.getloadavg()[0],
        "machine": report.machine_info(),
        **measured,
    }
    saved = _save(results, profile)
    print("\n" + report.terminal_report(results) + "\n", flush=True)
    print(f"raw results: {saved.relative_to(REPO)}; took {clock.elapsed:.0f}s", flush=True)
    if profile is FULL and not args.no_docs:
        report.update_docs(DOCS, report.render_section(results), preamble="# Benchmarks\n")
        print(f"updated {DOCS.relative_to(REPO)}", flush=True)
    artifacts_ok = all(t["ok"] for t in measured["artifacts"]["round_trips"])
    return 0 if artifacts_ok and not report.failed_cells(results) else 1
