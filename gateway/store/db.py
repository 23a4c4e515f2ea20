"""The async engine for the gateway database (SQLite by default, PostgreSQL in production)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, text
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

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


def create_engine(url: str) -> AsyncEngine:
    async_url = async_database_url(url)
    parsed = make_url(async_url)
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(async_url, pool_pre_ping=True)
    if parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(async_url)
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


# How long a read on the event loop may wait for a SQLite lock before it gives up and goes through
# the driver's thread instead. WAL readers do not wait for writers, so this is rare.
SYNC_READ_BUSY_MS = 50


def _sqlite_reader_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={SYNC_READ_BUSY_MS}")
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()


def sync_reader(engine: AsyncEngine) -> Engine | None:
    """For a SQLite database, a plain (blocking) engine for small indexed reads on the hot path.

    A point lookup in a local SQLite file takes microseconds, while each call through aiosqlite's
    worker thread costs a thread hand-off both ways (about a millisecond on a busy machine), so
    the per-request lookups read directly. None for other databases (their drivers are async).
    """
    url = engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    reader = create_sync_engine(url.set(drivername="sqlite"), pool_size=2, max_overflow=2)
    event.listen(reader, "connect", _sqlite_reader_pragmas)
    return reader


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
