"""The admin service as the shell uses it: the same `AdminService` as the API and the console, on
the database the settings name (migrated if needed), acting as the OS user (`cli:<user>`).

A command's changes are applied first; then running gateways are told of policy changes (they also
notice by themselves within seconds), and last its audit events go to Redis (or the shared spool)
in one batch: what a command printed always follows a finished change.
"""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import click
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.admin.service import Actor, AdminService
from gateway.audit.writer import AuditWriter, new_instance_id
from gateway.authn.principal import Principal
from gateway.authn.remembered import AuthChanges
from gateway.authz.enforcer import CHANNEL
from gateway.cli.common import settings_or_exit
from gateway.config import Settings
from gateway.policy_lines import Grouping, Rule
from gateway.store.db import create_engine
from gateway.store.migrate import upgrade_database
from gateway.store.policies import PolicyStore
from gateway.store.policy_history import Rollback
from gateway.store.tokens import TokenStore
from gateway.store.users import StoreError, UserStore

T = TypeVar("T")


class ShellPolicy:
    """Policy changes straight to the store (no index here), the gateways told afterwards.

    ``author``: what the policy's rows record as their creator (``cli``, ``cli import``)."""

    def __init__(self, store: PolicyStore, author: str) -> None:
        self.store = store
        self.author = author
        self.touched = False

    async def add(
        self, lines: Iterable[Rule | Grouping], actor: str | None
    ) -> list[Rule | Grouping]:
        added = await self.store.add(lines, actor, author=self.author)
        self.touched = True
        return added

    async def remove(
        self, lines: Iterable[Rule | Grouping], actor: str | None = None
    ) -> list[Rule | Grouping]:
        removed = await self.store.remove(lines, actor)
        self.touched = True
        return removed

    async def rollback(self, version: int, actor: str | None) -> Rollback:
        done = await self.store.rollback(version, actor)
        self.touched = True
        return done


CliService = AdminService[ShellPolicy]


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def cli_actor() -> Actor:
    """A local admin: whoever can reach the database from a shell administers the gateway."""
    return Actor(Principal(subject=f"cli:{_os_user()}", method="cli", is_admin=True))


def run_admin(
    action: Callable[[CliService], Awaitable[T]], data_dir: str | None, author: str = "cli"
) -> T:
    """Run ``action`` on the admin service, then announce and audit; errors as click errors."""
    settings = settings_or_exit(data_dir)

    async def main() -> T:
        redis = aioredis.Redis.from_url(
            settings.redis_url, socket_connect_timeout=2, socket_timeout=5
        )
        writer = _audit_writer(settings, redis)
        engine = create_engine(settings.effective_database_url)
        policy = ShellPolicy(PolicyStore(engine), author)
        try:
            try:
                await upgrade_database(engine)
                service = AdminService(
                    UserStore(engine),
                    TokenStore(engine),
                    policy,
                    writer,
                    via="cli",
                    token_lifetime=None,
                    # Gateways forget a changed user or token before the command returns (or,
                    # with Redis away, within seconds through the database's auth version).
                    auth_changes=AuthChanges(redis),
                )
                return await action(service)
            finally:
                await engine.dispose()
                if policy.touched:
                    await _announce(settings.redis_url)
                if writer.backlog:
                    writer.start()
                    await writer.stop()
        finally:
            await redis.aclose()

    try:
        return asyncio.run(main())
    except (StoreError, ValueError) as exc:  # also PolicyError, PasswordPolicyError, ScopeError
        raise click.ClickException(str(exc)) from None


def _audit_writer(settings: Settings, redis: aioredis.Redis) -> AuditWriter:
    """An audit writer for one command, started only when the command has something to record."""
    return AuditWriter(
        redis,
        settings.data_dir / "audit-spool",
        new_instance_id("cli"),
        maxlen=settings.audit_maxlen,
        spool_max_bytes=settings.audit_spool_max_bytes,
    )


async def _announce(redis_url: str) -> None:
    """Tell running gateways at once; they also notice by themselves within seconds."""
    client = aioredis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2)
    try:
        await client.publish(CHANNEL, "cli")
    except RedisError:
        click.echo("note: Redis unreachable; gateways pick the change up within 5 s", err=True)
    finally:
        await client.aclose()
