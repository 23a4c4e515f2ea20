"""The async engine for the gateway database (SQLite by default, PostgreSQL in production)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gateway.io_counts import count_io

ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}


class DatabaseUrlError(ValueError):
    pass


def async_database_url(url: str) -> str:
    """Map ``sqlite:///…`` or ``postgresql://…`` to the async driver the gateway ships."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseUrlError(f"not a database URL: {exc}") from None
    backend = parsed.get_backend_name()
    if backend == "postgres":
        backend = "postgresql"
    if backend not in ASYNC_DRIVERS:
        raise DatabaseUrlError(
            f"unsupported database {backend!r}: use sqlite:///path/to/file.db or "
            "postgresql://user:password@host/dbname"
        )
    return parsed.set(drivername=ASYNC_DRIVERS[backend]).render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL and a busy timeout let the CLI and a running gateway share the file; SQLite leaves
    # foreign keys off unless asked.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _count_statement(*_args: Any, **_kwargs: Any) -> None:
    # Every statement a request awaits shows in gateway_request_io_total{kind="sql"}.
    count_io("sql")


def create_engine(url: str) -> AsyncEngine:
    async_url = async_database_url(url)
    parsed = make_url(async_url)
    if parsed.get_backend_name() != "sqlite":
        engine = create_async_engine(async_url, pool_pre_ping=True)
    else:
        if parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(async_url)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    event.listen(engine.sync_engine, "before_cursor_execute", _count_statement)
    return engine


# How long a read on the event loop may wait for a SQLite lock before it gives up and goes through
# the driver's thread instead. WAL readers do not wait for writers, so this is rare.
SYNC_READ_BUSY_MS = 50


class SqliteReader:
    """Small indexed reads of a SQLite gateway database, straight from the event loop.

    A point lookup in a local SQLite file takes microseconds, while each call through aiosqlite's
    worker thread costs a thread hand-off both ways (about a millisecond on a busy machine), so
    the per-request lookups read directly. Values come back as SQLite stores them (timestamps as
    text, booleans as integers). Raises sqlite3.OperationalError when the file stays locked
    longer than SYNC_READ_BUSY_MS: the caller then reads through the async engine.

    Answers are remembered until anything is committed to the database, by any connection or
    process (SQLite's `PRAGMA data_version` says so): asking costs less than the query itself, and
    a remembered answer is exactly what the query would return.
    """

    MAX_REMEMBERED = 10_000

    def __init__(self, path: str) -> None:
        self._path = path
        self._connection: sqlite3.Connection | None = None
        self._data_version = -1
        self._remembered: dict[tuple[str, tuple[Any, ...]], list[tuple[Any, ...]]] = {}

    def query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        if self._connection is None:
            connection = sqlite3.connect(self._path, check_same_thread=False)
            connection.execute(f"PRAGMA busy_timeout={SYNC_READ_BUSY_MS}")
            connection.execute("PRAGMA query_only=ON")
            self._connection = connection
        version = self._connection.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version or len(self._remembered) >= self.MAX_REMEMBERED:
            self._remembered.clear()
            self._data_version = version
        key = (sql, params)
        rows = self._remembered.get(key)
        if rows is None:
            rows = self._remembered[key] = self._connection.execute(sql, params).fetchall()
        return rows


def sqlite_reader(engine: AsyncEngine) -> SqliteReader | None:
    """A direct reader when the database is a SQLite file; None for other databases (their
    drivers are asynchronous already)."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return SqliteReader(url.database)


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
