"""A token in the gateway database that changes with every change of who may authenticate.

Written in the same transaction as the change itself (a password, a disabled or admin flag, a
group membership, a token's revocation); replicas poll it and forget what they remembered when it
moves, so no announcement lost on the way can keep a revoked credential working.
"""

from __future__ import annotations

import secrets

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from gateway.store.models import Meta

KEY = "auth_version"


async def bump(session: AsyncSession) -> None:
    value = secrets.token_hex(8)
    result = await session.execute(update(Meta).where(Meta.key == KEY).values(value=value))
    if not result.rowcount:  # type: ignore[attr-defined]
        session.add(Meta(key=KEY, value=value))


async def current(engine: AsyncEngine) -> str | None:
    async with engine.connect() as connection:
        return await connection.scalar(select(Meta.value).where(Meta.key == KEY))
