"""Reading the audit stream: search newest first with a stable cursor, follow, export, verify."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis

from gateway.audit.events import GENESIS, chain_hash
from gateway.audit.writer import STREAM
from gateway.policy_lines import object_matches

CHUNK = 1000
EXPORT_FIELDS = (
    "time",
    "type",
    "event",
    "request_id",
    "actor",
    "client_ip",
    "method",
    "path",
    "status",
    "operation",
    "resources",
    "action",
    "decision",
    "rule",
    "reason",
    "params",
)


@dataclass(frozen=True)
class AuditQuery:
    actor: str | None = None
    resource: str | None = None  # exact, or a pattern with *
    action: str | None = None
    decision: str | None = None
    status: int | None = None
    type: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, event: dict[str, Any]) -> bool:
        if self.actor and (event.get("actor") or {}).get("subject") != self.actor:
            return False
        if self.type and event.get("type") != self.type:
            return False
        if self.decision and event.get("decision") != self.decision:
            return False
        if self.status is not None and (event.get("http") or {}).get("status") != self.status:
            return False
        if self.action and self.action not in _actions(event):
            return False
        if self.resource and not any(
            object_matches(name, self.resource) for name in _resources(event)
        ):
            return False
        when = datetime.fromisoformat(event["time"])
        if self.since and when < self.since:
            return False
        return not (self.until and when > self.until)


def _resources(event: dict[str, Any]) -> list[str]:
    names = [d.get("resource", "") for d in event.get("decisions", [])]
    return names + list(event.get("resources", []))


def _actions(event: dict[str, Any]) -> list[str]:
    return [d.get("action", "") for d in event.get("decisions", [])] + [event.get("action") or ""]


def parse_time(text: str | None) -> datetime | None:
    """ISO 8601, or relative: `15m`, `2h`, `7d` ago."""
    if not text:
        return None
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    try:
        if text[-1:] in units and text[:-1].isdigit():
            return datetime.now(UTC) - timedelta(**{units[text[-1]]: int(text[:-1])})
        value = datetime.fromisoformat(text.upper())
    except (ValueError, OverflowError):
        raise ValueError(f"{text!r}: use ISO 8601 (2026-11-26T10:00) or 15m, 2h, 7d") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def flatten(event: dict[str, Any]) -> dict[str, str]:
    """One row of an export: the fields an auditor filters and sorts by."""
    http = event.get("http") or {}
    decisions = event.get("decisions") or []
    return {
        "time": event.get("time", ""),
        "type": event.get("type", ""),
        "event": event.get("event", ""),
        "request_id": event.get("request_id") or "",
        "actor": (event.get("actor") or {}).get("subject") or "",
        "client_ip": (event.get("client") or {}).get("ip") or "",
        "method": http.get("method", ""),
        "path": http.get("path", ""),
        "status": str(http.get("status", "")),
        "operation": event.get("operation") or "",
        "resources": " ".join(event.get("resources") or []),
        "action": event.get("action") or "",
        "decision": event.get("decision") or event.get("outcome") or "",
        "rule": "; ".join(d["rule"] for d in decisions if d.get("rule")),
        "reason": event.get("reason") or "",
        "params": json.dumps(event.get("params") or event.get("details") or {}, sort_keys=True),
    }


# Stream ids and fields as redis-py returns them (its stubs type both loosely).
def _sid(stream_id: Any) -> str:
    return stream_id.decode() if isinstance(stream_id, bytes) else str(stream_id)


def decode(fields: Any) -> dict[str, Any]:
    raw = fields.get(b"e") or fields.get("e")
    event: dict[str, Any] = json.loads(raw)
    return event


async def search(
    redis: aioredis.Redis, query: AuditQuery, limit: int = 50, cursor: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first. The cursor is the stream id of the last event returned: events written
    meanwhile are newer and never shift a page, so paging neither repeats nor skips."""
    found: list[dict[str, Any]] = []
    if cursor == "0-0":  # nothing is older than the first possible id
        return found, None
    upper = f"({cursor}" if cursor else "+"
    while len(found) < limit:
        entries = await redis.xrevrange(STREAM, max=upper, min="-", count=CHUNK)
        if not entries:
            return found, None
        for stream_id, fields in entries:
            sid = _sid(stream_id)
            event = decode(fields)
            event["stream_id"] = sid
            if query.matches(event):
                found.append(event)
                if len(found) == limit:
                    return found, sid
            upper = f"({sid}"
    return found, None


