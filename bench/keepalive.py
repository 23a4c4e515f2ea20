"""Small requests against the real MLflow, the keep-alive probe, and the large artifact.

These once set the upstream connection policy (keep-alive off in front of a multi-worker MLflow
whose answers on reused connections waited 40 ms for a delayed ACK; uvicorn 0.55 fixed it, and the
probe shows whether the MLflow in use has), show what the gateway adds to a real MLflow's `/health`
for token and password callers, and that artifacts stream through the gateway without its memory
growing. Tables: bench/report.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from bench import report
from bench.artifacts import Payload, RoundTrip, abba_order, round_trip, watching_memory
from bench.diagnose import ProbeResult, ProbeServer, run_probes
from bench.profile import Profile
from bench.small import (
    DIRECT,
    GATEWAY_KEEPALIVE_OFF,
    GATEWAY_KEEPALIVE_ON,
    GATEWAY_PASSWORD,
    HEALTH,
    KEEPALIVE,
    Cell,
    LatencyResult,
    Target,
    ThroughputResult,
    make_cells,
    measure_latency,
    measure_throughput,
)
from bench.stack import BenchStack, Service, admin_auth, auth_headers
from bench.summary import Target as Row

GATEWAY = "gateway"
ARTIFACT_RATIO_TARGET = 0.70
HEALTH_ADDED_TARGET_MS = 1.0


def start(stack: BenchStack, mlflow: Service, profile: Profile) -> dict[str, Service]:
    off = stack.start_gateway("gateway-keepalive-off", mlflow, keepalive=False)
    if profile.share_gateways:
        return dict.fromkeys((GATEWAY_KEEPALIVE_OFF, GATEWAY_KEEPALIVE_ON, GATEWAY), off)
    return {
        GATEWAY_KEEPALIVE_OFF: off,
        GATEWAY_KEEPALIVE_ON: stack.start_gateway("gateway-keepalive-on", mlflow, keepalive=True),
        # Idle until the artifact test: no earlier traffic has shaped its memory.
        GATEWAY: stack.start_gateway("gateway-artifacts", mlflow, keepalive=True),
    }


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


async def small_and_probes(
    mlflow: Service,
    single_worker: Service | None,
    gateways: dict[str, Service],
    auth: dict[str, dict[str, str]],
    profile: Profile,
) -> dict[str, Any]:
    off, on = gateways[GATEWAY_KEEPALIVE_OFF], gateways[GATEWAY_KEEPALIVE_ON]
    targets = [
        Target(DIRECT, mlflow.url),
        Target(GATEWAY_KEEPALIVE_OFF, off.url, tuple(auth[off.name].items())),
        Target(GATEWAY_KEEPALIVE_ON, on.url, tuple(auth[on.name].items())),
        Target(GATEWAY_PASSWORD, on.url, tuple(admin_auth(on).items())),
    ]
    cells = make_cells(targets)
    latency = await measure_latency(
        cells, profile.latency_requests, profile.warmup, profile.latency_rounds
    )
    throughput = await measure_throughput(
        cells, profile.concurrency, profile.throughput_seconds, profile.throughput_rounds
    )
    probes = await run_probes(
        ProbeServer(f"MLflow {profile.mlflow_workers} workers", mlflow.port, mlflow.pid),
        None
        if single_worker is None
        else ProbeServer("MLflow 1 worker", single_worker.port, single_worker.pid),
        ProbeServer(
            "gateway (upstream keep-alive off)", off.port, off.pid, tuple(auth[off.name].items())
        ),
        profile.probe_requests,
    )
    return {"small": _small_rows(cells, latency, throughput), "probes": _probe_rows(probes)}


async def artifacts(
    stack: BenchStack, mlflow: Service, gateway: Service, profile: Profile, step: Any
) -> dict[str, Any]:
    payload = Payload.random(profile.artifact_bytes)
    expected = await asyncio.to_thread(payload.sha256)
    folder = stack.artifacts_dir(mlflow)
    auth = {DIRECT: {}, GATEWAY: await auth_headers(gateway)}
    base_urls = {DIRECT: mlflow.url, GATEWAY: gateway.url}
    trips: list[RoundTrip] = []
    async with watching_memory(gateway.pid) as memory:
        for via in abba_order(DIRECT, GATEWAY, profile.artifact_repetitions):
            step(f"artifact round trip, {payload.size / 1024**3:.3g} GiB, {via}")
            trips.append(
                await round_trip(via, base_urls[via], auth[via], payload, expected, folder)
            )
    return {
        "size": profile.artifact_bytes,
        "repetitions": profile.artifact_repetitions,
        "paths": {via: _path_summary([t for t in trips if t.via == via]) for via in base_urls},
        "round_trips": [_trip_row(t) for t in trips],
        "gateway_upstream_keepalive": True,
        "gateway_startup_peak_rss_mib": memory.startup_hwm_kib / 1024,
        "gateway_peak_reset_before_transfers": memory.hwm_reset,
        "gateway_baseline_rss_mib": memory.baseline_rss_kib / 1024,
        "gateway_sampled_max_rss_mib": memory.sampled_max_rss_kib / 1024,
        "gateway_peak_rss_mib": memory.peak_hwm_kib / 1024,
    }


def failures(results: dict[str, Any]) -> list[str]:
    found = [f"small requests failed: {cell}" for cell in report.failed_cells(results)]
    if not all(t["ok"] for t in results["artifacts"]["round_trips"]):
        found.append("artifacts: a round trip failed or its bytes differ")
    return found


def _p50(results: dict[str, Any], endpoint: str, target: str) -> float:
    for cell in results["small"]:
        if (cell["endpoint"], cell["target"], cell["client"]) == (endpoint, target, KEEPALIVE):
            return float(cell["p50_ms"])
    raise KeyError(f"{endpoint} | {target}")


def health_rows(results: dict[str, Any], profile: Profile) -> list[Row]:
    """What the gateway adds to a real MLflow's cheapest answer, for a keep-alive client."""
    direct = _p50(results, HEALTH.name, DIRECT)
    rows = []
    for caller, target in (("token", GATEWAY_KEEPALIVE_ON), ("password", GATEWAY_PASSWORD)):
        added = _p50(results, HEALTH.name, target) - direct
        rows.append(
            Row(
                "Small requests",
                f"added p50 on MLflow `/health`, {caller} caller, keep-alive client",
                f"{added:.2f} ms",
                f"≤ {HEALTH_ADDED_TARGET_MS:g} ms",
                f"direct p50 {direct:.2f} ms",
                (added <= HEALTH_ADDED_TARGET_MS) if profile.judged else None,
            )
        )
    return rows


