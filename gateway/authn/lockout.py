"""Brute-force protection: failures counted per user and per client IP, with growing lockouts.

Counters live in Redis so every replica sees them. If Redis is unreachable the counters fall back to
this process's memory: protection weakens to per-replica but never switches off.

A client that is not failing costs nothing: Redis is asked whether a user or IP is locked out only
once a failure of theirs has been seen — here, or on another replica, which announces every failure
(`hint`). The hints last as long as the failure window. So a locked-out client is refused on
every replica, and everyone else's requests make no Redis round trip for the lockout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.cache import BoundedCache
from gateway.io_counts import count_io

log = logging.getLogger(__name__)

_PREFIX = "mlgw:lockout:"
# Lockout periods double with each lockout inside this window, up to the maximum.
_STRIKE_WINDOW = 24 * 3600
_MAX_LOCK = 24 * 3600


@dataclass(frozen=True)
class LockoutPolicy:
    user_threshold: int = 5
    ip_threshold: int = 20
    window: int = 900
    base_lock: int = 60


class _LocalCounters:
    """The in-memory stand-in for Redis, with the same expiry semantics."""

    def __init__(self) -> None:
        self._values: dict[str, tuple[int, float]] = {}

    def _live(self, key: str) -> tuple[int, float] | None:
        entry = self._values.get(key)
        if entry and entry[1] <= time.monotonic():
            del self._values[key]
            return None
        return entry

    def incr(self, key: str, ttl: int) -> int:
        entry = self._live(key)
        count = (entry[0] if entry else 0) + 1
        expires = entry[1] if entry else time.monotonic() + ttl
        self._values[key] = (count, expires)
        return count

    def set(self, key: str, ttl: int) -> None:
        self._values[key] = (1, time.monotonic() + ttl)

    def ttl(self, key: str) -> int:
        entry = self._live(key)
        return max(1, int(entry[1] - time.monotonic())) if entry else 0

    def delete(self, key: str) -> None:
        self._values.pop(key, None)


FailureAnnouncer = Callable[[str | None, str], Awaitable[object]]


class Lockout:
    def __init__(
        self,
        redis: aioredis.Redis,
        policy: LockoutPolicy,
        announce_failure: FailureAnnouncer | None = None,
    ) -> None:
        self._redis = redis
        self.policy = policy
        self._local = _LocalCounters()
        # Users and IPs with failures in the window (here or announced by another replica).
        self._suspects = BoundedCache(100_000, ttl=policy.window)
        self._announce_failure = announce_failure

    def hint(self, username: str | None, ip: str) -> None:
        """A failure of this user or IP was seen (here or on another replica)."""
        for kind, value in self._subjects(username, ip):
            self._suspects.put(f"{kind}:{value}", True)

    def suspect(self, username: str | None, ip: str | None) -> bool:
        if not self._suspects:
            return False  # no client has failed lately: the common case, on every request
        return any(
            self._suspects.get(f"{kind}:{value}") for kind, value in self._subjects(username, ip)
        )

    @staticmethod
    def _subjects(username: str | None, ip: str | None) -> list[tuple[str, str]]:
        subjects = [("ip", ip)] if ip is not None else []
        if username:
            subjects.append(("user", username.lower()))
        return subjects

    async def retry_after(self, username: str | None, ip: str) -> int:
        """Seconds until the user or IP may try again; 0 when not locked."""
        if not self.suspect(username, ip):
            return 0
        keys = [f"{_PREFIX}lock:{kind}:{value}" for kind, value in self._subjects(username, ip)]
        count_io("redis")
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.ttl(key)
                ttls = list(await pipe.execute())
        except RedisError:
            ttls = [self._local.ttl(key) for key in keys]
        return max([t for t in ttls if t > 0], default=0)

    async def record_failure(self, username: str | None, ip: str) -> int:
        """Count a failure; returns the lock period started by it (0 when none)."""
        longest = 0
        self.hint(username, ip)
        if self._announce_failure is not None:
            await self._announce_failure(username, ip)
        for kind, value in self._subjects(username, ip):
            count_io("redis")
            threshold = self.policy.user_threshold if kind == "user" else self.policy.ip_threshold
            fails_key = f"{_PREFIX}fails:{kind}:{value}"
            try:
                longest = max(longest, await self._count_redis(kind, value, fails_key, threshold))
            except RedisError:
                longest = max(longest, self._count_local(kind, value, fails_key, threshold))
        return longest

    def _lock_seconds(self, strikes: int) -> int:
        return min(_MAX_LOCK, self.policy.base_lock * 2 ** max(0, strikes - 1))

    async def _count_redis(self, kind: str, value: str, fails_key: str, threshold: int) -> int:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(fails_key)
            pipe.expire(fails_key, self.policy.window, nx=True)
            fails, _ = await pipe.execute()
        if fails < threshold:
            return 0
        strikes_key = f"{_PREFIX}strikes:{kind}:{value}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(strikes_key)
            pipe.expire(strikes_key, _STRIKE_WINDOW)
            pipe.delete(fails_key)
            strikes, _, _ = await pipe.execute()
        seconds = self._lock_seconds(strikes)
        await self._redis.set(f"{_PREFIX}lock:{kind}:{value}", "1", ex=seconds)
        log.warning("lockout: %s %s locked for %ss after %s failures", kind, value, seconds, fails)
        return seconds

    def _count_local(self, kind: str, value: str, fails_key: str, threshold: int) -> int:
        if self._local.incr(fails_key, self.policy.window) < threshold:
            return 0
        self._local.delete(fails_key)
        strikes = self._local.incr(f"{_PREFIX}strikes:{kind}:{value}", _STRIKE_WINDOW)
        seconds = self._lock_seconds(strikes)
        self._local.set(f"{_PREFIX}lock:{kind}:{value}", seconds)
        return seconds

    async def record_success(self, username: str, ip: str) -> None:
        """The user's failure count starts again (only asked of Redis if there were failures)."""
        if not self.suspect(username, None):
            return
        self._suspects.drop(f"user:{username.lower()}")
        key = f"{_PREFIX}fails:user:{username.lower()}"
        count_io("redis")
        try:
            await self._redis.delete(key)
        except RedisError:
            self._local.delete(key)
