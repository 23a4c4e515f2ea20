"""The deployments the tests in this package share: four MLflow servers started by the image's
entrypoint, each on its own backend store and artifact store, each behind its own gateway.

    sqlite (the default URI)  + local directory   MLFLOW_SERVER_ALLOWED_HOSTS set, as in compose
    postgresql                + S3 (moto)         credentials from *_FILE variables
    mysql://                  + GCS (gcp-storage-emulator)
    sqlite (absolute path)    + Azure Blob (Azurite)

They start together (MLflow's start-up is the slow part) once per test session.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.devstack import Child
from tests.deploy import services
from tests.deploy.services import Deployment
from tests.helpers import (
    RedisServer,
    start_gateway,
    temporary_mariadb_database,
    temporary_postgres_database,
)


def _secret_file(directory: Path, name: str, value: str) -> str:
    path = directory / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return str(path)


def _local_keys(root: Path) -> Callable[[], list[str]]:
    return lambda: [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()]


@pytest.fixture(scope="package")
def deployments(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer
) -> Iterator[dict[str, Deployment]]:
    base = tmp_path_factory.mktemp("deploy-stores")
    with contextlib.ExitStack() as stack:
        postgres_uri = stack.enter_context(temporary_postgres_database())
        # The plain scheme users write; the entrypoint picks the installed driver.
        mysql_uri = stack.enter_context(temporary_mariadb_database())
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
                {
                    "MLFLOW_DEFAULT_ARTIFACT_ROOT": str(local_root),
                    # MLflow's own variable, passed through: only the Host the gateway sends.
                    "MLFLOW_SERVER_ALLOWED_HOSTS": "127.0.0.1:*",
                },
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
        children: list[Child] = []
        stack.callback(services.stop_together, children)
        # All four start at once: MLflow's start-up is the slow part of this module.
        for name, (settings, run_ids, keys) in launches.items():
            server = services.launch_entrypoint(base / name.replace("+", "-"), **settings)
            children.append(server.child)
            found[name] = Deployment(name, server, run_ids, keys)
        for deployment in found.values():
            services.wait_mlflow(deployment.server)
            deployment.gateway = start_gateway(
                deployment.server.url,
                redis_server.url,
                base / f"gateway-{deployment.name.replace('+', '-')}",
                ready_path="/.gateway/readyz",
            )
            children.append(deployment.gateway.child)
        yield found
