"""The real backends and artifact stores the deployment tests run the MLflow entrypoint against.

PostgreSQL and MariaDB are the machine's servers (a fresh, uniquely named database each, dropped
afterwards); S3 is moto in server mode, GCS is gcp-storage-emulator, Azure Blob is Azurite from npm
(tests/deploy/azurite, installed by .ci/install-system-deps). Every emulator binds 127.0.0.1 on a
free port and runs as a child process of the test session.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.devstack import Child, free_port, start_child, stop_child
from tests.helpers import MARIADB, Gateway, MlflowServer, wait_http
from tests.oidc_provider import skip_or_fail

REPO = Path(__file__).resolve().parents[2]
ENTRYPOINT = REPO / "mlflow" / "entrypoint.py"
AZURITE_DIR = Path(__file__).resolve().parent / "azurite"
AZURITE_BIN = AZURITE_DIR / "node_modules" / ".bin" / "azurite-blob"
BIN = Path(sys.executable).parent

S3_KEY_ID, S3_SECRET = "deploy-tests", "deploy-tests-secret"
# Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
# Variables of the test process that must not leak into a server under test.
FOREIGN_PREFIXES = ("GATEWAY_", "MLFLOW_", "AWS_", "AZURE_", "GOOGLE_", "STORAGE_EMULATOR_HOST")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_PREFIXES)}
    env.update(extra)
    return env


def unique_name(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


def wait_tcp_http(url: str, child: Child, timeout: float = 60) -> None:
    """Wait until ``url`` answers HTTP at all (any status): the emulators have no health route."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise RuntimeError(f"{child.name} exited early:\n{child.tail(40)}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{child.name} did not answer at {url} within {timeout}s:\n{child.tail()}")


# --- databases --------------------------------------------------------------------------------


def postgres_run_ids(uri: str) -> set[str]:
    import psycopg2

    with contextlib.closing(psycopg2.connect(uri)) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT run_uuid FROM runs")
        return {row[0] for row in cursor.fetchall()}


def mariadb_run_ids(uri: str) -> set[str]:
    import pymysql

    database = uri.rsplit("/", 1)[1]
    connection = pymysql.connect(**MARIADB, database=database)
    with contextlib.closing(connection), connection.cursor() as cursor:
        cursor.execute("SELECT run_uuid FROM runs")
        return {row[0] for row in cursor.fetchall()}


def sqlite_run_ids(path: Path) -> set[str]:
    import sqlite3

    with contextlib.closing(sqlite3.connect(path)) as connection:
        return {row[0] for row in connection.execute("SELECT run_uuid FROM runs")}


# --- artifact stores --------------------------------------------------------------------------


@dataclass
class ObjectStore:
    """An emulated object store: the variables MLflow needs and a way to list what it holds."""

    child: Child
    artifact_root: str
    env: dict[str, str]
    list_keys: Callable[[], list[str]]

    def stop(self) -> None:
        stop_child(self.child)


def start_moto_s3(workdir: Path) -> ObjectStore:
    import boto3

    port = free_port()
    child = start_child(
        "moto-s3",
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        workdir / "moto.log",
        clean_env(),
    )
    endpoint = f"http://127.0.0.1:{port}"
    wait_tcp_http(endpoint, child)
    env = {
        "MLFLOW_S3_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": S3_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=S3_KEY_ID,
        aws_secret_access_key=S3_SECRET,
        region_name="us-east-1",
    )
    s3.create_bucket(Bucket="mlflow")

    def list_keys() -> list[str]:
        listed = s3.list_objects_v2(Bucket="mlflow")
        return [item["Key"] for item in listed.get("Contents", [])]

    return ObjectStore(child, "s3://mlflow/artifacts", env, list_keys)


