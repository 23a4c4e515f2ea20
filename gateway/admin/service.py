"""Admin changes, one place for the JSON API and the console: each checked, applied, audited.

Every change writes a security event naming who made it, from where, and the state before and
after, so an auditor can replay what the console did. Changes land in the shared database (users,
groups, tokens: every replica reads them on the next request) or go through the enforcer (policy:
announced to every replica at once).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from gateway.audit.record import security_event
from gateway.audit.writer import AuditWriter
from gateway.authn.passwords import hash_password
from gateway.authn.principal import Principal
from gateway.authz.enforcer import Enforcer
from gateway.authz.policy import Grouping, PolicyError, Rule, parse_lines
from gateway.authz.policy_import import stale_lines
from gateway.store.tokens import TokenRecord, TokenScope, TokenStore
from gateway.store.users import GroupRecord, StoreError, UserRecord, UserStore


class Conflict(StoreError):
    """The change contradicts the current state (exists already, or would lock someone out)."""


class Missing(StoreError):
    """The change names something that does not exist."""


@dataclass(frozen=True)
class Actor:
    """Who is making a change, and the request it came in."""

    principal: Principal
    client_ip: str | None = None
    request_id: str | None = None


def user_state(user: UserRecord | None) -> dict[str, Any] | None:
    if user is None:
        return None
    return {
        "username": user.username,
        "admin": user.is_admin,
        "disabled": user.disabled,
        "groups": list(user.groups),
        "local_password": user.has_password,
    }


def token_state(token: TokenRecord) -> dict[str, Any]:
    return {
        "id": token.id,
        "owner": token.owner,
        "name": token.name,
        "scope": token.scope.words(),
        "revoked": token.revoked_at is not None,
    }


class AdminService:
    def __init__(
        self, users: UserStore, tokens: TokenStore, enforcer: Enforcer, audit: AuditWriter
    ) -> None:
        self.users = users
        self.tokens = tokens
        self.enforcer = enforcer
        self._audit = audit

    def _event(self, actor: Actor, kind: str, **details: Any) -> None:
        security_event(
            self._audit,
            kind,
            actor_principal=actor.principal,
            client_ip=actor.client_ip,
            request_id=actor.request_id,
            via="admin",
            **details,
        )

    async def _user(self, username: str) -> UserRecord:
        user = await self.users.get(username)
        if user is None:
            raise Missing(f"no user named {username!r}")
        return user

    # -- users -----------------------------------------------------------------------------------

    async def create_user(
        self,
        actor: Actor,
        username: str,
        password: str | None,
        *,
        groups: tuple[str, ...] = (),
        admin: bool = False,
        email: str | None = None,
    ) -> UserRecord:
        if await self.users.get(username) is not None:
            raise Conflict(f"user {username!r} already exists")
        # argon2 is slow on purpose: keep it off the event loop.
        password_hash = await asyncio.to_thread(hash_password, password) if password else None
        user = await self.users.add(
            username, password_hash, groups=groups, is_admin=admin, email=email
        )
        self._event(actor, "user_created", user=username, before=None, after=user_state(user))
        return user

    async def update_user(
        self,
        actor: Actor,
        username: str,
        *,
        disabled: bool | None = None,
        admin: bool | None = None,
        password: str | None = None,
    ) -> UserRecord:
        before = await self._user(username)
        if username == actor.principal.subject and (disabled or admin is False):
            raise Conflict("you cannot disable yourself or take away your own admin flag")
        password_hash = await asyncio.to_thread(hash_password, password) if password else None
        if disabled is not None and disabled != before.disabled:
            await self.users.set_disabled(username, disabled)
        if admin is not None and admin != before.is_admin:
            await self.users.set_admin(username, admin)
        if password_hash is not None:
            await self.users.set_password(username, password_hash)
        after = await self._user(username)
        changes = {"password_changed": True} if password_hash else {}
        self._event(
            actor,
            "user_updated",
            user=username,
            before=user_state(before),
            after=user_state(after),
            **changes,
        )
        return after

    # -- groups ----------------------------------------------------------------------------------

    async def add_member(self, actor: Actor, group: str, username: str) -> GroupRecord:
        before = await self._user(username)
        await self.users.add_member(group, username)
        after = await self._user(username)
        self._event(
            actor,
            "group_member_added",
            user=username,
            group=group,
            before={"groups": list(before.groups)},
            after={"groups": list(after.groups)},
        )
        return await self._group(group)

    async def remove_member(self, actor: Actor, group: str, username: str) -> GroupRecord:
        before = await self._user(username)
        if group not in before.groups:
            raise Missing(f"user {username!r} is not in group {group!r}")
        await self.users.remove_member(group, username)
        self._event(
            actor,
            "group_member_removed",
            user=username,
            group=group,
            before={"groups": list(before.groups)},
            after={"groups": [g for g in before.groups if g != group]},
        )
        return await self._group(group)

    async def _group(self, name: str) -> GroupRecord:
        group = await self.users.group(name)
        if group is None:
            raise Missing(f"no group named {name!r}")
        return group

    # -- policy ----------------------------------------------------------------------------------

    async def add_line(self, actor: Actor, line: Rule | Grouping) -> bool:
        line.validate()
        added = await self.enforcer.add([line], actor=actor.principal.subject)
        if added:
            self._event(actor, "policy_added", rule=str(line), before=None, after=str(line))
        return bool(added)

    async def remove_line(self, actor: Actor, line: Rule | Grouping) -> None:
        try:
            removed = await self.enforcer.remove([line])
        except PolicyError as exc:
            raise Conflict(str(exc)) from None
        if not removed:
            raise Missing(f"no such line: {line}")
        self._event(actor, "policy_removed", rule=str(line), before=str(line), after=None)

    async def import_policy(self, actor: Actor, text: str, replace: bool) -> tuple[int, int, int]:
        """(added, removed, already present). A file with any bad line changes nothing."""
        lines = parse_lines(text)
        removed: list[Rule | Grouping] = []
        if replace:
            snapshot = await self.enforcer.store.snapshot()
            removed = await self.enforcer.remove(
                stale_lines((*snapshot.rules, *snapshot.groupings), lines)
            )
        added = await self.enforcer.add(lines, actor=actor.principal.subject)
        self._event(
            actor,
            "policy_imported",
            replace=replace,
            added=len(added),
            removed=len(removed),
            before=[str(line) for line in removed],
            after=[str(line) for line in added],
        )
        return len(added), len(removed), len(set(lines)) - len(added)

    # -- tokens ----------------------------------------------------------------------------------

    async def create_token(
        self,
        actor: Actor,
        owner: str,
        name: str,
        expires_in: timedelta,
        scope: TokenScope,
    ) -> tuple[TokenRecord, str]:
        record, secret = await self.tokens.create(owner, name, expires_in=expires_in, scope=scope)
        self._event(
            actor,
            "token_created",
            token=record.id,
            owner=owner,
            scope=scope.words(),
            before=None,
            after=token_state(record),
        )
        return record, secret

    async def revoke_token(
        self, actor: Actor, token_id: str, owner: str | None = None
    ) -> TokenRecord:
        """Revoke any token (admins), or with ``owner`` only one of that user's own."""
        found = await self.tokens.get(token_id)
        if found is None or (owner is not None and found.owner != owner):
            raise Missing(f"no token with id {token_id!r}")
        if token_id == actor.principal.token_id:
            raise Conflict("this request is made with that token; revoke it using another one")
        record = await self.tokens.revoke(token_id, owner=owner)
        before = token_state(found)
        self._event(
            actor,
            "token_revoked",
            token=record.id,
            owner=record.owner,
            before=before,
            after=token_state(record),
        )
        return record
