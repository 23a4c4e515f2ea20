"""`mlflow-gateway users|groups|tokens`: account administration from a shell."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from gateway.authn.passwords import PasswordPolicyError, hash_password
from gateway.cli_common import data_dir_option, settings_or_exit
from gateway.store.db import create_engine
from gateway.store.migrate import upgrade_database
from gateway.store.tokens import TokenScope, TokenStore, parse_duration
from gateway.store.users import StoreError, UserStore

T = TypeVar("T")


def _run(action: Callable[[UserStore, TokenStore], Awaitable[T]], data_dir: str | None) -> T:
    """Open the database named by the settings (migrating it if needed), run, and close."""
    settings = settings_or_exit(data_dir)

    async def main() -> T:
        engine = create_engine(settings.effective_database_url)
        try:
            await upgrade_database(engine)
            return await action(UserStore(engine), TokenStore(engine))
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except (StoreError, PasswordPolicyError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


def _audit(data_dir: str | None, kind: str, **details: Any) -> None:
    from gateway.cli_audit import record_cli_change

    record_cli_change(settings_or_exit(data_dir), kind, **details)


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise click.ClickException("no password on standard input")
        return password
    if not sys.stdin.isatty():
        raise click.ClickException("use --password-stdin to pass a password without a terminal")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


def _table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@click.group()
def users() -> None:
    """Local users: add, change passwords, disable, list."""


@users.command("add")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--group", "groups", multiple=True, help="Add to this group (repeatable).")
@click.option("--admin", is_flag=True, help="Give the user the admin role.")
@click.option("--sso-only", is_flag=True, help="No password: the user signs in through SSO only.")
@data_dir_option
def users_add(
    name: str,
    password_stdin: bool,
    groups: tuple[str, ...],
    admin: bool,
    sso_only: bool,
    data_dir: str | None,
) -> None:
    """Create user NAME."""
    password_hash = None if sso_only else hash_password(_read_password(password_stdin))

    async def action(store: UserStore, _: TokenStore) -> Any:
        return await store.add(name, password_hash, groups=groups, is_admin=admin)

    _run(action, data_dir)
    _audit(data_dir, "user_created", user=name, groups=list(groups), admin=admin, sso_only=sso_only)
    click.echo(f"user {name} created")


@users.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@data_dir_option
def users_passwd(name: str, password_stdin: bool, data_dir: str | None) -> None:
    """Set the password of user NAME (takes effect on every replica at once)."""
    password_hash = hash_password(_read_password(password_stdin))

    async def action(store: UserStore, _: TokenStore) -> None:
        await store.set_password(name, password_hash)

    _run(action, data_dir)
    _audit(data_dir, "password_changed", user=name)
    click.echo(f"password of {name} changed")


@users.command("disable")
@click.argument("name")
@data_dir_option
def users_disable(name: str, data_dir: str | None) -> None:
    """Disable user NAME: passwords, tokens and sessions stop working at once."""

    async def action(store: UserStore, _: TokenStore) -> None:
        await store.set_disabled(name, True)

    _run(action, data_dir)
    _audit(data_dir, "user_disabled", user=name)
    click.echo(f"user {name} disabled")


@users.command("enable")
@click.argument("name")
@data_dir_option
def users_enable(name: str, data_dir: str | None) -> None:
    """Enable user NAME again."""

    async def action(store: UserStore, _: TokenStore) -> None:
        await store.set_disabled(name, False)

    _run(action, data_dir)
    _audit(data_dir, "user_enabled", user=name)
    click.echo(f"user {name} enabled")


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@data_dir_option
def users_list(as_json: bool, data_dir: str | None) -> None:
    """List users."""

    async def action(store: UserStore, _: TokenStore) -> Any:
        return await store.list()

    records = _run(action, data_dir)
    if as_json:
        for u in records:
            click.echo(
                json.dumps(
                    {
                        "username": u.username,
                        "admin": u.is_admin,
                        "disabled": u.disabled,
                        "groups": list(u.groups),
                        "password": u.has_password,
                        "created_at": u.created_at.isoformat(),
                        "last_login_at": u.last_login_at.isoformat() if u.last_login_at else None,
                    }
                )
            )
        return
    _table(
        [
            [
                u.username,
                "yes" if u.is_admin else "",
                "disabled" if u.disabled else "active",
                ",".join(u.groups),
                "password" if u.has_password else "sso",
                _when(u.last_login_at),
            ]
            for u in records
        ],
        ["USER", "ADMIN", "STATE", "GROUPS", "SIGN-IN", "LAST LOGIN"],
    )


@click.group()
def groups() -> None:
    """Group membership of local users."""


@groups.command("add-member")
@click.argument("group")
@click.argument("user")
@data_dir_option
def groups_add_member(group: str, user: str, data_dir: str | None) -> None:
    """Put USER in GROUP (the group is created if needed)."""

    async def action(store: UserStore, _: TokenStore) -> None:
        await store.add_member(group, user)

    _run(action, data_dir)
    _audit(data_dir, "group_member_added", user=user, group=group)
    click.echo(f"{user} added to {group}")


@groups.command("remove-member")
@click.argument("group")
@click.argument("user")
@data_dir_option
def groups_remove_member(group: str, user: str, data_dir: str | None) -> None:
    """Take USER out of GROUP."""

    async def action(store: UserStore, _: TokenStore) -> None:
        await store.remove_member(group, user)

    _run(action, data_dir)
    _audit(data_dir, "group_member_removed", user=user, group=group)
    click.echo(f"{user} removed from {group}")


@click.group()
def tokens() -> None:
    """Gateway tokens for programs and people."""


@tokens.command("create")
@click.argument("name")
@click.option("--user", "owner", required=True, help="The user the token acts as.")
@click.option("--expires-in", default=None, help="e.g. 30d, 12h, 90m (default: never).")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    help="read-only, experiment:<id> or registered_model:<name> (repeatable).",
)
@data_dir_option
def tokens_create(
    name: str, owner: str, expires_in: str | None, scopes: tuple[str, ...], data_dir: str | None
) -> None:
    """Create token NAME for --user; the token is the last line of output, shown only once."""
    try:
        lifetime = parse_duration(expires_in) if expires_in else None
        scope = TokenScope.parse(scopes)
    except (ValueError, StoreError) as exc:
        raise click.ClickException(str(exc)) from None

    async def action(_: UserStore, store: TokenStore) -> Any:
        return await store.create(owner, name, expires_in=lifetime, scope=scope)

    record, secret = _run(action, data_dir)
    _audit(data_dir, "token_created", token=record.id, owner=owner, scope=list(scopes))
    expiry = record.expires_at.isoformat() if record.expires_at else "never"
    click.echo(f"token {record.id} ({name}) for {owner}, expires {expiry}", err=True)
    click.echo("store it now: it is not shown again", err=True)
    click.echo(secret)


@tokens.command("list")
@click.option("--user", "owner", default=None, help="Only this user's tokens.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@data_dir_option
def tokens_list(owner: str | None, as_json: bool, data_dir: str | None) -> None:
    """List tokens (never their secrets)."""

    async def action(_: UserStore, store: TokenStore) -> Any:
        return await store.list(owner)

    records = _run(action, data_dir)
    now = datetime.now(UTC)
    if as_json:
        for t in records:
            click.echo(
                json.dumps(
                    {
                        "id": t.id,
                        "name": t.name,
                        "owner": t.owner,
                        "scope": t.scope.words(),
                        "state": t.state(now),
                        "created_at": t.created_at.isoformat(),
                        "expires_at": t.expires_at.isoformat() if t.expires_at else None,
                        "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
                    }
                )
            )
        return
    _table(
        [
            [
                t.id,
                t.name,
                t.owner,
                ",".join(t.scope.words()) or "-",
                t.state(now),
                _when(t.expires_at),
                _when(t.last_used_at),
            ]
            for t in records
        ],
        ["ID", "NAME", "OWNER", "SCOPE", "STATE", "EXPIRES", "LAST USED"],
    )


@tokens.command("revoke")
@click.argument("token_id")
@data_dir_option
def tokens_revoke(token_id: str, data_dir: str | None) -> None:
    """Revoke token TOKEN_ID; it stops working on the next request, on every replica."""

    async def action(_: UserStore, store: TokenStore) -> Any:
        return await store.revoke(token_id)

    record = _run(action, data_dir)
    _audit(data_dir, "token_revoked", token=record.id, owner=record.owner)
    click.echo(f"token {record.id} ({record.name}) of {record.owner} revoked")
