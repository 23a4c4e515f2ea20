"""`mlflow-gateway policy`: read, change and explain the authorization policy from a shell."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.authz.enforcer import CHANNEL
from gateway.authz.explain import Holder, explain, principal_of, who_can
from gateway.authz.policy import Grouping, PolicyError, PolicyIndex, Rule, parse_lines
from gateway.authz.policy_import import stale_lines
from gateway.cli_audit import record_cli_change
from gateway.cli_common import data_dir_option, settings_or_exit
from gateway.store.db import create_engine
from gateway.store.migrate import upgrade_database
from gateway.store.policies import PolicyStore
from gateway.store.users import UserStore

T = TypeVar("T")


def _run(
    action: Callable[[PolicyStore, UserStore], Awaitable[T]], data_dir: str | None, notify: bool
) -> T:
    settings = settings_or_exit(data_dir)

    async def main() -> T:
        engine = create_engine(settings.effective_database_url)
        try:
            await upgrade_database(engine)
            result = await action(PolicyStore(engine), UserStore(engine))
        finally:
            await engine.dispose()
        if notify:
            await _announce(settings.redis_url)
        return result

    try:
        return asyncio.run(main())
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from None


async def _announce(redis_url: str) -> None:
    """Tell running gateways at once; they also notice by themselves within seconds."""
    client = aioredis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2)
    try:
        await client.publish(CHANNEL, "cli")
    except RedisError:
        click.echo("note: Redis unreachable; gateways pick the change up within 5 s", err=True)
    finally:
        await client.aclose()


def subject_name(text: str, default_kind: str) -> str:
    """`bob` → `user:bob` (or `group:` for groups); prefixed names stay as they are."""
    return text if ":" in text else f"{default_kind}:{text}"


def _line(kind: str, args: tuple[str, ...]) -> Rule | Grouping:
    try:
        if kind == "p" and len(args) in (3, 4):
            return Rule(subject_name(args[0], "user"), *args[1:]).validate()
        if kind == "g" and len(args) == 2:
            return Grouping(
                subject_name(args[0], "user"), subject_name(args[1], "group")
            ).validate()
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from None
    raise click.UsageError("use: p SUBJECT OBJECT ACTION [allow|deny]   or   g USER GROUP")


@click.group()
def policy() -> None:
    """Authorization rules: add, remove, list, import, export, check, who-can."""


@policy.command("add")
@click.argument("kind", type=click.Choice(["p", "g"]))
@click.argument("args", nargs=-1, required=True)
@data_dir_option
def policy_add(kind: str, args: tuple[str, ...], data_dir: str | None) -> None:
    """Add `p SUBJECT OBJECT ACTION [allow|deny]` or `g USER GROUP`."""
    line = _line(kind, args)

    async def action(store: PolicyStore, _: UserStore) -> list[Any]:
        return await store.add([line], actor="cli")

    added = _run(action, data_dir, notify=True)
    if added:
        record_cli_change(settings_or_exit(data_dir), "policy_added", rule=str(line))
    click.echo(f"added: {line}" if added else f"already present: {line}")


@policy.command("remove")
@click.argument("kind", type=click.Choice(["p", "g"]))
@click.argument("args", nargs=-1, required=True)
@data_dir_option
def policy_remove(kind: str, args: tuple[str, ...], data_dir: str | None) -> None:
    """Remove a `p` or `g` line (written as for `add`)."""
    line = _line(kind, args)

    async def action(store: PolicyStore, _: UserStore) -> list[Any]:
        return await store.remove([line])

    removed = _run(action, data_dir, notify=True)
    if not removed:
        raise click.ClickException(f"no such line: {line}")
    record_cli_change(settings_or_exit(data_dir), "policy_removed", rule=str(line))
    click.echo(f"removed: {line}")


@policy.command("list")
@click.option("--subject", default=None, help="Only lines of this subject.")
@click.option("--object", "object_", default=None, help="Only rules on this object pattern.")
@click.option("--action", default=None, help="Only rules with this action.")
@data_dir_option
def policy_list(
    subject: str | None, object_: str | None, action: str | None, data_dir: str | None
) -> None:
    """List the policy as CSV lines."""

    async def load(store: PolicyStore, _: UserStore) -> Any:
        return await store.snapshot()

    snapshot = _run(load, data_dir, notify=False)
    for rule in snapshot.rules:
        if subject and rule.subject != subject_name(subject, "user"):
            continue
        if (object_ and rule.object != object_) or (action and rule.action != action):
            continue
        click.echo(str(rule))
    if not object_ and not action:
        for grouping in snapshot.groupings:
            if subject and subject_name(subject, "user") not in (grouping.member, grouping.group):
                continue
            click.echo(str(grouping))


@policy.command("export")
@data_dir_option
def policy_export(data_dir: str | None) -> None:
    """Write the whole policy as CSV to standard output."""

    async def load(store: PolicyStore, _: UserStore) -> Any:
        return await store.snapshot()

    snapshot = _run(load, data_dir, notify=False)
    click.echo(f"# mlflow-gateway policy, version {snapshot.version}")
    for line in (*snapshot.rules, *snapshot.groupings):
        click.echo(str(line))


@policy.command("import")
@click.argument("file", type=click.File("r"))
@click.option("--replace", is_flag=True, help="Remove every line not in FILE (admins keep theirs).")
@data_dir_option
def policy_import(file: Any, replace: bool, data_dir: str | None) -> None:
    """Add every line of a policy CSV (`-` for standard input); nothing changes on an error."""
    try:
        lines = parse_lines(file.read())
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from None

    async def action(store: PolicyStore, _: UserStore) -> tuple[int, int]:
        removed: list[Any] = []
        if replace:
            snapshot = await store.snapshot()
            removed = await store.remove(stale_lines((*snapshot.rules, *snapshot.groupings), lines))
        added = await store.add(lines, actor="cli import")
        return len(added), len(removed)

    added, removed = _run(action, data_dir, notify=True)
    record_cli_change(settings_or_exit(data_dir), "policy_imported", added=added, removed=removed)
    click.echo(f"imported: {added} added, {removed} removed, {len(lines) - added} already present")


@policy.command("check")
@click.argument("user")
@click.argument("object_")
@click.argument("action")
@click.option(
    "--group", "groups", multiple=True, help="Also a member of GROUP (e.g. from the IdP)."
)
@data_dir_option
def policy_check(
    user: str, object_: str, action: str, groups: tuple[str, ...], data_dir: str | None
) -> None:
    """May USER do ACTION on OBJECT? Prints the deciding rule; exit 0 on allow, 1 on deny."""

    async def decide(store: PolicyStore, users: UserStore) -> Any:
        snapshot = await store.snapshot()
        name = user.removeprefix("user:")
        principal = principal_of(name, await users.get(name), groups)
        return explain(
            PolicyIndex(snapshot.rules, snapshot.groupings), principal, (object_,), action
        )

    decision = _run(decide, data_dir, notify=False)
    click.echo(f"{'allow' if decision.allowed else 'deny'}: {decision.explain()}")
    sys.exit(0 if decision.allowed else 1)


@policy.command("who-can")
@click.argument("object_")
@click.argument("action")
@data_dir_option
def policy_who_can(object_: str, action: str, data_dir: str | None) -> None:
    """List the users and groups that may do ACTION on OBJECT, each with the rule that allows it."""

    async def who(store: PolicyStore, users: UserStore) -> list[Holder]:
        snapshot = await store.snapshot()
        index = PolicyIndex(snapshot.rules, snapshot.groupings)
        return who_can(index, await users.list(), (object_,), action)

    for holder in _run(who, data_dir, notify=False):
        click.echo(f"{holder.subject}\t{holder.rule}")
