"""`mlflow-gateway policy`: read, change and explain the authorization policy from a shell."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click

from gateway.admin.shapes import history_json
from gateway.authn.principal import Principal
from gateway.authz.casbin_engine import plain_casbin, plain_decide
from gateway.authz.casbin_model import CasbinModel, load_model
from gateway.authz.enforcer import engine_for, subjects_of
from gateway.authz.explain import Holder, explain, normalise_action, principal_of, who_can
from gateway.authz.policy import Decider, Decision, PolicyIndex
from gateway.cli.common import data_dir_option, settings_or_exit
from gateway.cli.service import CliService, cli_actor, run_admin
from gateway.policy_lines import (
    Grouping,
    PolicyError,
    Rule,
    expiry_from,
    now_text,
    parse_lines,
)
from gateway.store.policy_history import Rollback


def subject_name(text: str, default_kind: str) -> str:
    """`bob` → `user:bob` (or `group:` for groups); prefixed names stay as they are."""
    return text if ":" in text else f"{default_kind}:{text}"


def expiry_option(expires_in: str | None, expires_at: str | None) -> str:
    """`--expires-in 2h` or `--expires-at 2026-12-31T18:00:00Z` as a rule's expiry ("" none)."""
    try:
        return expiry_from(expires_in, expires_at)
    except PolicyError as exc:
        raise click.UsageError(str(exc)) from None


def _line(kind: str, args: tuple[str, ...], expires_at: str = "") -> Rule | Grouping:
    try:
        if kind == "p" and len(args) in (3, 4):
            subject, object_, action, *effect = args
            rule = Rule(subject_name(subject, "user"), object_, action, *(effect or ["allow"]))
            return Rule(rule.subject, rule.object, rule.action, rule.effect, expires_at).validate()
        if kind == "g" and expires_at:
            raise click.UsageError("only p lines expire")
        if kind == "g" and len(args) == 2:
            return Grouping(
                subject_name(args[0], "user"), subject_name(args[1], "group")
            ).validate()
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from None
    raise click.UsageError("use: p SUBJECT OBJECT ACTION [allow|deny]   or   g USER GROUP")


@click.group()
def policy() -> None:
    """Authorization rules: add, remove, list, import, export, check, who-can, history,
    rollback."""


def _line_command(command: str) -> Callable[[Callable[..., None]], click.Command]:
    """`policy add` and `policy remove`: p|g, then the line's fields [--data-dir]."""

    def declare(function: Callable[..., None]) -> click.Command:
        line = click.argument("args", nargs=-1, required=True)(data_dir_option(function))
        return policy.command(command)(click.argument("kind", type=click.Choice(["p", "g"]))(line))

    return declare


@_line_command("add")
@click.option(
    "--expires-in", default=None, help="The rule expires after this long: 4s, 90m, 2h, 30d."
)
@click.option(
    "--expires-at", default=None, help="The rule expires at this ISO 8601 time (UTC if no offset)."
)
def policy_add(
    kind: str,
    args: tuple[str, ...],
    data_dir: str | None,
    expires_in: str | None,
    expires_at: str | None,
) -> None:
    """Add `p SUBJECT OBJECT ACTION [allow|deny]` or `g USER GROUP`; a rule already there with
    another expiry gets the new one."""
    line = _line(kind, args, expiry_option(expires_in, expires_at))
    added = run_admin(lambda service: service.add_line(cli_actor(), line), data_dir)
    click.echo(f"added: {line}" if added else f"already present: {line}")


@_line_command("remove")
def policy_remove(kind: str, args: tuple[str, ...], data_dir: str | None) -> None:
    """Remove a `p` or `g` line (written as for `add`)."""
    line = _line(kind, args)
    run_admin(lambda service: service.remove_line(cli_actor(), line), data_dir)
    click.echo(f"removed: {line}")


def _snapshot(data_dir: str | None) -> Any:
    return run_admin(lambda service: service.policy.store.snapshot(), data_dir)


def _model(data_dir: str | None) -> CasbinModel:
    """The model the gateway decides with (`GATEWAY_CASBIN_MODEL`; checked with the settings)."""
    return load_model(settings_or_exit(data_dir).casbin_model)


def _active(model: CasbinModel, snapshot: Any) -> Decider:
    """The gateway's own path on this policy: the index, or pycasbin filtered through it."""
    return engine_for(model, PolicyIndex(snapshot.rules, snapshot.groupings))


def _decide(
    engine: str | None,
    model: CasbinModel,
    snapshot: Any,
    principal: Principal,
    object_: str,
    action: str,
) -> Decision:
    if engine == "index" and not model.shipped:
        raise click.UsageError(
            f"the index decides only the shipped casbin model; {model.path} is decided by "
            "pycasbin — leave --engine out (the gateway's own path) or use --engine casbin"
        )
    if engine == "casbin":
        enforcer = plain_casbin(model, snapshot.rules, snapshot.groupings)
        return plain_decide(enforcer, subjects_of(principal), (object_,), normalise_action(action))
    return explain(_active(model, snapshot), principal, (object_,), action)


