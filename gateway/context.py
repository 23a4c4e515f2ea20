"""The small per-request record that each stage fills in and later stages read."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gateway.authn.principal import ANONYMOUS, Principal
from gateway.authn.sessions import SessionData
from gateway.target import Target


@dataclass
class RequestContext:
    request_id: str
    client_ip: str
    scheme: str
    host: str
    # The request target as MLflow will read it; None when it could be read two ways (refused).
    target: Target | None = None
    target_refusal: str | None = None
    route_class: str = "other"
    principal: Principal = ANONYMOUS
    session: SessionData | None = None
    # Why authorization refused, and what it judged (for the audit log).
    authz_refusal: str | None = None
    judgement: Any = None
    policy_changes: list[str] = field(default_factory=list)
    # Why credentials were refused, for the audit log (never shown to the caller verbatim).
    auth_refusal: str | None = None
    started: float = field(default_factory=time.perf_counter)
    upstream_status: int | None = None
    # SQL statements, Redis round trips and MLflow lookups this request made (gateway/io_counts.py).
    io: Counter[str] = field(default_factory=Counter)
    upstream_error: str | None = None


REQUEST_CONTEXT = web.RequestKey("request_context", RequestContext)


def context_of(request: web.Request) -> RequestContext:
    return request[REQUEST_CONTEXT]
