"""Users and groups: the queries the CLI, the login flow and the authenticator need."""

from __future__ import annotations

import builtins
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.store import auth_version
from gateway.store.models import Group, User

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,199}\Z")


class StoreError(ValueError):
    """A request the store refuses, with a message fit for the operator."""


def validate_name(kind: str, name: str) -> str:
    if not _NAME.match(name):
        raise StoreError(
            f"invalid {kind} name {name!r}: use letters, digits and . _ @ + - "
            "(starting with a letter or digit, at most 200 characters)"
        )
    return name


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class UserRecord:
    """What the rest of the gateway may know about a user (never the password hash)."""

    id: int
    username: str
    is_admin: bool
    disabled: bool
    email: str | None
    groups: tuple[str, ...]
    has_password: bool
    created_at: datetime
    last_login_at: datetime | None


@dataclass(frozen=True)
class GroupRecord:
    name: str
    members: tuple[str, ...]
    created_at: datetime


def to_user_record(user: User) -> UserRecord:
    return UserRecord(
        id=user.id,
        username=user.username,
        is_admin=user.is_admin,
        disabled=user.disabled,
        email=user.email,
        groups=tuple(sorted(g.name for g in user.groups)),
        has_password=user.password_hash is not None,
        created_at=user.created_at,
        last_login_at=user.last_login_at,
    )


class UserStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def _user(self, session: AsyncSession, username: str) -> User:
        user = await session.scalar(select(User).where(User.username == username))
        if user is None:
            raise StoreError(f"no user named {username!r}")
        return user

    async def _group(self, session: AsyncSession, name: str, create: bool) -> Group:
        group = await session.scalar(select(Group).where(Group.name == name))
        if group is None:
            if not create:
                raise StoreError(f"no group named {name!r}")
            group = Group(name=validate_name("group", name), created_at=now())
            session.add(group)
        return group

    async def add(
        self,
        username: str,
        password_hash: str | None,
        *,
        groups: tuple[str, ...] = (),
        is_admin: bool = False,
        email: str | None = None,
    ) -> UserRecord:
        validate_name("user", username)
        async with self._sessions.begin() as session:
            if await session.scalar(select(User.id).where(User.username == username)):
                raise StoreError(f"user {username!r} already exists")
            user = User(
                username=username,
                password_hash=password_hash,
                is_admin=is_admin,
                disabled=False,
                email=email,
                created_at=now(),
                groups=[await self._group(session, g, create=True) for g in groups],
            )
            session.add(user)
        return to_user_record(user)

    async def get(self, username: str) -> UserRecord | None:
        async with self._sessions() as session:
            user = await session.scalar(select(User).where(User.username == username))
            return to_user_record(user) if user else None

    async def credentials(self, username: str) -> tuple[UserRecord, str | None] | None:
        """The user and their password hash, for the authenticator alone."""
        async with self._sessions() as session:
            user = await session.scalar(select(User).where(User.username == username))
            return (to_user_record(user), user.password_hash) if user else None

    async def list(self) -> list[UserRecord]:
        async with self._sessions() as session:
            users = await session.scalars(select(User).order_by(User.username))
            return [to_user_record(u) for u in users]

    async def groups(self) -> builtins.list[GroupRecord]:
        async with self._sessions() as session:
            found = await session.scalars(select(Group).order_by(Group.name))
            return [
                GroupRecord(g.name, tuple(sorted(m.username for m in g.members)), g.created_at)
                for g in found
            ]

    async def group(self, name: str) -> GroupRecord | None:
        async with self._sessions() as session:
            group = await session.scalar(select(Group).where(Group.name == name))
            if group is None:
                return None
            members = tuple(sorted(m.username for m in group.members))
            return GroupRecord(group.name, members, group.created_at)

    async def set_password(self, username: str, password_hash: str) -> None:
        async with self._sessions.begin() as session:
            (await self._user(session, username)).password_hash = password_hash
            await auth_version.bump(session)

    async def set_disabled(self, username: str, disabled: bool) -> None:
        async with self._sessions.begin() as session:
            (await self._user(session, username)).disabled = disabled
            await auth_version.bump(session)

    async def set_admin(self, username: str, is_admin: bool) -> None:
        async with self._sessions.begin() as session:
            (await self._user(session, username)).is_admin = is_admin
            await auth_version.bump(session)

    async def record_login(self, username: str) -> None:
        async with self._sessions.begin() as session:
            (await self._user(session, username)).last_login_at = now()

    async def ensure_sso_user(self, username: str, email: str | None) -> UserRecord:
        """The record of someone the identity provider vouched for, created at first sign-in.

        A name that belongs to a local account (one with a password) is refused: otherwise an IdP
        user who picks the name of the bootstrap admin would become that admin.
        """
        async with self._sessions.begin() as session:
            user = await session.scalar(select(User).where(User.username == username))
            if user is None:
                user = User(
                    username=validate_name("user", username),
                    password_hash=None,
                    is_admin=False,
                    disabled=False,
                    email=email,
                    created_at=now(),
                    groups=[],
                )
                session.add(user)
            elif user.password_hash is not None:
                raise StoreError(f"{username!r} is a local account; single sign-on cannot use it")
            elif email and user.email != email:
                user.email = email
            user.last_login_at = now()
        return to_user_record(user)

    async def add_member(self, group: str, username: str) -> None:
        async with self._sessions.begin() as session:
            user = await self._user(session, username)
            target = await self._group(session, group, create=True)
            if target not in user.groups:
                user.groups.append(target)
                await auth_version.bump(session)

    async def remove_member(self, group: str, username: str) -> None:
        async with self._sessions.begin() as session:
            user = await self._user(session, username)
            target = await self._group(session, group, create=False)
            if target not in user.groups:
                raise StoreError(f"user {username!r} is not in group {group!r}")
            user.groups.remove(target)
            await auth_version.bump(session)
