"""Successful credential checks, remembered: a caller already seen costs no SQL and no Redis.

A password, gateway token or browser session that checked out once yields its Principal from
memory until it could have changed. Entries are keyed by a keyed hash of the credential (never
the credential itself), bounded in number, and dropped:

- at once, on every replica, when a user's password, groups, admin flag or disabled flag, a
  token, or a session changes: the change is announced on a Redis channel (`AuthChanges`) and the
  announcer waits until every subscribed replica has applied it, so the next request anywhere
  is judged on the new state;
- within `POLL_SECONDS` even if the announcement is lost (Redis away, a CLI without Redis): every
  such change also writes a new `auth_version` in the gateway database, which each replica
  polls;
- whenever this replica is not subscribed (Redis away): then nothing is remembered at all, every
  request is checked against the database (fail closed).

The channel also carries the owner rule of a new object, which every replica decides on before
the creator is answered (gateway/authz/owners.py: `grant` messages, acknowledged the same way).

A token's expiry and a session's absolute age are checked on every hit; a session is read again
from Redis at least every `SESSION_RECHECK` seconds, which also restarts its idle timer there.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.authn.principal import Principal
from gateway.authn.sessions import SessionData
from gateway.background import Background

log = logging.getLogger(__name__)

CHANNEL = "mlgw:auth"
ACK_PREFIX = "mlgw:auth:ack:"
ACK_TIMEOUT = 2.0
POLL_SECONDS = 2.0
SESSION_RECHECK = 60.0
# An entry is checked against the database again after this long whatever happens.
MAX_AGE = 300.0
_UNSEEN = object()


@dataclass(frozen=True)
class Entry:
    principal: Principal
    user: str
    token_id: str | None = None
    session: SessionData | None = None
    session_key: str | None = None
    # Wall-clock time after which the credential itself is no longer valid (token expiry).
    expires_at: float | None = None
    checked_at: float = 0.0


class Remembered:
    """The bounded memory of successful checks; `enabled` only while invalidation can reach it."""

    def __init__(self, max_entries: int = 50_000) -> None:
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[bytes, Entry] = OrderedDict()
        self._max = max_entries
        self.enabled = False
        self.hits = 0

    def digest(self, kind: str, *parts: str) -> bytes:
        # Keyed BLAKE2b is a MAC (RFC 7693) at a third of HMAC-SHA256's cost, on every request.
        message = "\0".join((kind, *parts)).encode()
        return hashlib.blake2b(message, key=self._key, digest_size=32).digest()

    def get(self, key: bytes) -> Entry | None:
        if not self.enabled:
            return None
        entry = self._entries.get(key)
        if entry is None:
            return None
        now = time.time()
        if now - entry.checked_at > MAX_AGE or (
            entry.expires_at is not None and now >= entry.expires_at
        ):
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry

    def put(self, key: bytes, entry: Entry) -> None:
        if not self.enabled:
            return
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def drop(self, key: bytes) -> None:
        self._entries.pop(key, None)

    def forget(self, *, user: str | None = None, token: str | None = None,
               session: str | None = None) -> None:  # fmt: skip
        """Drop every entry of the user, the token or the session (its stored key)."""
        stale = [
            key
            for key, e in self._entries.items()
            if (user is not None and e.user == user)
            or (token is not None and e.token_id == token)
            or (session is not None and e.session_key == session)
        ]
        for key in stale:
            del self._entries[key]

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class AuthChanges:
    """Announces a change of who may authenticate, and waits until every replica applied it."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def announce(
        self, *, user: str | None = None, token: str | None = None, session: str | None = None,
        failure: tuple[str | None, str] | None = None, grant: list[str] | None = None,
        wait: bool = True,
    ) -> bool:  # fmt: skip
        """True when every subscribed replica confirmed; False when Redis could not be told or
        a replica did not answer in time (the database's auth version still reaches it)."""
        nonce = secrets.token_hex(8)
        message: dict[str, object] = {
            "nonce": nonce,
            "user": user,
            "token": token,
            "session": session,
        }
        if failure is not None:
            message["failure"] = list(failure)
        if grant is not None:
            message["grant"] = grant
        try:
            receivers = int(await self._redis.publish(CHANNEL, json.dumps(message)))
            if not wait:
                return True
            deadline = time.monotonic() + ACK_TIMEOUT
            acked = 0
            while acked < receivers:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    log.warning("auth change: %s of %s replicas confirmed", acked, receivers)
                    return False
                if await self._redis.blpop([ACK_PREFIX + nonce], timeout=remaining) is None:
                    continue
                acked += 1
            return True
        except RedisError as exc:
            log.warning("auth change not announced (%s): replicas notice within %ss", exc,
                        POLL_SECONDS)  # fmt: skip
            return False


