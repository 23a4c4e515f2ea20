"""Turns the results dictionary into Markdown tables, a verdict, and the docs/benchmarks.md section.

The results dictionary (also saved as JSON) is the only input, so a saved run can be re-rendered.
"""

from __future__ import annotations

import math
import os
import platform
import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from bench.small import (
    DIRECT,
    FRESH,
    GATEWAY_KEEPALIVE_OFF,
    GATEWAY_KEEPALIVE_ON,
    KEEPALIVE,
    SEARCH,
)

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _meminfo_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024**2
    return float("nan")


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": _cpu_model(),
        "ram_gib": round(_meminfo_gib(), 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "mlflow": _package_version("mlflow"),
        "uvicorn": _package_version("uvicorn"),
        "aiohttp": _package_version("aiohttp"),
    }


def _ms(value: float | None) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.1f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def small_table(results: dict[str, Any]) -> str:
    concurrency = results["profile"]["concurrency"]
    header = [
        "Endpoint",
        "Path",
        "Client connections",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        f"req/s ({concurrency} clients)",
        "Errors",
    ]
    rows = [
        [
            cell["endpoint"],
            cell["target"],
            cell["client"],
            _ms(cell["p50_ms"]),
            _ms(cell["p95_ms"]),
            _ms(cell["p99_ms"]),
            f"{cell['requests_per_second']:.0f}",
            str(cell["latency_errors"] + cell["throughput_errors"]),
        ]
        for cell in results["small"]
    ]
    return _table(header, rows)


def _mib_mb(mib: float) -> str:
    return f"{mib:.1f} MiB ({mib * 1024**2 / 1e6:.1f} MB)"


def memory_note(results: dict[str, Any]) -> str:
    art = results["artifacts"]
    peak_mb = art["gateway_peak_rss_mib"] * 1024**2 / 1e6
    target = results["profile"]["rss_target_mb"]
    since = (
        "VmHWM, reset just before the first transfer"
        if art["gateway_peak_reset_before_transfers"]
        else "VmHWM over the process's life (reset not permitted)"
    )
    growth = art["gateway_peak_rss_mib"] - art["gateway_baseline_rss_mib"]
    return (
        f"Gateway peak RSS during the transfers ({since}): {_mib_mb(art['gateway_peak_rss_mib'])}"
        f", target < {target} MB: " + ("**met**" if peak_mb < target else "**missed**") + "; "
        f"the transfers added {growth:.1f} MiB to the idle process. "
        f"Peak before the transfers, from start-up: {_mib_mb(art['gateway_startup_peak_rss_mib'])}."
    )


def _rates(summary: dict[str, Any], key: str) -> str:
    each = summary[f"{key}_each"]
    text = f"{summary[key]:.0f}"
    return text if len(each) < 2 else text + " (" + " / ".join(f"{v:.0f}" for v in each) + ")"


def artifact_table(results: dict[str, Any]) -> str:
    art = results["artifacts"]
    header = ["Path", "Size", "Upload MB/s", "Download MB/s", "Size + sha256", "Gateway RSS"]
    rows = []
    for via, summary in art["paths"].items():
        memory = "—"
        if via != DIRECT:
            memory = (
                f"peak {_mib_mb(art['gateway_peak_rss_mib'])}, "
                f"idle before {_mib_mb(art['gateway_baseline_rss_mib'])}"
            )
        rows.append(
            [
                "direct to MLflow" if via == DIRECT else "through the gateway",
                f"{art['size'] / 1024**3:.3g} GiB",
                _rates(summary, "upload_mb_s"),
                _rates(summary, "download_mb_s"),
                "ok" if summary["verified"] else "MISMATCH",
                memory,
            ]
        )
    return _table(header, rows)