@policy.command("list")
@click.option("--subject", default=None, help="Only lines of this subject.")
@click.option("--object", "object_", default=None, help="Only rules on this object pattern.")
@click.option("--action", default=None, help="Only rules with this action.")
@data_dir_option
def policy_list(
    subject: str | None, object_: str | None, action: str | None, data_dir: str | None
) -> None:
    """List the policy as CSV lines."""
    snapshot = _snapshot(data_dir)
    now = now_text()
    for rule in snapshot.rules:
        if subject and rule.subject != subject_name(subject, "user"):
            continue
        if (object_ and rule.object != object_) or (action and rule.action != action):
            continue
        # Expired and not yet removed (a gateway removes it when it sees it): says so.
        click.echo(f"{rule}  # expired" if rule.expired(now) else str(rule))
    if not object_ and not action:
        for grouping in snapshot.groupings:
            if subject and subject_name(subject, "user") not in (grouping.member, grouping.group):
                continue
            click.echo(str(grouping))


@policy.command("export")
@data_dir_option
def policy_export(data_dir: str | None) -> None:
    """Write the whole policy as CSV to standard output."""
    snapshot = _snapshot(data_dir)
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

    async def action(service: CliService) -> tuple[int, int, int]:
        return await service.import_lines(cli_actor(), lines, replace)

    added, removed, _ = run_admin(action, data_dir, author="cli import")
    # Every line of the file counts, repeated ones too.
    click.echo(f"imported: {added} added, {removed} removed, {len(lines) - added} already present")


@policy.command("check")
@click.argument("user")
@click.argument("object_")
@click.argument("action")
@click.option(
    "--group", "groups", multiple=True, help="Also a member of GROUP (e.g. from the IdP)."
)
@click.option(
    "--engine",
    type=click.Choice(["index", "casbin"]),
    default=None,
    help="Who answers: the policy index (shipped model only) or pycasbin itself on the whole "
    "policy (default: the gateway's active path for GATEWAY_CASBIN_MODEL).",
)
@data_dir_option
def policy_check(
    user: str,
    object_: str,
    action: str,
    groups: tuple[str, ...],
    engine: str | None,
    data_dir: str | None,
) -> None:
    """May USER do ACTION on OBJECT? Prints the deciding rule; exit 0 on allow, 1 on deny."""
    model = _model(data_dir)

    async def decide(service: CliService) -> Any:
        snapshot = await service.policy.store.snapshot()
        name = user.removeprefix("user:")
        principal = principal_of(name, await service.users.get(name), groups)
        return _decide(engine, model, snapshot, principal, object_, action)

    decision = run_admin(decide, data_dir)
    click.echo(f"{'allow' if decision.allowed else 'deny'}: {decision.explain()}")
    sys.exit(0 if decision.allowed else 1)


@policy.command("who-can")
@click.argument("object_")
@click.argument("action")
@data_dir_option
def policy_who_can(object_: str, action: str, data_dir: str | None) -> None:
    """List the users and groups that may do ACTION on OBJECT, each with the rule that allows it."""

    model = _model(data_dir)

    async def who(service: CliService) -> list[Holder]:
        snapshot = await service.policy.store.snapshot()
        return who_can(_active(model, snapshot), await service.users.list(), (object_,), action)

    for holder in run_admin(who, data_dir):
        click.echo(f"{holder.subject}\t{holder.rule}")


@policy.command("history")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line.")
@data_dir_option
def policy_history(limit: int, as_json: bool, data_dir: str | None) -> None:
    """The policy's changes, newest first: version, time, actor, the line added (+) or
    removed (-)."""
    entries = run_admin(lambda service: service.policy.store.history(limit), data_dir)
    for entry in entries:
        shown = history_json(entry)
        if as_json:
            click.echo(json.dumps(shown, separators=(",", ":")))
        else:
            sign = "+" if entry.added else "-"
            actor = entry.actor or "-"
            click.echo(f"{entry.version}\t{shown['time']}\t{actor}\t{sign} {entry.line}")


@policy.command("rollback")
@click.argument("version", type=int)
@data_dir_option
def policy_rollback(version: int, data_dir: str | None) -> None:
    """Restore the policy as it was at VERSION, as one new change (the admin rule stays)."""

    async def action(service: CliService) -> Rollback:
        return await service.rollback(cli_actor(), version)

    done = run_admin(action, data_dir)
    if not done.changed:
        click.echo(f"unchanged: the policy is as it was at version {version}")
        return
    for line in done.removed:
        click.echo(f"- {line}")
    for line in done.added:
        click.echo(f"+ {line}")
    click.echo(
        f"rolled back to version {version} as version {done.version}: "
        f"{len(done.added)} added, {len(done.removed)} removed"
    )
