"""Bring the gateway database to the newest schema. Safe to run on every start, by every replica.

Alembic (about 12 MiB once imported, kept for the life of the process) is only loaded when the
schema is actually behind, and a running gateway has it done by a short-lived child process
(`python -m gateway.store.migrate`), so the gateway itself never imports it.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store.db import create_engine

MIGRATIONS = Path(__file__).with_name("migrations")
# The newest revision in migrations/versions (a test keeps the two in step).
HEAD_REVISION = "0004"
# Any fixed number: replicas starting together take turns instead of racing on DDL.
_PG_MIGRATION_LOCK = 7_230_514
# How the child process learns the database URL (never on its command line, where `ps` shows it).
_URL_VARIABLE = "MLGW_MIGRATE_DATABASE_URL"


def current_revision(connection: Connection) -> str | None:
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _upgrade(connection: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def upgrade_database(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(text(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})"))
        if await connection.run_sync(current_revision) != HEAD_REVISION:
            await connection.run_sync(_upgrade)


async def schema_is_current(engine: AsyncEngine) -> bool:
    async with engine.connect() as connection:
        return await connection.run_sync(current_revision) == HEAD_REVISION


async def upgrade_database_in_child(engine: AsyncEngine, database_url: str) -> None:
    """`upgrade_database`, done by a child process when there is anything to do."""
    if await schema_is_current(engine):
        return
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.store.migrate",
        env={**os.environ, _URL_VARIABLE: database_url},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, errors = await child.communicate()
    if child.returncode != 0:
        raise RuntimeError(
            "upgrading the gateway database failed:\n" + errors.decode(errors="replace")[-2000:]
        )


async def _upgrade_from_environment() -> None:
    engine = create_engine(os.environ[_URL_VARIABLE])
    try:
        await upgrade_database(engine)
    finally:
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(_upgrade_from_environment())
