"""The MLflow image's entrypoint on every backend store and artifact store, behind the gateway.

Four MLflow servers, each started by `mlflow/entrypoint.py` exactly as the image starts it (only
host, port and worker count differ), cover the three backend stores and the four artifact stores:

    sqlite (the default URI)  + local directory
    postgresql                + S3 (moto)         credentials from *_FILE variables
    mysql://                  + GCS (gcp-storage-emulator)
    sqlite (absolute path)    + Azure Blob (Azurite)

For each, the real `mlflow` client talks only to a gateway (with a gateway token), logs a run with
an artifact and reads both back; then the test looks behind MLflow's back: the run is a row in that
database, the artifact's bytes are an object in that store.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.devstack import stop_child
from tests.deploy import services
from tests.helpers import Gateway, MlflowServer, RedisServer, start_gateway

mlflow = pytest.importorskip("mlflow")


@dataclass
class Deployment:
    name: str
    server: MlflowServer
    run_ids_in_backend: Callable[[], set[str]]
    keys_in_store: Callable[[], list[str]]
    gateway: Gateway | None = None


def _secret_file(directory: Path, name: str, value: str) -> str:
    path = directory / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return str(path)


def _local_keys(root: Path) -> Callable[[], list[str]]:
    return lambda: [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()]


@pytest.fixture(scope="module")
def deployments(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer
) -> Iterator[dict[str, Deployment]]:
    base = tmp_path_factory.mktemp("deploy-stores")
    with contextlib.ExitStack() as stack:
        postgres_uri = stack.enter_context(services.postgres_database())
        mysql_uri = stack.enter_context(services.mariadb_database())
        stores = {}
        for name, start in (
            ("s3", services.start_moto_s3),
            ("gcs", services.start_gcs_emulator),
            ("azure", services.start_azurite),
        ):
            store = start(base)
            stack.callback(store.stop)
            stores[name] = store
        secrets_dir = base / "secrets"
        secrets_dir.mkdir()

        local_root = base / "sqlite-local" / "artifacts"
        sqlite_abs = base / "sqlite-azure" / "db" / "mlflow.db"
        s3, gcs, azure = stores["s3"], stores["gcs"], stores["azure"]
        s3_env = {k: v for k, v in s3.env.items() if k != "AWS_SECRET_ACCESS_KEY"}
        launches = {
            # No backend URI: the documented default, relative to the working directory.
            "sqlite+local": (
                {"MLFLOW_DEFAULT_ARTIFACT_ROOT": str(local_root)},
                lambda: services.sqlite_run_ids(base / "sqlite-local" / "mlflow" / "mlflow.db"),
                _local_keys(local_root),
            ),
            "postgresql+s3": (
                {
                    "MLFLOW_BACKEND_STORE_URI_FILE": _secret_file(
                        secrets_dir, "backend-uri", postgres_uri
                    ),
                    "MLFLOW_BACKEND_STORE_PASSWORD_FILE": _secret_file(
                        secrets_dir, "db-password", "p@ss:w/rd"
                    ),
                    "MLFLOW_DEFAULT_ARTIFACT_ROOT": s3.artifact_root,
                    "AWS_SECRET_ACCESS_KEY_FILE": _secret_file(
                        secrets_dir, "aws-secret", s3.env["AWS_SECRET_ACCESS_KEY"]
                    ),
                    **s3_env,
                },
                lambda: services.postgres_run_ids(postgres_uri),
                s3.list_keys,
            ),
            "mysql+gcs": (
                {
                    "MLFLOW_BACKEND_STORE_URI": mysql_uri,
                    "MLFLOW_DEFAULT_ARTIFACT_ROOT": gcs.artifact_root,
                    **gcs.env,
                },
                lambda: services.mariadb_run_ids(mysql_uri),
                gcs.list_keys,
            ),
            "sqlite+azure": (
                {
                    "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{sqlite_abs}",
                    "MLFLOW_DEFAULT_ARTIFACT_ROOT": azure.artifact_root,
                    "AZURE_STORAGE_CONNECTION_STRING_FILE": _secret_file(
                        secrets_dir, "azure", azure.env["AZURE_STORAGE_CONNECTION_STRING"]
                    ),
                },
                lambda: services.sqlite_run_ids(sqlite_abs),
                azure.list_keys,
            ),
        }
        found: dict[str, Deployment] = {}
        # All four start at once: MLflow's start-up is the slow part of this module.
        for name, (settings, run_ids, keys) in launches.items():
            server = services.launch_entrypoint(base / name.replace("+", "-"), **settings)
            stack.callback(stop_child, server.child)
            found[name] = Deployment(name, server, run_ids, keys)
        for deployment in found.values():
            services.wait_mlflow(deployment.server)
            deployment.gateway = start_gateway(
                deployment.server.url,
                redis_server.url,
                base / f"gateway-{deployment.name.replace('+', '-')}",
                ready_path="/.gateway/readyz",
            )
            stack.callback(deployment.gateway.stop)
        yield found


@pytest.fixture
def in_tmp_cwd(tmp_path: Path) -> Iterator[Path]:
    old = Path.cwd()
    os.chdir(tmp_path)
    yield tmp_path
    os.chdir(old)


@pytest.mark.parametrize("name", ["sqlite+local", "postgresql+s3", "mysql+gcs", "sqlite+azure"])
def test_client_logs_and_reads_back_through_the_gateway(
    name: str,
    deployments: dict[str, Deployment],
    in_tmp_cwd: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    deployment = deployments[name]
    gateway = deployment.gateway
    assert gateway is not None
    gateway.add_user("dana", "dana-password-123")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", gateway.token("dana", f"deploy-{name}"))
    mlflow.set_tracking_uri(gateway.url)
    mlflow.set_experiment(f"deploy-{name}")

    payload = os.urandom(300_000)
    (in_tmp_cwd / "weights.bin").write_bytes(payload)
    with mlflow.start_run() as run:
        mlflow.log_param("store", name)
        mlflow.log_metric("loss", 0.25)
        mlflow.log_artifact("weights.bin")
    run_id = run.info.run_id

    client = mlflow.MlflowClient(gateway.url)
    stored = client.get_run(run_id)
    assert stored.data.params == {"store": name}
    assert stored.data.metrics == {"loss": 0.25}
    assert stored.info.user_id == "dana"
    # Served through MLflow: the client never needs the store's credentials.
    assert stored.info.artifact_uri.startswith("mlflow-artifacts:")
    assert [a.path for a in client.list_artifacts(run_id)] == ["weights.bin"]
    downloaded = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="weights.bin", dst_path=str(in_tmp_cwd / "dl")
    )
    assert (
        hashlib.sha256(Path(downloaded).read_bytes()).digest() == hashlib.sha256(payload).digest()
    )

    # Behind MLflow's back: the run is in that database, the bytes are in that store.
    assert run_id in deployment.run_ids_in_backend()
    keys = [key for key in deployment.keys_in_store() if run_id in key]
    assert keys and keys[0].endswith(f"{run_id}/artifacts/weights.bin"), keys
