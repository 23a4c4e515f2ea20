"""I/O on a request's own path, counted: SQL statements and Redis round trips, per request.

The edge opens a count for each request (a context variable, so what the request awaits counts
and what runs elsewhere — the audit writer, the policy listener, background refreshes started in a
fresh context — does not); the stores and Redis users call `count_io` where they go out; the
metrics middleware adds each request's counts to `gateway_request_io_total{kind}`. A caller
already seen, with a remembered decision, must cost zero of each (a test asserts it).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

_CURRENT: contextvars.ContextVar[Counter[str] | None] = contextvars.ContextVar(
    "request_io", default=None
)


def open_count() -> Counter[str]:
    counts: Counter[str] = Counter()
    _CURRENT.set(counts)
    return counts


def count_io(kind: str) -> None:
    counts = _CURRENT.get()
    if counts is not None:
        counts[kind] += 1


_BACKGROUND: set[asyncio.Task[Any]] = set()


def off_the_request(coro_factory: Callable[[], Coroutine[Any, Any, object]]) -> None:
    """Run work the request does not wait for, outside its count (and kept until it ends)."""
    task = contextvars.Context().run(asyncio.create_task, coro_factory())
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)
