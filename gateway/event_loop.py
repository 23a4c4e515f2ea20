"""The event loop `serve` and `dev` run on: uvloop by default, asyncio's own on request.

uvloop does the socket work of a forwarded request (two sends, the reads, the wake-ups) in C:
measured, it takes about a third off what a proxy adds to a request on a keep-alive connection
(docs/benchmarks.md). ``GATEWAY_EVENT_LOOP=asyncio`` is the way back, e.g. to rule it out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
EVENT_LOOPS = ("uvloop", "asyncio")


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory for ``asyncio.Runner``; None is asyncio's default loop."""
    if choice != "uvloop":
        return None
    try:
        import uvloop
    except ImportError:  # a platform without uvloop's wheel: asyncio's loop does the same work
        log.warning("uvloop is not installed; running on asyncio's event loop")
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], choice: str) -> T:
    with asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
        return runner.run(main)
