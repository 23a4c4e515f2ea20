"""The gateway's database on the machine's real PostgreSQL: migrations, users, tokens, sign-in."""

from __future__ import annotations

import base64
import urllib.request
from collections.abc import Iterator

import psycopg2  # type: ignore[import-untyped]
import pytest

from gateway.store.migrate import HEAD_REVISION
from tests.helpers import (
    MlflowServer,
    RedisServer,
    start_gateway,
    temporary_postgres_database,
)


@pytest.fixture
def postgres_database() -> Iterator[str]:
    with temporary_postgres_database() as url:
        yield url


def _get(url: str, authorization: str) -> int:
    request = urllib.request.Request(url, headers={"Authorization": authorization})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status


def test_users_and_tokens_live_in_postgresql(
    postgres_database: str, mlflow_server: MlflowServer, redis_server: RedisServer, tmp_path
) -> None:
    # Two gateways on one database start together: migrations must not trip over each other.
    first = start_gateway(
        mlflow_server.url, redis_server.url, tmp_path / "a", GATEWAY_DATABASE_URL=postgres_database
    )
    second = start_gateway(
        mlflow_server.url, redis_server.url, tmp_path / "b", GATEWAY_DATABASE_URL=postgres_database
    )
    try:
        first.add_user("pat", "pat-password-123", "team-pg")
        token = second.token("pat", "pg-token")
        search = "/api/2.0/mlflow/experiments/search?max_results=1"
        basic = "Basic " + base64.b64encode(b"pat:pat-password-123").decode()
        # Written through one gateway's CLI, honoured by the other: the database is shared.
        assert _get(second.url + search, basic) == 200
        assert _get(first.url + search, f"Bearer {token}") == 200
        assert not (tmp_path / "a" / "gateway.db").exists()

        admin = psycopg2.connect(postgres_database)
        with admin.cursor() as cursor:
            cursor.execute("SELECT version_num FROM alembic_version")
            assert cursor.fetchone() == (HEAD_REVISION,)
            cursor.execute("SELECT secret_hash FROM tokens")
            stored = [row[0] for row in cursor.fetchall()]
        admin.close()
        assert token not in stored
    finally:
        first.stop()
        second.stop()
