"""Admin changes, one place for the JSON API, the console and the CLI: checked, applied, audited.

Every change writes a security event naming who made it, from where, through which door (`via`:
`admin` for the API and the console, `cli` for the shell), and the state before and after, so an
auditor can replay what was done. Changes land in the shared database (users, groups, tokens: every
replica reads them on the next request) or go through the policy's writer (in a gateway the
enforcer, which announces them to every replica at once).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from gateway.admin.expiry_audit import audit_expired
from gateway.admin.shapes import iso, token_state, user_state
from gateway.admin.token_rules import expiry_of, mint_refusal
from gateway.audit.record import security_event
from gateway.audit.writer import AuditWriter
from gateway.authn.passwords import hash_password
from gateway.authn.principal import Principal
from gateway.authn.remembered import AuthChanges
from gateway.authz.policy_import import stale_lines
from gateway.policy_lines import Grouping, PolicyError, Rule, parse_lines
from gateway.scopes import TokenScope
from gateway.store.policy_history import Rollback, UnknownVersion
from gateway.store.tokens import TokenRecord, TokenStore
from gateway.store.users import GroupRecord, StoreError, UserRecord, UserStore, now

if TYPE_CHECKING:
    from gateway.authz.enforcer import Enforcer
    from gateway.store.policies import PolicyStore

# A new token's lifetime when the request names none (and no minting token bounds it).
DEFAULT_TOKEN_LIFETIME = timedelta(days=30)
SCOPED_ADMIN = (
    "A token with a scope cannot administer the gateway, even an admin's token: use an unscoped "
    "token, a password or a browser session."
)
SCOPED_REVOKE = (
    "A token with a scope can revoke only itself: revoke other tokens with an unscoped token, "
    "a password or a browser session."
)


class Conflict(StoreError):
    """The change contradicts the current state (exists already, or would lock someone out)."""


class Missing(StoreError):
    """The change names something that does not exist."""


class NotPermitted(StoreError):
    """The caller may not make this change (403); the message says what to change."""


def admin_refusal(enforcer: Enforcer, principal: Principal) -> str | None:
    """Why ``principal`` may not use the admin API or the console's admin pages; None if it may.

    A token with any scope is refused even when its owner is an admin: administration (users,
    policy, everyone's tokens, the audit trail) is exactly what a narrowed token must not reach.
    """
    if not enforcer.is_admin(principal):
        return "This is for gateway admins."
    if principal.scope is not None:
        return SCOPED_ADMIN
    return None


@dataclass(frozen=True)
class Actor:
    """Who is making a change, and the request it came in (none from the shell)."""

    principal: Principal
    client_ip: str | None = None
    request_id: str | None = None


class PolicyChanges(Protocol):
    """Where policy changes go: the enforcer in a gateway (applied and announced at once), the
    CLI's store writer from a shell (announced when the command is done)."""

    @property
    def store(self) -> PolicyStore: ...

    async def add(
        self, lines: Iterable[Rule | Grouping], actor: str | None
    ) -> list[Rule | Grouping]: ...

    async def remove(
        self, lines: Iterable[Rule | Grouping], actor: str | None = None
    ) -> list[Rule | Grouping]: ...

    async def rollback(self, version: int, actor: str | None) -> Rollback: ...


P = TypeVar("P", bound=PolicyChanges)


class ChangeAudit:
    """The security events of changes: who, from where, through which door, and how it ended."""

    def __init__(self, writer: AuditWriter, via: str | None) -> None:
        self._writer = writer
        self._via = {"via": via} if via else {}

    def __call__(self, actor: Actor, kind: str, outcome: str = "success", **details: Any) -> None:
        security_event(
            self._writer,
            kind,
            actor_principal=actor.principal,
            client_ip=actor.client_ip,
            request_id=actor.request_id,
            outcome=outcome,
            **self._via,
            **details,
        )


class AdminService(Generic[P]):
    """Users, groups and policy lines; tokens through its `token_service`."""

    def __init__(
        self,
        users: UserStore,
        tokens: TokenStore,
        policy: P,
        audit: AuditWriter,
        *,
        via: str = "admin",
        token_lifetime: timedelta | None = DEFAULT_TOKEN_LIFETIME,
        auth_changes: AuthChanges | None = None,
    ) -> None:
        self.users = users
        self.tokens = tokens
        self.policy = policy
        self._event = ChangeAudit(audit, via)
        # Every replica forgets what it remembered of a changed user before the change returns.
        self._auth_changes = auth_changes
        self.token_service = TokenService(tokens, audit, via, token_lifetime, auth_changes)
        # A gateway's policy (the enforcer) tells of the expired rules its store removal took
        # out: one event each, whichever replica it was.
        expired: list[Callable[[list[Rule]], None]] | None = getattr(policy, "on_expired", None)
        if expired is not None:
            expired.append(functools.partial(audit_expired, audit))

    async def _changed(self, username: str) -> None:
        if self._auth_changes is not None:
            await self._auth_changes.announce(user=username)

    async def _user(self, username: str) -> UserRecord:
        user = await self.users.get(username)
        if user is None:
            raise Missing(f"no user named {username!r}")
        return user

    async def _group(self, name: str) -> GroupRecord:
        group = await self.users.group(name)
        if group is None:
            raise Missing(f"no group named {name!r}")
        return group

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
        await self._changed(username)
        after = await self._user(username)
        states: dict[str, Any] = {"before": user_state(before), "after": user_state(after)}
        changes: dict[str, Any] = {"password_changed": True} if password_hash else {}
        self._event(actor, "user_updated", user=username, **states, **changes)
        return after

    # -- groups ----------------------------------------------------------------------------------

    async def add_member(self, actor: Actor, group: str, username: str) -> GroupRecord:
        before = await self._user(username)
        await self.users.add_member(group, username)
        await self._changed(username)
        after = await self._user(username)
        self._membership(actor, "group_member_added", username, group, before, after.groups)
        return await self._group(group)

    async def remove_member(self, actor: Actor, group: str, username: str) -> GroupRecord:
        before = await self._user(username)
        if group not in before.groups:
            await self._group(group)  # no such group at all says so
            raise Missing(f"user {username!r} is not in group {group!r}")
        await self.users.remove_member(group, username)
        await self._changed(username)
        after = tuple(g for g in before.groups if g != group)
        self._membership(actor, "group_member_removed", username, group, before, after)
        return await self._group(group)

    def _membership(
        self,
        actor: Actor,
        kind: str,
        username: str,
        group: str,
        before: UserRecord,
        after: tuple[str, ...],
    ) -> None:
        self._event(
            actor,
            kind,
            user=username,
            group=group,
            before={"groups": list(before.groups)},
            after={"groups": list(after)},
        )

    # -- policy ----------------------------------------------------------------------------------

    async def add_line(self, actor: Actor, line: Rule | Grouping) -> bool:
        """Add a line (a rule already there with another expiry gets this one)."""
        line.validate()
        added = await self.policy.add([line], actor=actor.principal.subject)
        if added:
            self._event(actor, "policy_added", rule=str(line), before=None, after=str(line))
        return bool(added)

    async def remove_line(self, actor: Actor, line: Rule | Grouping) -> None:
        try:
            removed = await self.policy.remove([line], actor=actor.principal.subject)
        except PolicyError as exc:
            raise Conflict(str(exc)) from None
        if not removed:
            raise Missing(f"no such line: {line}")
        stored = str(removed[0])
        self._event(actor, "policy_removed", rule=stored, before=stored, after=None)

    async def rollback(self, actor: Actor, version: int) -> Rollback:
        """The policy as it was at ``version``, as one new change; an unknown version is
        Missing. The admin rule stays, whatever that version had."""
        try:
            done = await self.policy.rollback(version, actor.principal.subject)
        except UnknownVersion as exc:
            raise Missing(str(exc)) from None
        self._event(
            actor,
            "policy_rolled_back",
            to_version=version,
            version=done.version,
            added=len(done.added),
            removed=len(done.removed),
            before=[str(x) for x in done.removed],
            after=[str(x) for x in done.added],
        )
        return done

    async def import_policy(self, actor: Actor, text: str, replace: bool) -> tuple[int, int, int]:
        """(added, removed, already present). A file with any bad line changes nothing."""
        return await self.import_lines(actor, parse_lines(text), replace)

    async def import_lines(
        self, actor: Actor, lines: list[Rule | Grouping], replace: bool
    ) -> tuple[int, int, int]:
        """(added, removed, already present); ``replace``: every other line goes (not the
        admins')."""
        removed: list[Rule | Grouping] = []
        if replace:
            snapshot = await self.policy.store.snapshot()
            removed = await self.policy.remove(
                stale_lines((*snapshot.rules, *snapshot.groupings), lines),
                actor=actor.principal.subject,
            )
        added = await self.policy.add(lines, actor=actor.principal.subject)
        counts: dict[str, Any] = {"replace": replace, "added": len(added), "removed": len(removed)}
        states: dict[str, Any] = {
            "before": [str(x) for x in removed],
            "after": [str(x) for x in added],
        }
        self._event(actor, "policy_imported", **counts, **states)
        return len(added), len(removed), len(set(lines)) - len(added)

    # -- tokens ----------------------------------------------------------------------------------

    async def create_token(
        self,
        actor: Actor,
        owner: str,
        name: str,
        expires_in: timedelta | None,
        scope: TokenScope,
    ) -> tuple[TokenRecord, str]:
        return await self.token_service.create(actor, owner, name, scope, expires_in)

    async def revoke_token(
        self, actor: Actor, token_id: str, owner: str | None = None
    ) -> TokenRecord:
        return await self.token_service.revoke(actor, token_id, owner)


class TokenService:
    """Creating, listing and revoking tokens for people: the one path of the tokens page, the
    console, the JSON API and the CLI, so the rules of `token_rules` hold at every door.

    ``lifetime``: how long a token lives when its creator names no lifetime (None: for ever, as
    the CLI has always made them)."""

    def __init__(
        self,
        tokens: TokenStore,
        audit: AuditWriter,
        via: str | None = None,
        lifetime: timedelta | None = DEFAULT_TOKEN_LIFETIME,
        auth_changes: AuthChanges | None = None,
    ) -> None:
        self.tokens = tokens
        self._event = ChangeAudit(audit, via)
        self._lifetime = lifetime
        self._auth_changes = auth_changes

    async def _minting_token(self, actor: Actor) -> TokenRecord | None:
        token_id = actor.principal.token_id
        if token_id is None:
            return None
        record = await self.tokens.get(token_id)
        if record is None:  # deleted between authentication and now
            raise NotPermitted("The token making this request no longer exists.")
        return record

    def _expiry(self, minting: TokenRecord | None, expires_in: timedelta | None) -> datetime | None:
        if expires_in is not None:
            return now() + expires_in
        # Not named: a token's child expires with it rather than being refused.
        limit = expiry_of(minting) if minting is not None else None
        return limit or (now() + self._lifetime if self._lifetime else None)

    async def create(
        self,
        actor: Actor,
        owner: str,
        name: str,
        scope: TokenScope,
        expires_in: timedelta | None = None,
    ) -> tuple[TokenRecord, str]:
        """A new token for ``owner``; ``expires_in`` None: the default lifetime."""
        minting = await self._minting_token(actor)
        expires_at = self._expiry(minting, expires_in)
        if minting is not None and (why := mint_refusal(minting, owner, scope, expires_at)):
            self._event(
                actor,
                "token_created",
                "failure",
                reason=why,
                owner=owner,
                scope=scope.words(),
                expires_at=iso(expires_at),
            )
            raise NotPermitted(why)
        record, secret = await self.tokens.create(owner, name, expires_at=expires_at, scope=scope)
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

    async def own(self, principal: Principal) -> list[TokenRecord]:
        """The caller's tokens, oldest first; a token with a scope sees only itself."""
        tokens = await self.tokens.list(principal.subject)
        if principal.scope is None:
            return tokens
        return [t for t in tokens if t.id == principal.token_id]

    async def revoke(self, actor: Actor, token_id: str, owner: str | None = None) -> TokenRecord:
        """Revoke any token (admins), or with ``owner`` only one of that user's own. A token with
        a scope may revoke itself and nothing else; one without cannot revoke itself."""
        principal = actor.principal
        if principal.scope is not None and token_id != principal.token_id:
            self._event(actor, "token_revoked", "failure", reason=SCOPED_REVOKE, token=token_id)
            raise NotPermitted(SCOPED_REVOKE)
        found = await self.tokens.get(token_id)
        if found is None or (owner is not None and found.owner != owner):
            raise Missing(f"no token with id {token_id!r}")
        # An unscoped token is its owner's whole credential: a script revoking the token it runs
        # on locks itself out. A scoped one is delegated: its holder may give it up.
        if token_id == principal.token_id and principal.scope is None:
            raise Conflict("this request is made with that token; revoke it using another one")
        record = await self.tokens.revoke(token_id, owner=owner)
        if self._auth_changes is not None:
            await self._auth_changes.announce(token=record.id)
        self._event(
            actor,
            "token_revoked",
            token=record.id,
            owner=record.owner,
            before=token_state(found),
            after=token_state(record),
        )
        return record
