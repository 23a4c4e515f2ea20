"""Bring the gateway database to the newest schema. Safe to run on every start, by every replica.

Alembic (about 12 MiB once imported) is only loaded when the schema is actually behind: a gateway
that starts on an up-to-date database never imports it.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).with_name("migrations")
# The newest revision in migrations/versions (a test keeps the two in step).
HEAD_REVISION = "0003"
# Any fixed number: replicas starting together take turns instead of racing on DDL.
_PG_MIGRATION_LOCK = 7_230_514


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