class AuthListener:
    """Applies announced changes here (and confirms them); polls the database's auth version;
    keeps `remembered.enabled` true only while subscribed."""

    def __init__(
        self,
        redis_url: str,
        remembered: Remembered,
        auth_version: Callable[[], object],
        on_failure_hint: Callable[[str | None, str], None],
    ) -> None:
        self._redis_url = redis_url
        self.remembered = remembered
        self._auth_version = auth_version
        self._on_failure_hint = on_failure_hint
        # Told of an owner rule another replica decides on before storing it (authz/owners.py).
        self.on_grant: Callable[[list[str]], None] | None = None
        self._background = Background()
        self._version: object = _UNSEEN

    def start(self) -> None:
        self._background.start(auth_listener=self._listen(), auth_version_poll=self._poll())

    async def stop(self) -> None:
        await self._background.stop()
        self.remembered.enabled = False

    def apply(self, message: dict[str, object]) -> None:
        grant = message.get("grant")
        if isinstance(grant, list) and self.on_grant is not None:
            self.on_grant([str(part) for part in grant])
        failure = message.get("failure")
        if isinstance(failure, list) and len(failure) == 2:
            self._on_failure_hint(failure[0], str(failure[1]))
        user, token, session = message.get("user"), message.get("token"), message.get("session")
        if isinstance(user, str) or isinstance(token, str) or isinstance(session, str):
            self.remembered.forget(
                user=user if isinstance(user, str) else None,
                token=token if isinstance(token, str) else None,
                session=session if isinstance(session, str) else None,
            )

    async def _listen(self) -> None:
        while True:
            client = aioredis.Redis.from_url(self._redis_url, socket_connect_timeout=2)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    # Subscribed: from now on every change reaches us; what came before did not.
                    self.remembered.clear()
                    self.remembered.enabled = True
                    log.info("auth channel subscribed: successful checks are remembered")
                    async for item in pubsub.listen():
                        if item.get("type") != "message":
                            continue
                        await self._handle(client, item.get("data"))
            except (RedisError, OSError) as exc:
                log.info("auth channel unavailable (%s): checking every request", exc)
            finally:
                self.remembered.enabled = False
                self.remembered.clear()
                await client.aclose()
            await asyncio.sleep(1.0)

    async def _handle(self, client: aioredis.Redis, data: object) -> None:
        try:
            message = json.loads(data if isinstance(data, str | bytes) else "")
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        self.apply(message)
        if "failure" not in message and isinstance(message.get("nonce"), str):
            key = ACK_PREFIX + message["nonce"]
            async with client.pipeline(transaction=False) as pipe:
                pipe.rpush(key, "1")
                pipe.expire(key, 30)
                await pipe.execute()

    async def _poll(self) -> None:
        while True:
            try:
                version = await self._auth_version()  # type: ignore[misc]
            except Exception as exc:
                log.info("auth version unavailable (%s): forgetting everything", exc)
                self.remembered.clear()
                version = None
            if version != self._version:
                self.remembered.clear()
                self._version = version
            await asyncio.sleep(POLL_SECONDS)
