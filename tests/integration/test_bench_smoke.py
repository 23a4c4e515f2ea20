"""Every benchmark's code path runs, in the smoke mode of `make bench` (bench/run.py --quick).

Nothing is judged against the targets here (too small, machine shared); what must hold are the
benchmarks' own correctness checks: answers equal to pycasbin's, every request audited, paging
complete and in MLflow's order, no event lost when a replica is killed, retried requests succeed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SECTIONS = (
    "Decisions",
    "Proxy overhead",
    "MLflow client workload",
    "Artifacts",
    "Filtered search",
    "Audit",
    "Replicas",
)


def test_every_benchmark_runs_in_smoke_mode(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--no-docs", "--results-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "PROBLEM" not in output
    for section in SECTIONS:
        assert f"| {section} |" in done.stdout, section
    assert len(list(tmp_path.glob("*-quick.json"))) == 1
