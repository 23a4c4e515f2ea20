"""Starting and stopping the real things the tests run against."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.devstack import (
    Child,
    find_redis_server,
    free_port,
    mlflow_server_argv,
    redis_server_argv,
    start_child,
    stop_child,
)

GATEWAY_BIN = str(Path(sys.executable).with_name("mlflow-gateway"))


def wait_http(url: str, timeout: float, child: Child | None = None, status: int = 200) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if child is not None and child.process.poll() is not None:
            raise RuntimeError(f"{child.name} exited early:\n{child.tail(40)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == status:
                    return
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.2)
    tail = child.tail(40) if child else ""
    raise RuntimeError(f"{url} not ready after {timeout}s ({last})\n{tail}")


@dataclass
class RedisServer:
    child: Child
    port: int

    @property
    def url(self) -> str:
        return self.db_url(0)

    def db_url(self, db: int) -> str:
        """A separate logical database, for tests whose counters must not meet others'."""
        return f"redis://127.0.0.1:{self.port}/{db}"


def start_redis(workdir: Path, port: int | None = None) -> RedisServer:
    """A private redis-server; its append-only file in ``workdir`` survives a SIGKILL."""
    binary = find_redis_server()
    assert binary, "redis-server is required for the tests"
    port = port or free_port()
    argv = redis_server_argv(binary, port, workdir)
    child = start_child("redis", argv, workdir / "redis.log", dict(os.environ))
    deadline = time.monotonic() + 20
    import redis

    while time.monotonic() < deadline:
        try:
            redis.Redis(port=port, socket_connect_timeout=0.5).ping()
            return RedisServer(child, port)
        except redis.ConnectionError:
            time.sleep(0.1)
    stop_child(child)
    raise RuntimeError(f"redis-server did not start:\n{child.tail()}")


@dataclass
class MlflowServer:
    child: Child
    port: int
    workdir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def artifacts_dir(self) -> Path:
        return self.workdir / "mlflow" / "artifacts"


