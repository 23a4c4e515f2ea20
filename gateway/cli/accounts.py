"""`mlflow-gateway users|groups|tokens`: account administration from a shell."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click

from gateway.cli.common import data_dir_option
from gateway.cli.service import CliService, cli_actor, run_admin
from gateway.scopes import TokenScope, parse_duration


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


def _show(
    records: list[Any],
    as_json: bool,
    as_dict: Callable[[Any], dict[str, Any]],
    as_row: Callable[[Any], list[str]],
    header: list[str],
) -> None:
    """One JSON object per record and line, or a table."""
    if as_json:
        for record in records:
            click.echo(json.dumps(as_dict(record)))
        return
    _table([as_row(record) for record in records], header)


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
    password = None if sso_only else _read_password(password_stdin)

    async def action(service: CliService) -> Any:
        return await service.create_user(cli_actor(), name, password, groups=groups, admin=admin)

    run_admin(action, data_dir)
    click.echo(f"user {name} created")


@users.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@data_dir_option
def users_passwd(name: str, password_stdin: bool, data_dir: str | None) -> None:
    """Set the password of user NAME (takes effect on every replica at once)."""
    password = _read_password(password_stdin)
    run_admin(lambda service: service.update_user(cli_actor(), name, password=password), data_dir)
    click.echo(f"password of {name} changed")


def _switch(command: str, disabled: bool, summary: str) -> None:
    """`users disable` and `users enable`."""

    @users.command(command, help=summary)
    @click.argument("name")
    @data_dir_option
    def switch(name: str, data_dir: str | None) -> None:
        run_admin(
            lambda service: service.update_user(cli_actor(), name, disabled=disabled), data_dir
        )
        click.echo(f"user {name} {command}d")


_switch("disable", True, "Disable user NAME: passwords, tokens and sessions stop working at once.")
_switch("enable", False, "Enable user NAME again.")


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@data_dir_option
def users_list(as_json: bool, data_dir: str | None) -> None:
    """List users."""
    _show(
        run_admin(lambda service: service.users.list(), data_dir),
        as_json,
        lambda u: {
            "username": u.username,
            "admin": u.is_admin,
            "disabled": u.disabled,
            "groups": list(u.groups),
            "password": u.has_password,
            "created_at": u.created_at.isoformat(),
            "last_login_at": u.last_login_at.isoformat() if u.last_login_at else None,
        },
        lambda u: [
            u.username,
            "yes" if u.is_admin else "",
            "disabled" if u.disabled else "active",
            ",".join(u.groups),
            "password" if u.has_password else "sso",
            _when(u.last_login_at),
        ],
        ["USER", "ADMIN", "STATE", "GROUPS", "SIGN-IN", "LAST LOGIN"],
    )


@click.group()
def groups() -> None:
    """Group membership of local users."""


def _membership(command: str) -> Callable[[Callable[..., None]], click.Command]:
    """`groups add-member` and `groups remove-member`: GROUP USER [--data-dir]."""

    def declare(function: Callable[..., None]) -> click.Command:
        arguments = click.argument("group")(click.argument("user")(data_dir_option(function)))
        return groups.command(command)(arguments)

    return declare


@_membership("add-member")
def groups_add_member(group: str, user: str, data_dir: str | None) -> None:
    """Put USER in GROUP (the group is created if needed)."""
    run_admin(lambda service: service.add_member(cli_actor(), group, user), data_dir)
    click.echo(f"{user} added to {group}")


@_membership("remove-member")
def groups_remove_member(group: str, user: str, data_dir: str | None) -> None:
    """Take USER out of GROUP."""
    run_admin(lambda service: service.remove_member(cli_actor(), group, user), data_dir)
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
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None

    async def action(service: CliService) -> Any:
        return await service.create_token(cli_actor(), owner, name, lifetime, scope)

    record, secret = run_admin(action, data_dir)
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
    records = run_admin(lambda service: service.tokens.list(owner), data_dir)
    now = datetime.now(UTC)
    _show(
        records,
        as_json,
        lambda t: {
            "id": t.id,
            "name": t.name,
            "owner": t.owner,
            "scope": t.scope.words(),
            "state": t.state(now),
            "created_at": t.created_at.isoformat(),
            "expires_at": t.expires_at.isoformat() if t.expires_at else None,
            "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
        },
        lambda t: [
            t.id,
            t.name,
            t.owner,
            ",".join(t.scope.words()) or "-",
            t.state(now),
            _when(t.expires_at),
            _when(t.last_used_at),
        ],
        ["ID", "NAME", "OWNER", "SCOPE", "STATE", "EXPIRES", "LAST USED"],
    )


@tokens.command("revoke")
@click.argument("token_id")
@data_dir_option
def tokens_revoke(token_id: str, data_dir: str | None) -> None:
    """Revoke token TOKEN_ID; it stops working on the next request, on every replica."""
    record = run_admin(lambda service: service.revoke_token(cli_actor(), token_id), data_dir)
    click.echo(f"token {record.id} ({record.name}) of {record.owner} revoked")
