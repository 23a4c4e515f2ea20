"""Decisions at request time: the policy index, a decision cache, reloads on every replica.

A change made on any replica is announced on a Redis channel; a periodic version check catches
announcements lost while Redis was away. A replica that hears of a change reads the lines changed
since its version from the database's change log and applies them to its index on the event loop
(microseconds per line, so a decision sees the policy before or after a change, never half of
it). When the log cannot tell (the replica is too far behind, or just started), the whole policy is
read and indexed off the event loop, then swapped in whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.authn.principal import AUTHENTICATED_GROUP, Principal
from gateway.authz.actions import grants
from gateway.authz.policy import Decision, PolicyIndex
from gateway.policy_lines import ADMIN_ROLE, Grouping, PolicyDelta, Rule
from gateway.store.policies import PolicyStore, snapshot_of

log = logging.getLogger(__name__)

CHANNEL = "mlgw:policy:changed"
POLL_SECONDS = 5.0
_EXPERIMENT_KINDS = ("experiment:", "experiment_name:")


def _may_name_experiments(pattern: str) -> bool:
    """Could an object pattern with ``*`` match an experiment's id or name?"""
    literal = pattern.split("*", 1)[0]
    return any(kind.startswith(literal) or literal.startswith(kind) for kind in _EXPERIMENT_KINDS)


def subjects_of(principal: Principal) -> frozenset[str]:
    """The policy subjects a principal speaks for directly (`g` lines may add more)."""
    subjects = {f"user:{principal.subject}", f"group:{AUTHENTICATED_GROUP}"}
    subjects.update(f"group:{g}" for g in principal.groups)
    if principal.is_admin:
        subjects.add(ADMIN_ROLE)
    return frozenset(subjects)


def _index_of(version: int, rows: list[tuple[str, str, str, str, str]]) -> PolicyIndex:
    snapshot = snapshot_of(version, rows)
    return PolicyIndex(snapshot.rules, snapshot.groupings)


def _dismantle(index: PolicyIndex, rows: list[tuple[str, str, str, str, str]]) -> None:
    index.dismantle()
    while rows:
        rows.pop()


