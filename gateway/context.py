"""The small per-request record that each stage fills in and later stages read."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class RequestContext:
    request_id: str
    client_ip: str
    scheme: str
    host: str
    route_class: str = "other"
    started: float = field(default_factory=time.perf_counter)
    upstream_status: int | None = None
    upstream_error: str | None = None


REQUEST_CONTEXT = web.RequestKey("request_context", RequestContext)


def context_of(request: web.Request) -> RequestContext:
    return request[REQUEST_CONTEXT]
