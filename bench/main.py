"""`make bench`: every benchmark in one run, one table of targets, the docs section rewritten.

    .venv/bin/python bench/run.py                 # full run (under 15 minutes on 2 cores)
    .venv/bin/python bench/run.py --quick         # smoke run of every code path, nothing published
    .venv/bin/python bench/run.py --only search,replicas

The decision benchmark runs first, in this process, before anything else is started (it measures
microseconds). Then every server all the other benchmarks need starts at once (MLflow servers, a
private Redis, a trivial upstream, the gateways, a PostgreSQL database with the large policy) and
the benchmarks run one after the other. Raw results go to bench/results/<time>-<profile>.json; a
full run also rewrites the generated section of docs/benchmarks.md. The exit status is 1 when
something was wrong (wrong answers, lost events, failed requests), not when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from bench import audit, decisions, keepalive, overhead, replicas, report, search, workload
from bench.profile import FULL, QUICK, Profile
from bench.small import GATEWAY_KEEPALIVE_OFF, GATEWAY_KEEPALIVE_ON
from bench.stack import BenchStack, Service, StackError, auth_headers
from bench.summary import Target, summary_table

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
DOCS = REPO / "docs" / "benchmarks.md"
SECTIONS = ("decisions", "overhead", "workload", "keepalive", "search", "audit", "replicas")


class Clock:
    def __init__(self) -> None:
        self.started = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def step(self, message: str) -> None:
        print(f"[{self.elapsed:6.1f}s] {message}", flush=True)


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smoke run: small, fast, no docs")
    parser.add_argument("--no-docs", action="store_true", help="do not touch docs/benchmarks.md")
    parser.add_argument("--keep-temp", action="store_true", help="keep logs and data afterwards")
    parser.add_argument(
        "--results-dir", type=Path, default=RESULTS_DIR, help="where the raw JSON goes"
    )
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {', '.join(SECTIONS)}",
    )
    parser.add_argument(
        "--render",
        type=Path,
        metavar="RESULTS_JSON",
        help="measure nothing: rewrite the docs section from a saved full run",
    )
    args = parser.parse_args(argv)
    args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(
            f"unknown benchmark(s) {', '.join(sorted(unknown))}: use {', '.join(SECTIONS)}"
        )
    return args


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # SystemExit unwinds through every finally: children stopped, temp dir removed.
    raise SystemExit(128 + signum)


class Stack:
    """Every server the selected benchmarks need, started together."""

    def __init__(self, bench: BenchStack, profile: Profile, sections: list[str]) -> None:
        self.bench = bench
        self.mlflow: Service | None = None  # MLflow's default: 4 workers
        self.mlflow_1w: Service | None = None  # one worker: no delayed-ACK wait on reused sockets
        self.trivial: dict[str, Service] = {}
        self.workload: dict[str, Service] = {}
        self.keepalive: dict[str, Service] = {}
        self.replicas: list[Service] = []
        self.replica_policy: dict[str, int] = {}
        self.sections = sections
        self.profile = profile

    async def start(self, clock: Clock) -> None:
        wanted = set(self.sections)
        bench, profile = self.bench, self.profile
        bench.start_redis()
        if wanted & {"keepalive", "replicas"}:
            self.mlflow = bench.start_mlflow("mlflow", profile.mlflow_workers)
        if wanted & {"workload", "search"} or (
            "keepalive" in wanted and profile.single_worker_probe
        ):
            self.mlflow_1w = (
                self.mlflow
                if self.mlflow is not None and profile.mlflow_workers == 1
                else bench.start_mlflow("mlflow-1-worker", 1)
            )
        if wanted & {"overhead", "audit"}:
            self.trivial = overhead.start(bench, profile)
        if wanted & {"workload", "search"}:
            assert self.mlflow_1w is not None
            self.workload = workload.start(bench, self.mlflow_1w, profile)
        if "keepalive" in wanted:
            assert self.mlflow is not None
            self.keepalive = keepalive.start(bench, self.mlflow, profile)
        if "replicas" in wanted:
            assert self.mlflow is not None
            clock.step(f"storing the {profile.replica_policy} policy in a PostgreSQL database")
            database = bench.create_postgres_database()
            self.replica_policy = await replicas.store_large_policy(database, profile)
            self.replicas = replicas.start(bench, self.mlflow, database)
        every = [
            s
            for s in (
                self.mlflow,
                self.mlflow_1w,
                *self.trivial.values(),
                *self.workload.values(),
                *self.keepalive.values(),
                *self.replicas,
            )
            if s is not None
        ]
        clock.step(f"started {len(every)} servers under {bench.root}; waiting until ready")
        await bench.wait_ready(list({s.name: s for s in every}.values()))
        clock.step("all ready")


async def _measure(stack: Stack, profile: Profile, clock: Clock, results: dict[str, Any]) -> None:
    await stack.start(clock)
    sections = stack.sections
    if "overhead" in sections:
        clock.step("proxy overhead against a trivial upstream")
        results["overhead"] = await overhead.run(stack.bench, stack.trivial, profile)
    if "workload" in sections:
        clock.step("the mlflow client workload: direct, gateway, basic-auth app")
        results["workload"] = await workload.run(stack.workload, profile)
    if "keepalive" in sections:
        assert stack.mlflow is not None
        clock.step("small requests against MLflow, keep-alive probe")
        gateways = stack.keepalive
        auth = {
            g.name: await auth_headers(g) for g in {g.name: g for g in gateways.values()}.values()
        }
        section = await keepalive.small_and_probes(
            stack.mlflow,
            stack.mlflow_1w if profile.single_worker_probe else None,
            {k: gateways[k] for k in (GATEWAY_KEEPALIVE_OFF, GATEWAY_KEEPALIVE_ON)},
            auth,
            profile,
        )
        section["artifacts"] = await keepalive.artifacts(
            stack.bench, stack.mlflow, gateways[keepalive.GATEWAY], profile, clock.step
        )
        section["profile"] = asdict(profile)
        results["keepalive"] = section
    if "search" in sections:
        assert stack.mlflow_1w is not None
        clock.step(f"filtered search, {profile.search_experiments:,} experiments")
        results["search"] = await search.run(
            stack.bench, stack.mlflow_1w, stack.workload[workload.GATEWAY], profile
        )
    if "audit" in sections:
        clock.step(f"audit writer, {profile.audit_events:,} events while serving requests")
        results["audit"] = await audit.run(
            stack.bench.redis_url, stack.trivial[overhead.DIRECT], profile
        )
    if "replicas" in sections:
        clock.step(f"{replicas.REPLICAS} replicas, one killed mid-load")
        section = await replicas.run(stack.bench, stack.replicas, profile)
        section["policy"] = stack.replica_policy
        results["replicas"] = section


MODULES: dict[str, Any] = {
    "decisions": decisions,
    "overhead": overhead,
    "workload": workload,
    "keepalive": keepalive,
    "search": search,
    "audit": audit,
    "replicas": replicas,
}


def collect(results: dict[str, Any], profile: Profile) -> tuple[list[Target], list[str]]:
    targets: list[Target] = []
    problems: list[str] = []
    for name in SECTIONS:
        if name not in results:
            continue
        targets += MODULES[name].targets(results[name], profile)
        problems += MODULES[name].failures(results[name])
    return targets, problems


def render_docs(results: dict[str, Any], targets: list[Target]) -> str:
    m = results["machine"]
    parts = [
        report.BEGIN,
        "<!-- Generated by bench/run.py: edits between these markers are overwritten. -->",
        "",
        f"- Command: `{results['command']}` (took {results['duration_s'] / 60:.1f} min)",
        f"- Date: {results['started_utc']} (UTC)",
        f"- Machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram_gib']} GiB RAM, Linux {m['kernel']}; "
        f"Python {m['python']}, MLflow {m['mlflow']} (uvicorn {m['uvicorn']}), aiohttp "
        f"{m['aiohttp']}, pycasbin {results.get('decisions', {}).get('pycasbin', '—')}",
        f"- Load average (1 min) at start / end: {results['loadavg_start']:.2f} / "
        f"{results['loadavg_end']:.2f}"
        + (
            " — the machine was busy with other work during the run; absolute times are inflated"
            if max(results["loadavg_start"], results["loadavg_end"]) > results["machine"]["nproc"]
            else ""
        ),
        "",
        "### Targets",
        "",
        summary_table(targets),
        "",
    ]
    parts += [MODULES[name].render(results[name]) + "\n" for name in SECTIONS if name in results]
    parts.append(report.END)
    return "\n".join(parts)


def _command(argv: list[str]) -> str:
    python = Path(sys.executable)
    shown = python.relative_to(REPO) if python.is_relative_to(REPO) else python
    return " ".join([str(shown), "bench/run.py", *argv])


def rerender(path: Path) -> int:
    results = json.loads(path.read_text())
    profile = Profile(**results["profile"])
    targets, _ = collect(results, profile)
    report.update_docs(DOCS, render_docs(results, targets))
    print(summary_table(targets) + f"\nupdated {DOCS.relative_to(REPO)} from {path}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parse_args(argv)
    if args.render:
        return rerender(args.render)
    profile = QUICK if args.quick else FULL
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    clock = Clock()
    results: dict[str, Any] = {
        "command": _command(argv),
        "profile": asdict(profile),
        "started_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        "loadavg_start": os.getloadavg()[0],
        "machine": report.machine_info(),
    }
    if "decisions" in args.sections:
        clock.step("authorization decisions (in this process, nothing else running)")
        results["decisions"] = decisions.run(profile)
    others = [s for s in args.sections if s != "decisions"]
    if others:
        stack = Stack(BenchStack(keep_temp=args.keep_temp), profile, others)
        try:
            asyncio.run(_measure(stack, profile, clock, results))
        except StackError as exc:
            print(f"bench: {exc}", file=sys.stderr, flush=True)
            return 1
        finally:
            clock.step("stopping every child process")
            stack.bench.close()
    results["duration_s"] = clock.elapsed
    results["loadavg_end"] = os.getloadavg()[0]
    targets, problems = collect(results, profile)
    results["targets"] = [asdict(t) for t in targets]
    results["problems"] = problems
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    saved = args.results_dir / f"{stamp}-{profile.name}.json"
    saved.write_text(json.dumps(results, indent=2, allow_nan=True, default=str) + "\n")
    print("\n" + summary_table(targets) + "\n", flush=True)
    for problem in problems:
        print(f"PROBLEM: {problem}", flush=True)
    shown = saved.relative_to(REPO) if saved.is_relative_to(REPO) else saved
    print(f"raw results: {shown}; took {clock.elapsed:.0f} s", flush=True)
    if profile is FULL and not args.no_docs and set(args.sections) == set(SECTIONS):
        report.update_docs(DOCS, render_docs(results, targets))
        print(f"updated {DOCS.relative_to(REPO)}", flush=True)
    return 1 if problems else 0
