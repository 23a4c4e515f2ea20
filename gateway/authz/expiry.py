"""When the policy's rules expire: a heap of the next expiries, so a replica drops each expired
rule at its time (without waiting for a policy change) and every decision after it is made
without it."""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
from collections.abc import Iterable
from typing import Protocol

from gateway.policy_lines import Rule, expiry_moment

log = logging.getLogger(__name__)

# Who the policy's history names for the removal of an expired rule.
EXPIRY_ACTOR = "gateway:expiry"
MIN_WAIT = 0.02
MAX_WAIT = 1.0


class ExpiryClock:
    """The rules with an expiry, by expiry. Entries of rules removed meanwhile are skipped by
    whoever pops them (the index tells), so removal costs nothing here."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, Rule]] = []

    @property
    def next_at(self) -> float:
        """POSIX time of the next expiry (infinity: none)."""
        return self._heap[0][0] if self._heap else math.inf

    def reset(self, rules: Iterable[Rule]) -> None:
        self._heap = [(expiry_moment(r.expires_at), r) for r in rules if r.expires_at]
        heapq.heapify(self._heap)

    def track(self, rules: Iterable[Rule]) -> None:
        for rule in rules:
            if rule.expires_at:
                heapq.heappush(self._heap, (expiry_moment(rule.expires_at), rule))

    def due(self, now: float) -> list[Rule]:
        """The rules whose expiry is at or before ``now``, taken off the clock."""
        found: list[Rule] = []
        while self._heap and self._heap[0][0] <= now:
            found.append(heapq.heappop(self._heap)[1])
        return found

    def __len__(self) -> int:
        return len(self._heap)


class Expiries(Protocol):
    """What the expiry loop asks of the enforcer."""

    clock: ExpiryClock

    def drop_expired(self) -> None: ...

    async def sweep_expired(self) -> None: ...


async def expiry_loop(enforcer: Expiries) -> None:
    """Drop each rule at its expiry (decisions check the clock too, so none is late), and have
    the store remove what expired: at most a second between looks, however far the next one."""
    while True:
        wait = enforcer.clock.next_at - time.time()
        await asyncio.sleep(min(max(wait, MIN_WAIT), MAX_WAIT))
        try:
            enforcer.drop_expired()
            await enforcer.sweep_expired()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database may be briefly away: the next look retries
            log.warning("expired policy rules not yet removed from the store: %s", exc)
