"""Browser sessions in Redis. The cookie holds only an opaque random id; Redis holds its hash."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import asdict, dataclass

import redis.asyncio as aioredis

from gateway.io_counts import count_io

_KEY_PREFIX = "mlgw:session:"


def session_key(session_id: str) -> str:
    # Only a hash of the id is stored: a Redis dump does not hand out live sessions.
    return _KEY_PREFIX + hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True)
class SessionData:
    subject: str
    # How the person signed in: "oidc" or "password".
    login_method: str
    idp_groups: tuple[str, ...]
    created_at: float
    csrf_token: str
    id_token: str | None = None


class SessionStore:
    def __init__(self, redis: aioredis.Redis, idle_timeout: int, max_age: int) -> None:
        self._redis = redis
        self.idle_timeout = idle_timeout
        self.max_age = max_age

    async def create(
        self,
        subject: str,
        login_method: str,
        idp_groups: tuple[str, ...] = (),
        id_token: str | None = None,
    ) -> str:
        session_id = secrets.token_urlsafe(32)
        data = SessionData(
            subject=subject,
            login_method=login_method,
            idp_groups=idp_groups,
            created_at=time.time(),
            csrf_token=secrets.token_urlsafe(24),
            id_token=id_token,
        )
        ttl = min(self.idle_timeout, self.max_age)
        await self._redis.set(session_key(session_id), json.dumps(asdict(data)), ex=ttl)
        return session_id

    async def get(self, session_id: str) -> SessionData | None:
        """The session, with its idle timer restarted; None when unknown, idle or too old."""
        if not session_id or len(session_id) > 128:
            return None
        count_io("redis")
        raw = await self._redis.getex(session_key(session_id), ex=self.idle_timeout)
        if raw is None:
            return None
        fields = json.loads(raw)
        fields["idp_groups"] = tuple(fields.get("idp_groups", ()))
        data = SessionData(**fields)
        if time.time() - data.created_at > self.max_age:
            await self.delete(session_id)
            return None
        return data

    async def delete(self, session_id: str) -> None:
        count_io("redis")
        await self._redis.delete(session_key(session_id))