def probe_table(results: dict[str, Any]) -> str:
    header = [
        "Raw-socket probe (GET experiments/search)",
        "1st request ms",
        "later requests, median ms",
        "server data segments / response",
        "client delayed-ACK timeout (ato) ms",
        "server socket TCP_NODELAY",
        "non-200",
    ]
    rows = [
        [
            probe["label"],
            _ms(probe["first_ms"]),
            _ms(probe["reused_median_ms"]),
            "—" if probe["server_segments"] is None else f"{probe['server_segments']:.1f}",
            "—" if probe["client_ato_ms"] is None else str(probe["client_ato_ms"]),
            "—" if probe["server_tcp_nodelay"] is None else str(probe["server_tcp_nodelay"]),
            str(probe["non_200"]),
        ]
        for probe in results["probes"]
    ]
    return _table(header, rows)


def _cell(results: dict[str, Any], endpoint: str, target: str, client: str) -> dict[str, Any]:
    for cell in results["small"]:
        if (cell["endpoint"], cell["target"], cell["client"]) == (endpoint, target, client):
            return dict(cell)
    raise KeyError((endpoint, target, client))


def failed_cells(results: dict[str, Any], tolerance: float = 0.01) -> list[str]:
    """Combinations with no latency samples or more than `tolerance` of requests failed."""
    failed = []
    for cell in results["small"]:
        errors = cell["latency_errors"] + cell["throughput_errors"]
        attempts = len(cell["latency_samples_ms"]) + cell["throughput_completed"] + errors
        if math.isnan(cell["p50_ms"]) or errors > tolerance * max(attempts, 1):
            failed.append(f"{cell['endpoint']} | {cell['target']} | {cell['client']}")
    return failed


def verdict(results: dict[str, Any]) -> str:
    """Which upstream policy made clients faster, counted over every endpoint and client mode."""
    failed = failed_cells(results)
    if failed:
        return (
            f"No verdict: requests failed in {len(failed)} of {len(results['small'])} "
            "combinations (see the Errors column and the gateway logs, `--keep-temp`)."
        )
    endpoints = sorted({c["endpoint"] for c in results["small"]})
    clients = sorted({c["client"] for c in results["small"]})
    off_wins_p50 = off_wins_rps = total = 0
    for endpoint in endpoints:
        for client in clients:
            off = _cell(results, endpoint, GATEWAY_KEEPALIVE_OFF, client)
            on = _cell(results, endpoint, GATEWAY_KEEPALIVE_ON, client)
            total += 1
            off_wins_p50 += off["p50_ms"] < on["p50_ms"]
            off_wins_rps += off["requests_per_second"] > on["requests_per_second"]
    search = SEARCH.name
    direct_ka = _cell(results, search, DIRECT, KEEPALIVE)
    direct_fresh = _cell(results, search, DIRECT, FRESH)
    off_ka = _cell(results, search, GATEWAY_KEEPALIVE_OFF, KEEPALIVE)
    on_ka = _cell(results, search, GATEWAY_KEEPALIVE_ON, KEEPALIVE)
    winner = "off" if off_wins_p50 * 2 > total else "on"
    return (
        f"Upstream keep-alive **off** had the lower p50 in {off_wins_p50} of {total} "
        f"endpoint/client combinations and the higher throughput in {off_wins_rps} of {total}. "
        f"For `experiments/search` with a keep-alive client (what the mlflow client does): direct "
        f"to MLflow p50 {_ms(direct_ka['p50_ms'])} ms (vs {_ms(direct_fresh['p50_ms'])} ms on a "
        f"new connection per request), through the gateway {_ms(off_ka['p50_ms'])} ms with "
        f"upstream keep-alive off and {_ms(on_ka['p50_ms'])} ms with it on. "
        f"Verdict for this MLflow (uvicorn, {results['profile']['mlflow_workers']} workers): "
        f"upstream keep-alive **{winner}** makes clients fastest"
        + (
            " — set `GATEWAY_UPSTREAM_KEEPALIVE=false` in front of this MLflow."
            if winner == "off"
            else " — keep `GATEWAY_UPSTREAM_KEEPALIVE=true` (the default)."
        )
    )


def repetitions_note(art: dict[str, Any]) -> str:
    reps = art["repetitions"]
    if reps < 2:
        return "One round trip per path."
    return (
        f"{reps} round trips per path, in A B B A order; MB/s is the total over both, "
        "each trip's own rate in parentheses."
    )


def update_docs(path: Path, section: str) -> None:
    """Replace the marked section; keep the prose around it."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
