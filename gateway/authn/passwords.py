"""Password hashing (argon2id) and a short-lived cache of successful checks.

Verifying a password costs ~50 ms by design. A client making hundreds of calls with basic auth must
not pay that each time, so a success is remembered for a few minutes — keyed by an HMAC of the
credentials under a per-process random key (never the password itself), and tied to the password
hash it was checked against: once the password changes, on any replica, the stored hash differs and
the entry no longer matches.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gateway.cache import BoundedCache

_hasher = PasswordHasher()

MIN_PASSWORD_LENGTH = 12


class PasswordPolicyError(ValueError):
    pass


def check_password_policy(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordPolicyError(f"passwords need at least {MIN_PASSWORD_LENGTH} characters")


def hash_password(password: str) -> str:
    check_password_policy(password)
    return _hasher.hash(password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """A real hash to verify against when the user does not exist: both cases cost the same."""
    return _hasher.hash(secrets.token_urlsafe(16))


class PasswordVerifier:
    def __init__(self, ttl: float = 300.0, max_entries: int = 10_000) -> None:
        self._key = secrets.token_bytes(32)
        self._cache = BoundedCache(max_entries, ttl)

    def _cache_key(self, username: str, password: str) -> str:
        message = username.encode() + b"\0" + password.encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    async def verify(self, username: str, password: str, password_hash: str | None) -> bool:
        """True when ``password`` matches ``password_hash`` (the user's current hash)."""
        if password_hash is None:
            await asyncio.to_thread(_verify, _dummy_hash(), password)
            return False
        key = self._cache_key(username, password)
        # A hit counts only for the hash it was checked against: a changed password misses.
        if self._cache.get(key) == password_hash:
            return True
        if not await asyncio.to_thread(_verify, password_hash, password):
            return False
        self._cache.put(key, password_hash)
        return True