def targets(results: dict[str, Any], profile: Profile) -> list[Row]:
    art = results["artifacts"]
    paths = art["paths"]
    rows = health_rows(results, profile)
    for way in ("upload", "download"):
        direct, through = paths[DIRECT][f"{way}_mb_s"], paths[GATEWAY][f"{way}_mb_s"]
        rows.append(
            Row(
                "Artifacts",
                f"{art['size'] / 1024**3:.3g} GiB {way} through the gateway",
                f"{through:.0f} MB/s = {through / direct:.0%} of direct",
                f"≥ {ARTIFACT_RATIO_TARGET:.0%} of direct",
                f"direct {direct:.0f} MB/s",
                (through / direct >= ARTIFACT_RATIO_TARGET) if profile.judged else None,
            )
        )
    peak_mb = art["gateway_peak_rss_mib"] * 1024**2 / 1e6
    idle_mb = art["gateway_baseline_rss_mib"] * 1024**2 / 1e6
    rows.append(
        Row(
            "Artifacts",
            "gateway peak RSS during the transfers",
            f"{peak_mb:.1f} MB",
            f"< {profile.rss_target_mb} MB",
            f"idle before: {idle_mb:.1f} MB",
            (peak_mb < profile.rss_target_mb) if profile.judged else None,
        )
    )
    return rows


def render(results: dict[str, Any]) -> str:
    art = results["artifacts"]
    return "\n".join(
        [
            "### Small requests against MLflow (upstream connection policy)",
            "",
            report.small_table(results),
            "",
            report.verdict(results),
            "",
            f"### {art['size'] / 1024**3:.3g} GiB artifact round trip",
            "",
            report.artifact_table(results),
            "",
            report.repetitions_note(art),
            "",
            report.memory_note(results),
            "",
            "### Keep-alive slowdown probe",
            "",
            report.probe_table(results),
        ]
    )
