"""The audit trail over HTTP, for admins: search, live tail, export, chain verification (the
`/.gateway/api/audit…` endpoints)."""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError

from gateway.admin.endpoints import Area, Call, Endpoint
from gateway.admin.fields import STREAM_ID, Field
from gateway.audit.review import (
    EXPORT_FIELDS,
    AuditQuery,
    export,
    flatten,
    newer,
    parse_time,
    search,
    verify,
)
from gateway.context import context_of

log = logging.getLogger(__name__)

# Where the last verification's outcome is kept, so the console can show it without re-reading
# the whole stream on every page view.
LAST_VERIFY_KEY = "mlgw:audit:last-verify"
MAX_PROBLEMS = 100

FILTERS = (
    Field("actor", max_length=200, description="user name or service account"),
    Field("resource", max_length=512, description="e.g. registered_model:fraud or experiment:*"),
    Field("action", max_length=255, description="e.g. promote:production, edit, read"),
    Field("decision", choices=("allow", "deny", "unauthenticated", "error")),
    Field("status", "integer", minimum=100, maximum=599, description="HTTP status"),
    Field("type", choices=("request", "security")),
    Field("since", "time", description="RFC 3339 date-time, or 15m / 2h / 7d ago"),
    Field("until", "time", description="RFC 3339 date-time, or 15m / 2h / 7d ago"),
)


def audit_query(q: dict[str, Any]) -> AuditQuery:
    return AuditQuery(
        actor=q.get("actor") or None,
        resource=q.get("resource") or None,
        action=q.get("action") or None,
        decision=q.get("decision"),
        status=q.get("status"),
        type=q.get("type"),
        since=parse_time(q.get("since")),
        until=parse_time(q.get("until")),
    )


def export_line(event: dict[str, Any], fmt: str) -> str:
    if fmt == "jsonl":
        return json.dumps(event, sort_keys=True) + "\n"
    out = io.StringIO()
    csv.DictWriter(out, fieldnames=EXPORT_FIELDS).writerow(flatten(event))
    return out.getvalue()


async def last_verification(redis: aioredis.Redis) -> dict[str, Any] | None:
    raw = await redis.get(LAST_VERIFY_KEY)
    return json.loads(raw) if raw else None


async def verify_and_record(redis: aioredis.Redis, who: str) -> dict[str, Any]:
    """Verify every chain now; keep the outcome for the console's status line."""
    report = await verify(redis)
    outcome = {
        "intact": report.intact,
        "events": report.events,
        "instances": report.instances,
        "problems": report.problems[:MAX_PROBLEMS],
        "problem_count": len(report.problems),
        "checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "checked_by": who,
    }
    await redis.set(LAST_VERIFY_KEY, json.dumps(outcome))
    return outcome


# Every audit call reads Redis; an unreachable one is a 503.
READ_ERRORS = (400, 401, 403, 503)
SEARCH_QUERY = (
    *FILTERS,
    Field("limit", "integer", minimum=1, maximum=1000, description="default 50"),
    Field(
        "cursor", pattern=STREAM_ID, max_length=41, description="next_cursor of the previous page"
    ),
)
TAIL_QUERY = (
    *FILTERS,
    Field(
        "after",
        pattern=STREAM_ID,
        max_length=41,
        description="last_id of the previous call; absent: the latest",
    ),
    Field("limit", "integer", minimum=1, maximum=500, description="default 100"),
)


class AuditApi(Area):
    tag = "audit"

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    @Endpoint(
        "GET",
        "/audit",
        "Search the audit trail, newest first",
        query=SEARCH_QUERY,
        response="AuditPage",
        errors=READ_ERRORS,
        description="Paging is stable: events written meanwhile never shift a page.",
    )
    async def search_audit(self, call: Call) -> dict[str, Any]:
        limit = call.query.get("limit", 50)
        events, cursor = await search(
            self._redis, audit_query(call.query), limit, call.query.get("cursor")
        )
        return {"events": events, "next_cursor": cursor}

    @Endpoint(
        "GET",
        "/audit/tail",
        "Events newer than a stream id, for a live view",
        query=TAIL_QUERY,
        response="AuditTail",
        errors=READ_ERRORS,
    )
    async def tail_audit(self, call: Call) -> dict[str, Any]:
        events, last = await newer(
            self._redis,
            audit_query(call.query),
            call.query.get("after"),
            call.query.get("limit", 100),
        )
        return {"events": events, "last_id": last}

    @Endpoint(
        "GET",
        "/audit/export",
        "Every matching event, oldest first, as JSON lines or CSV",
        query=(*FILTERS, Field("format", choices=("jsonl", "csv"))),
        media_types=("application/x-ndjson", "text/csv"),
        errors=READ_ERRORS,
    )
    async def export_audit(self, call: Call) -> web.StreamResponse:
        fmt = call.query.get("format", "jsonl")
        query = audit_query(call.query)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/csv" if fmt == "csv" else "application/x-ndjson",
                "Content-Disposition": f'attachment; filename="audit.{fmt}"',
                "Cache-Control": "no-store",
            }
        )
        await response.prepare(call.request)
        try:
            if fmt == "csv":
                header = io.StringIO()
                csv.DictWriter(header, fieldnames=EXPORT_FIELDS).writeheader()
                await response.write(header.getvalue().encode())
            async for event in export(self._redis, query):
                await response.write(export_line(event, fmt).encode())
            await response.write_eof()
        except ConnectionResetError:
            # The client stopped reading (closed the download): nothing more to send.
            context_of(call.request).upstream_error = "client closed the export"
        except RedisError as exc:
            # Headers are gone already: cut the connection so the download is visibly incomplete.
            log.warning("audit export interrupted: %s", exc)
            context_of(call.request).upstream_error = "audit trail unreachable during export"
            if call.request.transport is not None:
                call.request.transport.close()
        return response

    @Endpoint(
        "GET",
        "/audit/verify",
        "Check every hash chain for gaps, edits and reordering",
        response="Verification",
        errors=(401, 403, 503),
    )
    async def verify_audit(self, call: Call) -> dict[str, Any]:
        return await verify_and_record(self._redis, call.principal.subject)
