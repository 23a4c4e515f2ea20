"""The async engine for the gateway database (SQLite by default, PostgreSQL in production)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event, text
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


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