def start_gcs_emulator(workdir: Path) -> ObjectStore:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    port = free_port()
    child = start_child(
        "gcs-emulator",
        [
            str(BIN / "gcp-storage-emulator"),
            "start",
            "--host=127.0.0.1",
            f"--port={port}",
            "--in-memory",
            "--default-bucket=mlflow",
        ],
        workdir / "gcs.log",
        clean_env(),
    )
    endpoint = f"http://127.0.0.1:{port}"
    wait_tcp_http(endpoint, child)
    env = {"STORAGE_EMULATOR_HOST": endpoint}

    def list_keys() -> list[str]:
        client = storage.Client(
            project="test",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": endpoint},
        )
        return [blob.name for blob in client.list_blobs("mlflow")]

    return ObjectStore(child, "gs://mlflow/artifacts", env, list_keys)


def azurite_missing_reason() -> str | None:
    if shutil.which("node") is None:
        return "node is required for Azurite (the Azure Blob emulator)"
    if not AZURITE_BIN.exists():
        return f"Azurite is not installed in {AZURITE_DIR}: run bash .ci/install-system-deps"
    return None


def start_azurite(workdir: Path) -> ObjectStore:
    from azure.storage.blob import BlobServiceClient

    reason = azurite_missing_reason()
    if reason:
        skip_or_fail(reason)
    port = free_port()
    child = start_child(
        "azurite",
        [
            str(AZURITE_BIN),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--inMemoryPersistence",
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--silent",
        ],
        workdir / "azurite.log",
        clean_env(),
    )
    wait_tcp_http(f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}", child)
    connection_string = (
        "DefaultEndpointsProtocol=http;"
        f"AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"
    )
    service = BlobServiceClient.from_connection_string(connection_string)
    service.create_container("mlflow")

    def list_keys() -> list[str]:
        return [blob.name for blob in service.get_container_client("mlflow").list_blobs()]

    return ObjectStore(
        child,
        f"wasbs://mlflow@{AZURITE_ACCOUNT}.blob.core.windows.net/artifacts",
        {"AZURE_STORAGE_CONNECTION_STRING": connection_string},
        list_keys,
    )


@dataclass
class Deployment:
    name: str
    server: MlflowServer
    run_ids_in_backend: Callable[[], set[str]]
    keys_in_store: Callable[[], list[str]]
    gateway: Gateway | None = None


# --- the entrypoint ---------------------------------------------------------------------------


def entrypoint_env(workdir: Path, port: int, **settings: str) -> dict[str, str]:
    """What an operator sets for the image, but loopback and one worker for the tests."""
    defaults = {
        "MLFLOW_HOST": "127.0.0.1",
        "MLFLOW_PORT": str(port),
        "MLFLOW_WORKERS": "1",
        "MLFLOW_WAIT_SECONDS": "30",
        # MLflow's background job runner (GenAI scorers) is one more process importing MLflow on
        # a 2-core machine, and nothing here uses it.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    return clean_env(**{**defaults, **settings})


def run_entrypoint(
    workdir: Path, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the entrypoint to its end (for the cases where it must refuse to start)."""
    workdir.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, str(ENTRYPOINT)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def launch_entrypoint(workdir: Path, **settings: str) -> MlflowServer:
    """Start the entrypoint (and so MLflow) in ``workdir`` without waiting for it."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    # `env -C`: the working directory is part of the contract (the default SQLite URI is relative).
    started = start_child(
        "mlflow-entrypoint",
        ["env", "-C", str(workdir), sys.executable, str(ENTRYPOINT)],
        workdir / "mlflow.log",
        entrypoint_env(workdir, port, **settings),
    )
    return MlflowServer(started, port, workdir)


def stop_together(children: list[Child]) -> None:
    """SIGTERM every child first, then wait for each: shutdowns overlap instead of queueing."""
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.process.pid, signal.SIGTERM)
    for child in reversed(children):
        stop_child(child)


def wait_mlflow(server: MlflowServer, timeout: float = 240) -> None:
    try:
        wait_http(f"{server.url}/health", timeout, server.child)
    except Exception:
        stop_child(server.child)
        raise
