"""`mlflow-gateway audit`: search, follow, export and verify the trail."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import sys
from datetime import datetime
from typing import Any

import click
import redis.asyncio as aioredis

from gateway.audit.review import (
    EXPORT_FIELDS,
    AuditQuery,
    flatten,
    follow,
    search,
    verify,
)
from gateway.audit.review import parse_time as review_time
from gateway.cli.common import data_dir_option, settings_or_exit


def parse_time(text: str | None) -> datetime | None:
    try:
        return review_time(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _line(event: dict[str, Any]) -> str:
    f = flatten(event)
    what = f["operation"] or f["event"] or f"{f['method']} {f['path']}"
    extra = f" {f['params']}" if f["params"] not in ("{}", "") else ""
    return (
        f"{f['time']}  {f['actor'] or '-':<16} {f['decision']:<15} {what} "
        f"{f['resources']}{extra}".rstrip()
    )


query_options = [
    click.option("--actor", default=None, help="Subject (user name or service account)."),
    click.option("--resource", default=None, help="e.g. registered_model:fraud or experiment:*"),
    click.option("--action", default=None, help="e.g. promote:production, edit, read"),
    click.option("--decision", default=None, help="allow, deny, unauthenticated, error"),
    click.option("--status", type=int, default=None, help="HTTP status"),
    click.option("--type", "kind", default=None, help="request or security"),
]


def _with_query(fn: Any) -> Any:
    for option in reversed(query_options):
        fn = option(fn)
    return fn


def _query(kw: dict[str, Any], since: str | None = None, until: str | None = None) -> AuditQuery:
    return AuditQuery(
        actor=kw["actor"],
        resource=kw["resource"],
        action=kw["action"],
        decision=kw["decision"],
        status=kw["status"],
        type=kw["kind"],
        since=parse_time(since),
        until=parse_time(until),
    )


@click.group()
def audit() -> None:
    """The audit trail: search, tail, export, verify."""


@audit.command("search")
@_with_query
@click.option("--since", default=None, help="ISO time or 15m / 2h / 7d ago.")
@click.option("--until", default=None, help="ISO time or 15m / 2h / 7d ago.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON event per line.")
@data_dir_option
def audit_search(
    since: str | None, until: str | None, limit: int, as_json: bool, data_dir: str | None, **kw: Any
) -> None:
    """Events matching every filter, newest first.

    With --actor, --resource or --action, answered from the index (only the events of the
    smallest set named are read); otherwise by reading the stream."""
    settings = settings_or_exit(data_dir)
    query = _query(kw, since, until)

    async def run() -> list[dict[str, Any]]:
        redis = aioredis.Redis.from_url(settings.redis_url)
        try:
            events, _ = await search(redis, query, limit)
            return events
        finally:
            await redis.aclose()

    for event in asyncio.run(run()):
        click.echo(json.dumps(event, sort_keys=True) if as_json else _line(event))


@audit.command("tail")
@_with_query
@click.option("--json", "as_json", is_flag=True)
@data_dir_option
def audit_tail(as_json: bool, data_dir: str | None, **kw: Any) -> None:
    """Follow new events as they arrive (Ctrl-C to stop)."""
    settings = settings_or_exit(data_dir)
    query = _query(kw)

    async def run() -> None:
        redis = aioredis.Redis.from_url(settings.redis_url)
        try:
            async for event in follow(redis, query):
                click.echo(json.dumps(event, sort_keys=True) if as_json else _line(event))
        finally:
            await redis.aclose()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


@audit.command("export")
@click.option("--since", required=True)
@click.option("--until", required=True)
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl")
@_with_query
@data_dir_option
def audit_export(since: str, until: str, fmt: str, data_dir: str | None, **kw: Any) -> None:
    """Every matching event between two times, oldest first, as JSON lines or CSV."""
    settings = settings_or_exit(data_dir)
    query = _query(kw, since, until)

    async def run() -> list[dict[str, Any]]:
        redis = aioredis.Redis.from_url(settings.redis_url)
        try:
            events, cursor = await search(redis, query, 10_000)
            while cursor:
                more, cursor = await search(redis, query, 10_000, cursor)
                events.extend(more)
            return list(reversed(events))
        finally:
            await redis.aclose()

    events = asyncio.run(run())
    if fmt == "jsonl":
        for event in events:
            click.echo(json.dumps(event, sort_keys=True))
        return
    writer = csv.DictWriter(sys.stdout, fieldnames=EXPORT_FIELDS)
    writer.writeheader()
    for event in events:
        writer.writerow(flatten(event))


@audit.command("verify")
@data_dir_option
def audit_verify(data_dir: str | None) -> None:
    """Check every chain for gaps, edits and reorderings; exit 0 only when intact."""
    settings = settings_or_exit(data_dir)

    async def run() -> Any:
        redis = aioredis.Redis.from_url(settings.redis_url)
        try:
            return await verify(redis)
        finally:
            await redis.aclose()

    report = asyncio.run(run())
    for problem in report.problems:
        click.echo(f"PROBLEM: {problem}")
    state = "intact" if report.intact else f"NOT intact ({len(report.problems)} problems)"
    click.echo(f"{report.events} events from {report.instances} gateway instances: {state}")
    sys.exit(0 if report.intact else 1)
