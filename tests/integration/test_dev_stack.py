"""`mlflow-gateway dev`: the whole stack comes up, serves the UI, and leaves no process behind."""

from __future__ import annotations

import base64
import json
import os
import signal
import stat
import subprocess
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from gateway.devstack import free_port
from tests.helpers import GATEWAY_BIN, wait_http


def _descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_dev_runs_whole_stack_and_stops_cleanly(tmp_path: Path, stop_signal: int) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "MLFLOW_"))}
    data_dir = tmp_path / "data"
    log = (tmp_path / "dev.log").open("wb")
    process = subprocess.Popen(
        [GATEWAY_BIN, "dev", "--port", str(port), "--data-dir", str(data_dir)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/.gateway/readyz", 180)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/.gateway/readyz") as r:
            deps = json.loads(r.read())["dependencies"]
        assert all(d["ready"] for d in deps.values()), deps
        output = (tmp_path / "dev.log").read_text()
        assert f"http://127.0.0.1:{port}" in output
        assert "MLFLOW_TRACKING_URI" in output

        # A generated admin password, printed once and kept private in the data dir.
        password_file = data_dir / "admin-password"
        password = password_file.read_text().strip()
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        assert f"Sign in as 'admin' with password: {password}" in output
        credentials = base64.b64encode(f"admin:{password}".encode()).decode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/", headers={"Authorization": f"Basic {credentials}"}
        )
        with urllib.request.urlopen(request) as r:
            assert b"<title>MLflow</title>" in r.read()
        assert (data_dir / "mlflow" / "mlflow.db").is_file()

        children = _descendants(process.pid)
        names = " ".join(" ".join(c.cmdline()) for c in children)
        assert "redis-server" in names
        assert "mlflow" in names

        process.send_signal(stop_signal)
        assert process.wait(60) == 0
        deadline = time.monotonic() + 10
        while any(_alive(c) for c in children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [c.pid for c in children if _alive(c)] == [], "orphan processes left behind"
        assert "stopped" in (tmp_path / "dev.log").read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
