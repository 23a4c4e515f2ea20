"""Session-wide real services: one MLflow 3.17.2, one Redis, one gateway in front; for the
tests that need a MySQL-family backend store, one more MLflow on a scratch MariaDB database; for
the tests of the oldest and the newest supported MLflow (3.16.1, 3.18.0), one MLflow of each."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.devstack import stop_child
from tests.helpers import (
    Gateway,
    MlflowServer,
    RedisServer,
    start_gateway,
    start_mlflow,
    start_redis,
    temporary_mariadb_database,
)
from tests.mlflow_versions import NEWEST, OLDEST, start_mlflow_version


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    stop_child(server.child)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    server = start_mlflow(tmp_path_factory.mktemp("mlflow"))
    yield server
    stop_child(server.child)


@pytest.fixture(scope="session")
def oldest_mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """The oldest supported MLflow (laid over the virtualenv by tests.mlflow_versions)."""
    server = start_mlflow_version(OLDEST, tmp_path_factory.mktemp("mlflow-oldest"))
    yield server
    stop_child(server.child)


@pytest.fixture(scope="session")
def newest_mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """The newest supported MLflow (laid over the virtualenv by tests.mlflow_versions)."""
    server = start_mlflow_version(NEWEST, tmp_path_factory.mktemp("mlflow-newest"))
    yield server
    stop_child(server.child)


@pytest.fixture(scope="session")
def mariadb_mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """MLflow 3.17.2 on a fresh database of the machine's MariaDB (its default collation, as an
    operator gets it), artifacts in a local directory; the database is dropped at the end."""
    with temporary_mariadb_database("mysql+pymysql") as uri:
        server = start_mlflow(tmp_path_factory.mktemp("mlflow-mariadb"), backend_store_uri=uri)
        try:
            yield server
        finally:
            stop_child(server.child)


@pytest.fixture(scope="session")
def gateway(
    mlflow_server: MlflowServer, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    gw = start_gateway(
        mlflow_server.url,
        redis_server.url,
        tmp_path_factory.mktemp("gateway"),
        ready_path="/.gateway/readyz",
    )
    yield gw
    gw.stop()
