"""Migration 0004 (rules that expire, the change log's actor) on every database it meets: SQLite,
the machine's PostgreSQL and MariaDB. A database at 0003 with policy lines and change-log rows is
upgraded, read back as the store reads it, and downgraded again."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, create_engine, inspect, text

from gateway.store.migrate import HEAD_REVISION, MIGRATIONS, current_revision
from tests.helpers import temporary_mariadb_database, temporary_postgres_database


def _migrate(connection: Connection, revision: str, down: bool = False) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    (command.downgrade if down else command.upgrade)(config, revision)


@contextlib.contextmanager
def database(kind: str, tmp_path: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'gateway.db'}"
    elif kind == "postgresql":
        with temporary_postgres_database() as url:
            yield url.replace("postgresql://", "postgresql+psycopg2://")
    else:
        with temporary_mariadb_database("mysql+pymysql") as url:
            yield url


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mariadb"])
def test_0004_adds_expiry_and_actor_and_keeps_what_was_there(kind: str, tmp_path: Path) -> None:
    with database(kind, tmp_path) as url:
        engine = create_engine(url)
        try:
            created = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
            with engine.begin() as connection:
                _migrate(connection, "0003")
                connection.execute(
                    text(
                        "INSERT INTO policy_rules (ptype, v0, v1, v2, v3, created_at, created_by) "
                        "VALUES ('p', 'user:bob', 'experiment:1', 'read', 'allow', :t, 'cli')"
                    ),
                    {"t": created},
                )
                connection.execute(
                    text(
                        "INSERT INTO policy_changes (version, added, ptype, v0, v1, v2, v3, "
                        "created_at) VALUES (1, :yes, 'p', 'user:bob', 'experiment:1', 'read', "
                        "'allow', :t)"
                    ),
                    {"t": created, "yes": True},
                )
            with engine.begin() as connection:
                _migrate(connection, "head")
                assert current_revision(connection) == HEAD_REVISION == "0004"
                columns = {c["name"] for c in inspect(connection).get_columns("policy_rules")}
                assert "expires_at" in columns
                changes = {c["name"] for c in inspect(connection).get_columns("policy_changes")}
                assert {"expires_at", "actor"} <= changes
                indexes = {i["name"] for i in inspect(connection).get_indexes("policy_rules")}
                assert "ix_policy_rules_expires_at" in indexes
                # What was there reads as a rule that never expires, changed by nobody named.
                assert connection.execute(
                    text("SELECT v0, expires_at FROM policy_rules")
                ).all() == [("user:bob", None)]
                assert connection.execute(
                    text("SELECT version, actor, expires_at FROM policy_changes")
                ).all() == [(1, None, None)]
                # New rows take both.
                connection.execute(
                    text(
                        "INSERT INTO policy_rules (ptype, v0, v1, v2, v3, created_at, expires_at) "
                        "VALUES ('p', 'user:ann', 'experiment:2', 'read', 'allow', :t, :t)"
                    ),
                    {"t": created},
                )
            with engine.begin() as connection:
                _migrate(connection, "0003", down=True)
                assert current_revision(connection) == "0003"
                columns = {c["name"] for c in inspect(connection).get_columns("policy_rules")}
                assert "expires_at" not in columns
                assert connection.execute(text("SELECT count(*) FROM policy_rules")).scalar() == 2
        finally:
            engine.dispose()
