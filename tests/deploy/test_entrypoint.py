"""The MLflow entrypoint refuses to start, and says why, when its database or store is unusable.

Each case is the real thing failing for real: a port nobody listens on, a MariaDB user that does
not exist, a PostgreSQL database that was never created, an S3 bucket that is missing. The output
must answer the troubleshooting items of docs/deployment.md ("Database Connection Failed",
"Artifact Upload Failed") without ever showing a password.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from gateway.devstack import free_port
from tests.deploy import services

PASSWORD = "n0t-for-the-log"


def _entrypoint_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mlflow_entrypoint", services.ENTRYPOINT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


entrypoint = _entrypoint_module()


def _refused(tmp_path: Path, **settings: str) -> tuple[int, str]:
    env = services.entrypoint_env(tmp_path, free_port(), **{"MLFLOW_WAIT_SECONDS": "3", **settings})
    result = services.run_entrypoint(tmp_path, env, timeout=90)
    assert PASSWORD not in result.stdout + result.stderr
    return result.returncode, result.stderr


def test_unreachable_database_is_named_masked_and_explained(tmp_path: Path) -> None:
    port = free_port()  # nobody listens there
    uri = f"postgresql://mlflow:{PASSWORD}@127.0.0.1:{port}/mlflow"
    code, output = _refused(tmp_path, MLFLOW_BACKEND_STORE_URI=uri)
    assert code != 0
    assert "Database Connection Failed" in output
    assert f"postgresql+psycopg2://mlflow:***@127.0.0.1:{port}/mlflow" in output
    assert "MLFLOW_WAIT_SECONDS=3" in output
    assert "likely cause: nothing answered at that host and port" in output
    # It retried rather than giving up at the first refusal.
    attempts = int(output.split("Database Connection Failed")[1].split("(")[1].split(" ")[0])
    assert attempts >= 2


def test_wrong_mysql_user_is_an_authentication_problem(tmp_path: Path) -> None:
    uri = f"mysql://nobody-{free_port()}:{PASSWORD}@127.0.0.1:3306/mysql"
    code, output = _refused(tmp_path, MLFLOW_BACKEND_STORE_URI=uri)
    assert code != 0
    assert "Database Connection Failed" in output
    assert "mysql+pymysql://nobody-" in output and ":***@127.0.0.1:3306/mysql" in output
    assert "likely cause: the database refused the user or password" in output


def test_missing_postgresql_database_says_create_it(tmp_path: Path) -> None:
    name = services.unique_name("never_created")
    code, output = _refused(
        tmp_path,
        MLFLOW_BACKEND_STORE_URI=f"postgresql://postgres@127.0.0.1:5432/{name}",
        MLFLOW_BACKEND_STORE_PASSWORD=PASSWORD,
    )
    assert code != 0
    assert f"postgresql+psycopg2://postgres:***@127.0.0.1:5432/{name}" in output
    assert "likely cause: the database itself does not exist — create it" in output


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.ObjectStore]:
    store = services.start_moto_s3(tmp_path_factory.mktemp("moto"))
    yield store
    store.stop()


def test_missing_bucket_is_an_artifact_upload_problem(
    tmp_path: Path, moto: services.ObjectStore
) -> None:
    code, output = _refused(
        tmp_path,
        MLFLOW_BACKEND_STORE_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
        MLFLOW_DEFAULT_ARTIFACT_ROOT="s3://no-such-bucket/artifacts",
        **moto.env,
    )
    assert code != 0
    assert "backend store sqlite:///" in output and "reachable" in output
    assert "Artifact Upload Failed" in output and "s3://no-such-bucket/artifacts" in output
    assert "likely cause: the bucket or container does not exist" in output


def test_missing_credentials_are_named(tmp_path: Path, moto: services.ObjectStore) -> None:
    env = {k: v for k, v in moto.env.items() if not k.startswith("AWS_")}
    code, output = _refused(
        tmp_path,
        MLFLOW_BACKEND_STORE_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
        MLFLOW_DEFAULT_ARTIFACT_ROOT="s3://mlflow/artifacts",
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
        **env,
    )
    assert code != 0
    assert "Artifact Upload Failed" in output
    assert "likely cause: no credentials for the artifact store" in output


def test_configuration_mistakes_stop_at_once(tmp_path: Path) -> None:
    code, output = _refused(
        tmp_path,
        MLFLOW_BACKEND_STORE_URI="mongodb://db/mlflow",
        MLFLOW_WAIT_SECONDS="60",
    )
    assert code == entrypoint.EXIT_CONFIG
    assert "is not a database URI" in output
    code, output = _refused(
        tmp_path,
        MLFLOW_BACKEND_STORE_URI="sqlite:///x.db",
        MLFLOW_BACKEND_STORE_URI_FILE=str(tmp_path / "missing"),
    )
    assert code == entrypoint.EXIT_CONFIG
    assert "MLFLOW_BACKEND_STORE_URI and MLFLOW_BACKEND_STORE_URI_FILE are both set" in output


def test_uris_are_rewritten_for_the_installed_drivers() -> None:
    normalize = entrypoint.normalize_backend_uri
    assert normalize("mysql://u@h:3306/db") == "mysql+pymysql://u@h:3306/db"
    assert normalize("postgresql://u@h/db") == "postgresql+psycopg2://u@h/db"
    assert normalize("postgres://u@h/db") == "postgresql+psycopg2://u@h/db"
    assert normalize("mysql+mysqldb://u@h/db") == "mysql+mysqldb://u@h/db"
    assert normalize("sqlite:///mlflow/mlflow.db") == "sqlite:///mlflow/mlflow.db"


def test_password_is_quoted_into_the_uri_and_masked_when_shown() -> None:
    uri = entrypoint.with_password("postgresql://mlflow@db:5432/mlflow", "p@ss:w/rd")
    assert uri == "postgresql://mlflow:p%40ss%3Aw%2Frd@db:5432/mlflow"
    assert entrypoint.mask_password(uri) == "postgresql://mlflow:***@db:5432/mlflow"
    # Cloud SQL's socket form has no host in the authority.
    cloud_sql = "postgresql://mlflow@/mlflow?host=/cloudsql/p:r:i"
    uri = entrypoint.with_password(cloud_sql, "secret")
    assert uri == "postgresql://mlflow:secret@/mlflow?host=/cloudsql/p:r:i"
    assert entrypoint.mask_password(uri) == "postgresql://mlflow:***@/mlflow?host=/cloudsql/p:r:i"
    with pytest.raises(entrypoint.StartupError, match="already holds a password"):
        entrypoint.with_password("postgresql://mlflow:x@db/mlflow", "y")


def test_the_server_command_carries_no_secret_and_serves_artifacts(tmp_path: Path) -> None:
    command, env = entrypoint.prepare(
        {
            "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "MLFLOW_DEFAULT_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
            "AWS_SECRET_ACCESS_KEY": PASSWORD,
        }
    )
    assert PASSWORD not in " ".join(command)
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert command[command.index("--port") + 1] == "5000"
    assert "--serve-artifacts" in command
    assert command[command.index("--artifacts-destination") + 1] == str(tmp_path / "artifacts")
    # Left in MLflow's environment, it would make clients write to the store directly.
    assert "MLFLOW_DEFAULT_ARTIFACT_ROOT" not in env
    assert env["MLFLOW_BACKEND_STORE_URI"] == f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_errors_are_shown_with_secrets_hidden(capsys: pytest.CaptureFixture[str]) -> None:
    def probe() -> None:
        raise RuntimeError(f"driver echoed postgresql://u:{PASSWORD}@h/db and {PASSWORD}")

    attempts, error = entrypoint.wait_for("the database", probe, 1, (PASSWORD,), interval=0.4)
    assert attempts >= 2 and error is not None
    assert PASSWORD not in error and "postgresql://u:***@h/db" in error
    assert PASSWORD not in capsys.readouterr().err