def start_mlflow(
    workdir: Path,
    workers: int = 1,
    backend_store_uri: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> MlflowServer:
    """MLflow on a free port, artifacts under ``workdir``; the backend store is SQLite in
    ``workdir`` unless ``backend_store_uri`` names another (e.g. ``mysql+pymysql://…``).
    ``extra_env`` is added to its environment (tests.mlflow_versions: another MLflow release)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "MLFLOW_"))}
    # MLflow's background job runner (GenAI scorers) keeps processes polling that take CPU from
    # every test on a 2-core machine; no test runs an MLflow job.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    env.update(extra_env or {})
    argv = mlflow_server_argv(port, workdir, workers)
    if backend_store_uri is not None:
        argv[argv.index("--backend-store-uri") + 1] = backend_store_uri
    child = start_child("mlflow", argv, workdir / "mlflow.log", env)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 180, child)
    except Exception:
        stop_child(child)
        raise
    return MlflowServer(child, port, workdir)


ADMIN_PASSWORD = "admin-password-for-tests"


@dataclass
class Gateway:
    child: Child
    port: int
    env: dict[str, str] = field(default_factory=dict)
    _admin_token: str | None = None

    def cli(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        """Run `mlflow-gateway` against this gateway's database."""
        result = subprocess.run(
            [GATEWAY_BIN, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            input=input,
        )
        if result.returncode != 0:
            raise RuntimeError(f"mlflow-gateway {' '.join(args)} failed:\n{result.stderr}")
        return result

    def add_user(self, name: str, password: str, *groups: str, admin: bool = False) -> None:
        args = ["users", "add", name, "--password-stdin"]
        args += [f"--group={g}" for g in groups] + (["--admin"] if admin else [])
        self.cli(*args, input=password + "\n")

    def token(self, user: str = "admin", name: str = "test", *options: str) -> str:
        return self.cli("tokens", "create", name, "--user", user, *options).stdout.strip()

    @property
    def admin_token(self) -> str:
        if self._admin_token is None:
            self._admin_token = self.token("admin", "admin-tests")
        return self._admin_token

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.child.process.pid

    def rss_kib(self, field_name: str = "VmRSS") -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
        raise RuntimeError(f"{field_name} not in /proc/{self.pid}/status")

    def stop(self) -> None:
        stop_child(self.child)


def gateway_env(upstream_url: str, redis_url: str, data_dir: Path, port: int, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        GATEWAY_UPSTREAM_URL=upstream_url,
        GATEWAY_REDIS_URL=redis_url,
        GATEWAY_DATA_DIR=str(data_dir),
        GATEWAY_HOST="127.0.0.1",
        GATEWAY_PORT=str(port),
        GATEWAY_LOG_LEVEL="INFO",
        GATEWAY_ADMIN_PASSWORD=ADMIN_PASSWORD,
    )
    env.update(extra)
    return env


def start_gateway(
    upstream_url: str,
    redis_url: str,
    data_dir: Path,
    *,
    ready_path: str = "/.gateway/healthz",
    port: int | None = None,
    **extra: str,
) -> Gateway:
    port = port or free_port()
    env = gateway_env(upstream_url, redis_url, data_dir, port, **extra)
    child = start_child("gateway", [GATEWAY_BIN, "serve"], data_dir / "gateway.log", env)
    try:
        wait_http(f"http://127.0.0.1:{port}{ready_path}", 30, child)
    except Exception:
        stop_child(child)
        raise
    return Gateway(child, port, env)


@contextlib.contextmanager
def gateway_pair(
    upstream_url: str, redis_url: str, workdir: Path, **extra: str
) -> Iterator[tuple[Gateway, Gateway]]:
    """Two replicas on one database and one Redis (give both the same GATEWAY_DATABASE_URL)."""
    a = start_gateway(upstream_url, redis_url, workdir / "a", **extra)
    try:
        b = start_gateway(upstream_url, redis_url, workdir / "b", **extra)
    except Exception:
        a.stop()
        raise
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [GATEWAY_BIN, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


POSTGRES_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}


@contextlib.contextmanager
def scratch_database(admin: Any, quote: str, drop_suffix: str, url: str) -> Iterator[str]:
    """CREATE a uniquely named database on an autocommit ``admin`` connection (closed after),
    yield ``url`` with its name, DROP it afterwards. ``quote`` quotes identifiers in this SQL
    dialect; ``drop_suffix`` ends the DROP (PostgreSQL's WITH (FORCE))."""
    name = f"gateway_test_{secrets.token_hex(4)}"
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {quote}{name}{quote}")
        try:
            yield url.format(name=name)
        finally:
            with admin.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS {quote}{name}{quote}{drop_suffix}")
    finally:
        admin.close()


@contextlib.contextmanager
def temporary_postgres_database() -> Iterator[str]:
    """A fresh database on the machine's PostgreSQL (dropped afterwards); yields its URL."""
    import psycopg2  # type: ignore[import-untyped]

    try:
        admin = psycopg2.connect(POSTGRES_ADMIN_DSN)
    except psycopg2.OperationalError as exc:
        raise RuntimeError(f"PostgreSQL at 127.0.0.1:5432 is required: {exc}") from exc
    admin.autocommit = True
    with scratch_database(
        admin, '"', " WITH (FORCE)", "postgresql://postgres@127.0.0.1:5432/{name}"
    ) as url:
        yield url


@contextlib.contextmanager
def temporary_mariadb_database(scheme: str = "mysql") -> Iterator[str]:
    """A fresh database on the machine's MariaDB (dropped afterwards); yields its URL.

    ``mysql://`` is what users write (the MLflow image's entrypoint picks the driver); MLflow
    itself needs ``scheme="mysql+pymysql"``."""
    import pymysql

    try:
        admin = pymysql.connect(**MARIADB, autocommit=True)
    except pymysql.err.OperationalError as exc:
        raise RuntimeError(f"MariaDB at 127.0.0.1:3306 is required: {exc}") from exc
    with scratch_database(admin, "`", "", scheme + "://root@127.0.0.1:3306/{name}") as url:
        yield url


def create_experiment(gw: Gateway, name: str) -> str:
    """An experiment created through the gateway by its admin (who then owns it); its id."""
    import json

    request = urllib.request.Request(
        f"{gw.url}/api/2.0/mlflow/experiments/create",
        data=json.dumps({"name": name}).encode(),
        headers={**gw.auth, "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(json.load(response)["experiment_id"])
