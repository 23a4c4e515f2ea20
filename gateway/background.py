"""A component's long-running tasks: started together, cancelled and awaited together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class Background:
    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[Any]] = []

    def start(self, **named: Coroutine[Any, Any, None]) -> None:
        """Run each coroutine as a task named by its keyword (names show in task dumps)."""
        self._tasks += [asyncio.create_task(coro, name=name) for name, coro in named.items()]

    async def stop(self) -> None:
        """Cancel every task and wait for it; one that had died is logged, not raised."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        for task, outcome in zip(tasks, outcomes, strict=True):
            if isinstance(outcome, Exception):
                log.warning("background task %s had failed: %r", task.get_name(), outcome)

    @property
    def running(self) -> bool:
        return any(not task.done() for task in self._tasks)
