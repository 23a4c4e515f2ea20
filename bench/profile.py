"""How big each benchmark runs: the full run publishes numbers, the quick one exercises the code."""

from __future__ import annotations

from dataclasses import dataclass

from bench.stack import MLFLOW_WORKERS

MIB = 1024**2


@dataclass(frozen=True)
class Profile:
    name: str
    judged: bool  # targets are judged (full run) or only reported (smoke run)
    # Decisions: policies (bench/decisions.py WORKLOADS), sample size, pycasbin's time budget.
    decision_workloads: tuple[str, ...]
    decision_requests: int
    casbin_full_seconds: float
    reload_repeats: int
    # Proxy overhead against a trivial upstream: sequential requests per target and round, rounds,
    # seconds of concurrent load per target.
    overhead_requests: int
    overhead_rounds: int
    overhead_seconds: float
    # The mlflow client workload: runs per session; direct/gateway pairs of sessions (the ratio is
    # the median of the pairs' ratios); sessions of the (much slower) peer, spread among the pairs.
    workload_runs: int
    workload_pairs: int
    workload_peer_sessions: int
    # Small requests against MLflow and the keep-alive probe.
    latency_requests: int  # sequential, per cell, after warm-up
    warmup: int
    latency_rounds: int
    throughput_seconds: float  # per cell
    throughput_rounds: int
    concurrency: int
    probe_requests: int
    single_worker_probe: bool
    # The large artifact.
    artifact_bytes: int
    artifact_repetitions: int  # per path, in A B B A order
    # Filtered search at scale.
    search_experiments: int
    search_readable: int
    search_repeats: int
    # Audit writer; events in the stream for the search with and without the index.
    audit_events: int
    audit_search_events: int
    # Replicas: policy size in the shared database, seconds of load, concurrent clients.
    replica_policy: str
    replica_load_seconds: float
    replica_clients: int
    mlflow_workers: int = MLFLOW_WORKERS
    rss_target_mb: int = 100  # decimal megabytes, like the MB/s figures
    # One gateway plays every role of a benchmark that compares configurations (smoke runs).
    share_gateways: bool = False
    # An untimed session per path before the timed ones (the servers' first-use costs).
    workload_warmup: bool = True


FULL = Profile(
    name="full",
    judged=True,
    decision_workloads=("10k rules", "100k rules"),
    decision_requests=10_000,
    casbin_full_seconds=15.0,
    reload_repeats=3,
    overhead_requests=250,
    overhead_rounds=6,
    overhead_seconds=8.0,
    workload_runs=6,
    workload_pairs=10,
    workload_peer_sessions=2,
    latency_requests=100,
    warmup=10,
    latency_rounds=4,
    throughput_seconds=2.5,
    throughput_rounds=2,
    concurrency=16,
    probe_requests=20,
    single_worker_probe=True,
    artifact_bytes=1024 * MIB,
    artifact_repetitions=2,
    search_experiments=10_000,
    search_readable=50,
    search_repeats=5,
    audit_events=100_000,
    audit_search_events=10_000_000,
    replica_policy="100k rules",
    replica_load_seconds=20.0,
    replica_clients=12,
)

QUICK = Profile(
    name="quick",
    judged=False,
    decision_workloads=("2k rules",),
    decision_requests=300,
    casbin_full_seconds=1.0,
    reload_repeats=1,
    overhead_requests=40,
    overhead_rounds=2,
    overhead_seconds=1.0,
    workload_runs=1,
    workload_pairs=1,
    workload_peer_sessions=1,
    latency_requests=10,
    warmup=2,
    latency_rounds=1,
    throughput_seconds=0.5,
    throughput_rounds=1,
    concurrency=4,
    probe_requests=3,
    single_worker_probe=False,
    artifact_bytes=16 * MIB,
    artifact_repetitions=1,
    search_experiments=300,
    search_readable=10,
    search_repeats=1,
    audit_events=5_000,
    audit_search_events=20_000,
    replica_policy="2k rules",
    replica_load_seconds=4.0,
    replica_clients=4,
    mlflow_workers=1,
    share_gateways=True,
    workload_warmup=False,
)