async def newer(
    redis: aioredis.Redis, query: AuditQuery, after: str | None, limit: int = 100
) -> tuple[list[dict[str, Any]], str | None]:
    """For a live view: matching events written after stream id ``after`` (None: the latest),
    newest first, and the stream id to ask from next time."""
    lower = f"({after}" if after else "-"
    entries = await redis.xrevrange(STREAM, max="+", min=lower, count=CHUNK)
    if not entries:
        return [], after
    found: list[dict[str, Any]] = []
    for stream_id, fields in entries:
        event = decode(fields)
        event["stream_id"] = _sid(stream_id)
        if query.matches(event) and len(found) < limit:
            found.append(event)
    return found, _sid(entries[0][0])


# Events reach the stream after they happen (queued, or spooled while Redis was away): start a
# time-bounded export this much before the first moment asked for.
EXPORT_SLACK = timedelta(minutes=10)


async def export(redis: aioredis.Redis, query: AuditQuery) -> AsyncIterator[dict[str, Any]]:
    """Every matching event, oldest first, read in chunks (never the whole stream at once)."""
    lower = "-"
    if query.since is not None:
        lower = str(max(0, int((query.since - EXPORT_SLACK).timestamp() * 1000)))
    async for stream_id, event in scan(redis, lower):
        if event is not None and query.matches(event):
            event["stream_id"] = stream_id
            yield event


async def follow(redis: aioredis.Redis, query: AuditQuery) -> AsyncIterator[dict[str, Any]]:
    last = "$"
    while True:
        response: Any = await redis.xread({STREAM: last}, block=5000, count=CHUNK)
        for _, entries in response or []:
            for stream_id, fields in entries:
                last = _sid(stream_id)
                event = decode(fields)
                if query.matches(event):
                    yield event


async def scan(
    redis: aioredis.Redis, lower: str = "-"
) -> AsyncIterator[tuple[str, dict[str, Any] | None]]:
    """Every entry from stream id ``lower`` on, oldest first (None: not a readable event)."""
    while True:
        entries = await redis.xrange(STREAM, min=lower, max="+", count=CHUNK)
        if not entries:
            return
        for stream_id, fields in entries:
            sid = _sid(stream_id)
            try:
                yield sid, decode(fields)
            except (ValueError, TypeError, KeyError):
                yield sid, None
            lower = f"({sid}"


@dataclass
class VerifyReport:
    events: int = 0
    instances: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems


async def verify(redis: aioredis.Redis) -> VerifyReport:
    """Walk every instance's chain: numbers contiguous, each hash right, each link to the last."""
    report = VerifyReport()
    chains: dict[str, tuple[int, str]] = {}
    async for stream_id, event in scan(redis):
        report.events += 1
        if event is None:
            report.problems.append(f"{stream_id}: not a readable audit event")
            continue
        instance, seq = str(event.get("instance")), int(event.get("seq", 0))
        if chain_hash(str(event.get("prev")), event) != event.get("hash"):
            report.problems.append(f"{stream_id}: {instance} #{seq} was altered (hash mismatch)")
        last_seq, last_hash = chains.get(instance, (0, GENESIS))
        if seq <= last_seq:
            report.problems.append(f"{stream_id}: {instance} #{seq} repeated or out of order")
            continue
        if seq != last_seq + 1:
            report.problems.append(f"{instance}: events #{last_seq + 1}..#{seq - 1} are missing")
        elif event.get("prev") != last_hash:
            report.problems.append(f"{stream_id}: {instance} #{seq} does not link to #{last_seq}")
        chains[instance] = (seq, str(event.get("hash")))
    report.instances = len(chains)
    return report