class Enforcer:
    def __init__(
        self, store: PolicyStore, redis: aioredis.Redis, cache_size: int = 100_000
    ) -> None:
        self.store = store
        self._redis = redis
        self._cache_size = cache_size
        self._cache: OrderedDict[tuple[frozenset[str], tuple[str, ...], str], Decision] = (
            OrderedDict()
        )
        self._readable_ids: dict[frozenset[str], frozenset[str] | None] = {}
        self._admins: dict[frozenset[str], bool] = {}
        self.index = PolicyIndex((), ())
        self.version = -1
        # How the last change arrived: "delta" (lines applied) or "full" (everything reloaded).
        self.last_load = ""
        self._reload_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        # Told of every policy change applied here, whichever replica made it: the objects of
        # the rules it removed (None: the whole policy was reloaded).
        self.on_change: list[Callable[[frozenset[str] | None], None]] = []

    async def load(self) -> None:
        """Catch up with the stored policy: the changed lines when the log has them, else all."""
        async with self._reload_lock:
            if self.version >= 0:
                delta = await self.store.changes_since(self.version)
                if delta is not None:
                    self._apply(delta)
                    return
            await self._load_everything()

    def _apply(self, delta: PolicyDelta) -> None:
        if delta.version == self.version:
            return
        self.index.apply(delta)
        self.version = delta.version
        self.last_load = "delta"
        self._forget_answers(
            frozenset(
                line.object for added, line in delta.changes if not added and isinstance(line, Rule)
            )
        )
        log.debug("policy version %s: %s lines applied", delta.version, len(delta.changes))

    async def _load_everything(self) -> None:
        # A full garbage collection walks every object: amid the ~400k objects of reading and
        # indexing 100k rules it would hold the event loop for a quarter of a second. So none runs
        # meanwhile, and the new index joins the objects no collection walks again (it has no
        # reference cycles: the index it replaces is freed by reference counting all the same).
        gc.disable()
        try:
            version, rows = await self.store.raw_snapshot()
            if version == self.version:
                return
            index = await asyncio.to_thread(_index_of, version, rows)
            retired, self.index, self.version = self.index, index, version
            # Freed off the event loop too, a piece at a time.
            await asyncio.to_thread(_dismantle, retired, rows)
            gc.freeze()
        finally:
            gc.enable()
        self.last_load = "full"
        self._forget_answers(None)
        log.info("policy version %s loaded: %s lines", version, len(self.index))

    def _forget_answers(self, removed: frozenset[str] | None) -> None:
        self._cache.clear()
        self._readable_ids.clear()
        self._admins.clear()
        for listener in self.on_change:
            listener(removed)

    def readable_experiment_ids(self, principal: Principal) -> frozenset[str] | None:
        """The ids of every experiment the policy could let ``principal`` read, when the rules
        that grant it read name experiments by id only; None when they do not (a pattern, a name,
        an admin). A superset: deny rules are not subtracted, each result is still judged."""
        subjects = subjects_of(principal)
        if subjects in self._readable_ids:
            return self._readable_ids[subjects]
        reach = self.index.closure(subjects)
        ids: set[str] = set()
        by_id_only = ADMIN_ROLE not in reach
        for rule in self.index.rules_of(reach) if by_id_only else ():
            if rule.effect != "allow" or not grants(rule.action, "read"):
                continue
            if "*" in rule.object:
                if _may_name_experiments(rule.object):
                    by_id_only = False
                    break
            elif rule.object.startswith("experiment_name:"):
                by_id_only = False
                break
            elif rule.object.startswith("experiment:"):
                ids.add(rule.object.removeprefix("experiment:"))
        found = frozenset(ids) if by_id_only else None
        if len(self._readable_ids) >= self._cache_size:
            self._readable_ids.clear()
        self._readable_ids[subjects] = found
        return found

    def decide(self, principal: Principal, names: tuple[str, ...], action: str) -> Decision:
        key = (subjects_of(principal), names, action)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        decision = self.index.decide(key[0], names, action)
        self._cache[key] = decision
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return decision

    def holds_any_right(self, principal: Principal, names: tuple[str, ...]) -> bool:
        """Whether any right on the object reaches the principal (only asked on a refusal:
        a caller with none is answered as if the object did not exist)."""
        return self.index.holds_any_right(subjects_of(principal), names)

    def is_admin(self, principal: Principal) -> bool:
        subjects = subjects_of(principal)
        admin = self._admins.get(subjects)
        if admin is None:
            if len(self._admins) >= self._cache_size:
                self._admins.clear()
            admin = self._admins[subjects] = ADMIN_ROLE in self.index.closure(subjects)
        return admin

    # -- changes ---------------------------------------------------------------------------------

    async def _announce(self) -> None:
        await self.load()
        try:
            await self._redis.publish(CHANNEL, str(self.version))
        except RedisError as exc:  # other replicas catch up by polling
            log.warning("could not announce the policy change: %s", exc)

    async def add(
        self, lines: Iterable[Rule | Grouping], actor: str | None
    ) -> list[Rule | Grouping]:
        added = await self.store.add(lines, actor)
        if added:
            await self._announce()
        return added

    async def remove(self, lines: Iterable[Rule | Grouping]) -> list[Rule | Grouping]:
        removed = await self.store.remove(lines)
        if removed:
            await self._announce()
        return removed

    async def replace_object(self, old: str, new: str | None, actor: str | None) -> int:
        count = await self.store.replace_object(old, new, actor)
        if count:
            await self._announce()
        return count

    # -- keeping up with other replicas ----------------------------------------------------------

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen(), name="policy-listen"),
            asyncio.create_task(self._poll(), name="policy-poll"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _listen(self) -> None:
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            await self.load()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: the poller keeps us current meanwhile
                log.warning("policy change listener: %s; retrying", exc)
                await asyncio.sleep(1.0)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            try:
                if await self.store.version() != self.version:
                    await self.load()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database may be briefly away; try again next time
                log.warning("policy version check failed: %s", exc)
