"""Gateway-issued tokens: opaque, random, shown once, stored only as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from gateway.io_counts import count_io
from gateway.scopes import TokenScope
from gateway.store import auth_version
from gateway.store.db import SqliteReader, sqlite_reader
from gateway.store.models import Group, Token, User, group_members
from gateway.store.users import StoreError, UserRecord, now, validate_name

TOKEN_PREFIX = "mlgw_"  # noqa: S105 - a public marker, not a secret
_TOKEN_SHAPE = re.compile(r"^mlgw_[A-Za-z0-9_-]{43}\Z")
# Writing last-use on every request would turn each read into a write; a minute is precise enough.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def looks_like_gateway_token(value: str) -> bool:
    return value.startswith(TOKEN_PREFIX)


def hash_secret(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenRecord:
    id: str
    owner: str
    name: str
    scope: TokenScope
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def state(self, at: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and _aware(self.expires_at) <= at:
            return "expired"
        return "active"


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes even for timezone=True columns; they were stored as UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _token_record(token: Token) -> TokenRecord:
    return TokenRecord(
        id=token.id,
        owner=token.owner.username,
        name=token.name,
        scope=TokenScope.from_json(token.scope),
        created_at=token.created_at,
        expires_at=token.expires_at,
        revoked_at=token.revoked_at,
        last_used_at=token.last_used_at,
    )


# One statement for the token, its owner and the owner's groups (a row per group): the check runs
# on every request, so it makes one trip to the database, not one per ORM relationship.
_CHECK = (
    select(
        Token.id,
        Token.name,
        Token.scope,
        Token.created_at,
        Token.expires_at,
        Token.revoked_at,
        Token.last_used_at,
        User.id,
        User.username,
        User.is_admin,
        User.disabled,
        User.email,
        User.password_hash.is_not(None),
        User.created_at,
        User.last_login_at,
        Group.name,
    )
    .join(User, User.id == Token.owner_id)
    .outerjoin(group_members, group_members.c.user_id == User.id)
    .outerjoin(Group, Group.id == group_members.c.group_id)
    .where(Token.secret_hash == bindparam("secret_hash"))
)


# The same statement as SQLite text, for the direct reader (one positional parameter).
_CHECK_SQLITE = str(_CHECK.compile(dialect=sqlite.dialect()))


def _time(value: Any) -> datetime | None:
    # The direct SQLite reader gets the text SQLAlchemy stored; the async engines get datetimes.
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _records(rows: Sequence[Sequence[Any]]) -> tuple[TokenRecord, UserRecord]:
    (tid, name, scope, created, expires, revoked, last_used) = rows[0][:7]
    (uid, username, is_admin, disabled, email, has_password, u_created, last_login) = rows[0][7:15]
    token = TokenRecord(
        id=str(tid),
        owner=str(username),
        name=str(name),
        scope=TokenScope.from_json(str(scope)),
        created_at=_time(created) or datetime.min,
        expires_at=_time(expires),
        revoked_at=_time(revoked),
        last_used_at=_time(last_used),
    )
    owner = UserRecord(
        id=int(uid),
        username=str(username),
        is_admin=bool(is_admin),
        disabled=bool(disabled),
        email=email,
        groups=tuple(sorted(str(r[15]) for r in rows if r[15] is not None)),
        has_password=bool(has_password),
        created_at=_time(u_created) or datetime.min,
        last_login_at=_time(last_login),
    )
    return token, owner


@dataclass(frozen=True)
class TokenCheck:
    """Outcome of presenting a token: the owner when valid, else why not (for the audit log)."""

    owner: UserRecord | None
    token: TokenRecord | None
    refusal: str | None


class TokenStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._reader = sqlite_reader(engine)
        # The records last made from each token's rows: the same rows give the same records.
        self._parsed: dict[str, tuple[object, TokenRecord, UserRecord]] = {}

    async def create(
        self,
        owner: str,
        name: str,
        *,
        expires_in: timedelta | None = None,
        expires_at: datetime | None = None,
        scope: TokenScope | None = None,
    ) -> tuple[TokenRecord, str]:
        """Returns the record and the secret. The secret exists nowhere else afterwards.

        ``expires_at`` (exact, e.g. a minting token's own expiry) wins over ``expires_in``."""
        validate_name("token", name)
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        async with self._sessions.begin() as session:
            user = await session.scalar(select(User).where(User.username == owner))
            if user is None:
                raise StoreError(f"no user named {owner!r}")
            created = now()
            token = Token(
                id=secrets.token_hex(6),
                owner_id=user.id,
                owner=user,
                name=name,
                secret_hash=hash_secret(secret),
                scope=(scope or TokenScope()).to_json(),
                created_at=created,
                expires_at=expires_at or (created + expires_in if expires_in else None),
            )
            session.add(token)
        return _token_record(token), secret

    async def list(self, owner: str | None = None) -> list[TokenRecord]:
        async with self._sessions() as session:
            query = select(Token).join(Token.owner).order_by(Token.created_at)
            if owner is not None:
                query = query.where(User.username == owner)
            return [_token_record(t) for t in await session.scalars(query)]

    async def get(self, token_id: str) -> TokenRecord | None:
        async with self._sessions() as session:
            token = await session.get(Token, token_id)
            return _token_record(token) if token else None

    async def revoke(self, token_id: str, owner: str | None = None) -> TokenRecord:
        """Revoke by id; with ``owner``, only that user's token (people revoking their own)."""
        async with self._sessions.begin() as session:
            token = await session.get(Token, token_id)
            if token is None or (owner is not None and token.owner.username != owner):
                raise StoreError(f"no token with id {token_id!r}")
            if token.revoked_at is None:
                token.revoked_at = now()
                await auth_version.bump(session)
            return _token_record(token)

    async def touch(self, token_id: str, at: datetime) -> None:
        """Record the token's last use (at most once a minute per token)."""
        async with self._sessions.begin() as session:
            await session.execute(update(Token).where(Token.id == token_id).values(last_used_at=at))

    async def _lookup(self, secret_hash: str) -> Sequence[Sequence[Any]]:
        if self._reader is not None:
            try:
                # Straight from sqlite3, past the engine's statement count: counted here.
                count_io("sql")
                return self._reader.query(_CHECK_SQLITE, (secret_hash,))
            except sqlite3.OperationalError:
                pass  # locked for longer than a hot-path read may wait: through the driver
        async with self._engine.connect() as connection:
            return (await connection.execute(_CHECK, {"secret_hash": secret_hash})).all()

    async def check(self, secret: str) -> TokenCheck:
        if not _TOKEN_SHAPE.match(secret):
            return TokenCheck(None, None, "malformed token")
        secret_hash = hash_secret(secret)
        rows = await self._lookup(secret_hash)
        if not rows:
            return TokenCheck(None, None, "unknown token")
        parsed = self._parsed.get(secret_hash)
        if parsed is not None and parsed[0] is rows:
            record, owner = parsed[1], parsed[2]
        else:
            record, owner = _records(rows)
            if self._reader is not None:  # only its answers are ever the same rows again
                if len(self._parsed) >= SqliteReader.MAX_REMEMBERED:
                    self._parsed.clear()
                self._parsed[secret_hash] = (rows, record, owner)
        at = now()
        state = record.state(at)
        if state != "active":
            return TokenCheck(None, record, f"token {record.id} is {state}")
        if owner.disabled:
            return TokenCheck(None, record, f"owner of token {record.id} is disabled")
        last = record.last_used_at
        if last is None or at - _aware(last) > LAST_USED_RESOLUTION:
            await self.touch(record.id, at)
        return TokenCheck(owner, record, None)
