"""Reading the audit stream: search newest first with a stable cursor, follow, export, verify."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis

from gateway.audit import index
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
        if self.action and self.action not in index.actions(event):
            return False
        if self.resource and not any(
            object_matches(name, self.resource) for name in index.resources(event)
        ):
            return False
        when = datetime.fromisoformat(event["time"])
        if self.since and when < self.since:
            return False
        return not (self.until and when > self.until)


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
    redis: aioredis.Redis,
    query: AuditQuery,
    limit: int = 50,
    cursor: str | None = None,
    *,
    indexed: bool = True,
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first. The cursor is the stream id of the last event returned: events written
    meanwhile are newer and never shift a page, so paging neither repeats nor skips.

    A query naming an actor, a resource or an action is answered from the index (only the
    events of the smallest of its sets are read); any other reads the stream, and so does every
    query with ``indexed=False`` (what the benchmark and the tests compare the index with)."""
    if cursor == "0-0":  # nothing is older than the first possible id
        return [], None
    plan = await _plan(redis, query) if indexed else None
    if plan is None:
        return await _scan_search(redis, query, limit, cursor)
    return await _index_search(redis, query, plan, limit, cursor)


async def _scan_search(
    redis: aioredis.Redis, query: AuditQuery, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    found: list[dict[str, Any]] = []
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


# A resource pattern is answered from the index when it matches at most this many resources'
# sets; a broader one reads the stream.
PATTERN_SETS = 100
INDEX_CHUNK = 200


@dataclass(frozen=True)
class _Plan:
    # Every term must hold the event; a term holds it when one of its sets does (a resource
    # pattern is the sets of the resources it matches).
    terms: list[list[str]]
    # The first event indexed: older ones are found by reading the stream.
    indexed_from: str


def _order(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def _glob(text: str) -> str:
    """``text`` as a Redis MATCH pattern in which only ``*`` is special."""
    return "".join("\\" + c if c in "\\?[]" else c for c in text)


async def _plan(redis: aioredis.Redis, query: AuditQuery) -> _Plan | None:
    if not (query.actor or query.resource or query.action):
        return None
    indexed_from = await redis.get(index.FROM)
    if indexed_from is None:
        return None  # nothing was ever indexed
    terms: list[list[str]] = []
    if query.actor:
        terms.append([index.ACTOR + query.actor])
    if query.action:
        terms.append([index.ACTION + query.action])
    if query.resource and "*" not in query.resource:
        terms.append([index.RESOURCE + query.resource])
    elif query.resource:
        sets: list[str] = []
        async for key, _ in redis.zscan_iter(
            index.REGISTRY, match=_glob(index.RESOURCE + query.resource), count=1000
        ):
            name = _sid(key)
            if object_matches(name.removeprefix(index.RESOURCE), query.resource):
                sets.append(name)
                if len(sets) > PATTERN_SETS:
                    return None
        terms.append(sorted(set(sets)))
    return _Plan(terms, _sid(indexed_from))


async def _descending(
    redis: aioredis.Redis, keys: list[str], upper: str, lower: str
) -> AsyncIterator[list[str]]:
    """The members of ``keys`` (merged, each once) between ``upper`` and ``lower``, newest
    first, a chunk at a time."""
    buffers: dict[str, list[str]] = {key: [] for key in keys}
    bounds = dict.fromkeys(keys, upper)
    left = set(keys)  # sets not read to the end yet
    last: str | None = None
    while True:
        empty = [key for key in keys if key in left and not buffers[key]]
        if empty:
            async with redis.pipeline(transaction=False) as pipe:
                for key in empty:
                    pipe.zrevrangebylex(key, bounds[key], lower, start=0, num=INDEX_CHUNK)
                replies = await pipe.execute()
            for key, reply in zip(empty, replies, strict=True):
                got = [_sid(m) for m in reply]
                if len(got) < INDEX_CHUNK:
                    left.discard(key)
                if got:
                    bounds[key] = "(" + got[-1]
                    buffers[key] = got[::-1]  # oldest first: pop() takes the newest
        chunk: list[str] = []
        while len(chunk) < INDEX_CHUNK:
            heads = [key for key in keys if buffers[key]]
            if not heads or any(key in left and not buffers[key] for key in keys):
                break
            key = max(heads, key=lambda k: buffers[k][-1])
            member = buffers[key].pop()
            if member != last:  # an event in two of the sets (two resources of a pattern)
                chunk.append(member)
                last = member
        if chunk:
            yield chunk
        elif not any(buffers.values()) and not left:
            return


async def _index_search(
    redis: aioredis.Redis, query: AuditQuery, plan: _Plan, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    found: list[dict[str, Any]] = []
    upper = "(" + index.member(cursor) if cursor else "+"
    lower = "-"
    if query.since is not None:
        # Events reach Redis after they happen, never before (but clocks differ).
        since_ms = int((query.since - EXPORT_SLACK).timestamp() * 1000)
        lower = "[" + index.ms_member(since_ms)
    async with redis.pipeline(transaction=False) as pipe:
        for term in plan.terms:
            for key in term:
                pipe.zcard(key)
        sizes = iter(await pipe.execute())
    totals = [sum(next(sizes) for _ in term) for term in plan.terms]
    ordered = [term for _, term in sorted(zip(totals, plan.terms, strict=True))]
    driver, others = ordered[0], ordered[1:]
    async for chunk in _descending(redis, driver, upper, lower):
        candidates = chunk
        for term in others:
            async with redis.pipeline(transaction=False) as pipe:
                for key in term:
                    pipe.zmscore(key, candidates)
                scores = await pipe.execute()
            candidates = [
                m for i, m in enumerate(candidates) if any(s[i] is not None for s in scores)
            ]
            if not candidates:
                break
        if not candidates:
            continue
        async with redis.pipeline(transaction=False) as pipe:
            for m in candidates:
                sid = index.stream_id(m)
                pipe.xrange(STREAM, min=sid, max=sid, count=1)
            entries = await pipe.execute()
        for m, entry in zip(candidates, entries, strict=True):
            sid = index.stream_id(m)
            if not entry:
                if await _trimmed(redis, plan, m):
                    return found, None  # everything older is gone from the stream too
                continue  # deleted from the stream (XDEL)
            event = decode(entry[0][1])
            event["stream_id"] = sid
            if query.matches(event):
                found.append(event)
                if len(found) == limit:
                    return found, sid
    # The index has nothing older; events written before it existed are in the stream only.
    below = plan.indexed_from
    if cursor is not None and _order(cursor) < _order(below):
        below = cursor
    oldest = await redis.xrange(STREAM, min="-", max=f"({below}", count=1)
    if not oldest:
        return found, None
    more, next_cursor = await _scan_search(redis, query, limit - len(found), below)
    return found + more, next_cursor


async def _trimmed(redis: aioredis.Redis, plan: _Plan, member: str) -> bool:
    """True when the event of ``member`` was trimmed (older than the stream's oldest event);
    the sets searched then lose every member older than that event."""
    oldest = await redis.xrange(STREAM, min="-", max="+", count=1)
    bound = "(" + index.member(_sid(oldest[0][0])) if oldest else "+"
    if oldest and member >= bound[1:]:
        return False
    async with redis.pipeline(transaction=False) as pipe:
        for term in plan.terms:
            for key in term:
                pipe.zremrangebylex(key, "-", bound)
        await pipe.execute()
    return True


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
