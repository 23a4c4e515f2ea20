"""Decisions at request time: the active path, a decision cache, reloads on every replica.

The casbin model (`GATEWAY_CASBIN_MODEL`, `gateway/authz/casbin_model.py`) is loaded at start and
picks the path: the shipped model's decisions come from the policy index; any other model's from
pycasbin (`gateway/authz/casbin_engine.py`). Both sit behind the same decision cache, both get every
policy change as the lines it added or removed.

A change made on any replica is announced on a Redis channel; a periodic version check catches
announcements lost while Redis was away. A replica that hears of a change reads the lines changed
since its version from the database's change log and applies them to its index on the event loop
(microseconds per line, so a decision sees the policy before or after a change, never half of
it). When the log cannot tell (the replica is too far behind, or just started), the whole policy is
read and indexed off the event loop, then swapped in whole.

A rule with an expiry is dropped from the active path at its expiry by every replica on its own
(`gateway/authz/expiry.py`: a clock of the next expiries, checked before every decision, so the
decision cache never serves an answer an expired rule gave); then each replica asks the store to
remove it, and the one whose removal commits calls ``on_expired`` (one audit event) and announces
the new version like any change.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import statistics
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.authn.principal import AUTHENTICATED_GROUP, Principal
from gateway.authz.actions import grants
from gateway.authz.casbin_engine import CasbinEngine
from gateway.authz.casbin_model import CasbinModel, load_model
from gateway.authz.expiry import EXPIRY_ACTOR, ExpiryClock, expiry_loop
from gateway.authz.policy import Decider, Decision, PolicyIndex
from gateway.background import Background
from gateway.policy_lines import ADMIN_ROLE, Grouping, PolicyDelta, Rule
from gateway.store.policies import PolicyStore, snapshot_of
from gateway.store.policy_history import Rollback
from gateway.store.policy_rows import RawRow

log = logging.getLogger(__name__)
T = TypeVar("T")

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


def decision_cost(
    engine: Decider,
    requests: Iterable[tuple[frozenset[str], tuple[str, ...], str]],
    budget_s: float,
) -> tuple[float, int]:
    """The median time of an uncached decision on ``engine`` (µs), over as many of ``requests``
    as ``budget_s`` allows, and how many were timed."""
    samples: list[float] = []
    deadline = time.perf_counter() + budget_s
    for subjects, names, action in requests:
        start = time.perf_counter()
        engine.decide(subjects, names, action)
        samples.append((time.perf_counter() - start) * 1e6)
        if time.perf_counter() > deadline:
            break
    return (statistics.median(samples) if samples else 0.0), len(samples)


def sample_requests(
    rules: tuple[Rule, ...], count: int
) -> list[tuple[frozenset[str], tuple[str, ...], str]]:
    """Requests shaped by the policy itself: a rule's subject asking to read its object."""
    step = max(1, len(rules) // count)
    return [
        (
            frozenset({r.subject, "group:authenticated"}),
            (r.object.replace("*", "sample"),),
            "read",
        )
        for r in rules[::step][:count]
    ]


def engine_for(model: CasbinModel, index: PolicyIndex) -> Decider:
    """The path that decides on ``model``: the index itself, or pycasbin beside it."""
    return index if model.shipped else CasbinEngine(model, index)


def _engine_of(model: CasbinModel, version: int, rows: list[RawRow]) -> tuple[Decider, list[Rule]]:
    """The path on these rows, and the rules among them that expire."""
    snapshot = snapshot_of(version, rows)
    expiring = [rule for rule in snapshot.rules if rule.expires_at]
    return engine_for(model, PolicyIndex(snapshot.rules, snapshot.groupings)), expiring


def _dismantle(engine: Decider, rows: list[RawRow]) -> None:
    engine.dismantle()
    while rows:
        rows.pop()


class Enforcer:
    def __init__(
        self,
        store: PolicyStore,
        redis: aioredis.Redis,
        cache_size: int = 100_000,
        model: CasbinModel | None = None,
    ) -> None:
        self.store = store
        self.model = model if model is not None else load_model(None)
        self._redis = redis
        self._cache_size = cache_size
        self._cache: OrderedDict[tuple[frozenset[str], tuple[str, ...], str], Decision] = (
            OrderedDict()
        )
        self._readable_ids: dict[frozenset[str], frozenset[str] | None] = {}
        self._admins: dict[frozenset[str], bool] = {}
        self.engine: Decider = engine_for(self.model, PolicyIndex((), ()))
        self.version = -1
        # How the last change arrived: "delta" (lines applied) or "full" (everything reloaded).
        self.last_load = ""
        self._reload_lock = asyncio.Lock()
        self._background = Background()
        # Told of every policy change applied here, whichever replica made it: the objects of
        # the rules it removed (None: the whole policy was reloaded).
        self.on_change: list[Callable[[frozenset[str] | None], None]] = []
        # Awaited before this replica changes the policy (owner rules not yet stored go first).
        self.before_change: list[Callable[[], Awaitable[None]]] = []
        self.clock = ExpiryClock()
        # Expired rules dropped here and not yet removed from the store.
        self._unswept: set[Rule] = set()
        # Told of the rules whose expiry this replica's store removal committed (once overall).
        self.on_expired: list[Callable[[list[Rule]], None]] = []

    async def load(self) -> None:
        """Catch up with the stored policy: the changed lines when the log has them, else all."""
        async with self._reload_lock:
            if self.version >= 0:
                delta = await self.store.changes_since(self.version)
                if delta is not None:
                    self._apply(delta)
                    return
            await self._load_everything()

    @property
    def index(self) -> PolicyIndex:
        """The policy's lines, indexed (on the casbin path the filter pycasbin's rules go
        through): what listings and exports read."""
        engine = self.engine
        if isinstance(engine, CasbinEngine):
            return engine.index
        assert isinstance(engine, PolicyIndex)
        return engine

    @index.setter
    def index(self, index: PolicyIndex) -> None:
        """Decide on ``index`` from now on (benchmarks and tests build one and hand it over)."""
        self.engine = engine_for(self.model, index)
        self.forget_answers(None)

    @property
    def engine_name(self) -> str:
        return self.engine.engine

    @property
    def decided_by(self) -> str:
        """Who decides, in a few words (the console's Explain page)."""
        if self.model.shipped:
            return "the policy index (the shipped casbin model)"
        return f"pycasbin, on the site model {self.model.path}"

    def describe(self) -> str:
        """Which path decides and what it costs (the start log, `doctor`)."""
        return f"authorization: {self.model.describe()}"

    def _apply(self, delta: PolicyDelta) -> None:
        if delta.version == self.version:
            return
        self.engine.apply(delta)
        self.version = delta.version
        self.last_load = "delta"
        self.clock.track(line for added, line in delta.changes if added and isinstance(line, Rule))
        self.forget_answers(
            frozenset(
                line.object for added, line in delta.changes if not added and isinstance(line, Rule)
            )
        )
        log.debug("policy version %s: %s lines applied", delta.version, len(delta.changes))
        self.drop_expired()

    def drop_expired(self) -> None:
        """Take the rules whose expiry has come off the active path (on this replica, at once:
        synchronous, so no decision sees them afterwards); the store removes them next."""
        due = [rule for rule in self.clock.due(time.time()) if rule in self.index]
        if not due:
            return
        self.engine.apply(PolicyDelta(self.version, tuple((False, rule) for rule in due)))
        self._unswept.update(due)
        self.forget_answers(frozenset(rule.object for rule in due))
        log.info("%s policy rules expired: %s", len(due), "; ".join(map(str, due[:5])))

    async def sweep_expired(self) -> None:
        """Remove the expired rules from the store; whoever's removal commits tells
        ``on_expired`` and the other replicas (the others find them gone)."""
        if not self._unswept:
            return
        rules = sorted(self._unswept)
        removed = await self.store.expire(rules, EXPIRY_ACTOR)
        self._unswept.difference_update(rules)
        if removed:
            for listener in self.on_expired:
                listener(removed)
            await self.announce()

    def measured_cost(self, budget_s: float = 0.5) -> str:
        """What an uncached decision costs on the loaded policy, timed on requests shaped by it
        (a few dozen decisions on the event loop: said once, at start, before serving)."""
        rules = tuple(self.index.some_rules(50))
        p50, n = decision_cost(self.engine, sample_requests(rules, 50), budget_s)
        return (
            f"an uncached decision took {p50:,.0f} µs (median of {n}) on {len(self.engine):,} lines"
        )

    def log_path(self) -> str:
        """Log (at start) the active path and an uncached decision timed on it; the line."""
        line = f"{self.describe()}; {self.measured_cost()}"
        log.info("%s", line)
        return line

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
            engine, expiring = await asyncio.to_thread(_engine_of, self.model, version, rows)
            retired, self.engine, self.version = self.engine, engine, version
            self.clock.reset(expiring)
            # Freed off the event loop too, a piece at a time.
            await asyncio.to_thread(_dismantle, retired, rows)
            gc.freeze()
        finally:
            gc.enable()
        self.last_load = "full"
        self.forget_answers(None)
        log.info(
            "policy version %s loaded: %s lines, decided on the %s path",
            version,
            len(self.engine),
            self.engine.engine,
        )
        self.drop_expired()

    def forget_answers(self, removed: frozenset[str] | None) -> None:
        """Drop cached answers and tell the listeners (also for a change made here, not stored)."""
        self._cache.clear()
        self._readable_ids.clear()
        self._admins.clear()
        for listener in self.on_change:
            listener(removed)

    def readable_experiment_ids(self, principal: Principal) -> frozenset[str] | None:
        """The ids of every experiment the policy could let ``principal`` read, when the rules
        that grant it read name experiments by id only; None when they do not (a pattern, a name,
        an admin). A superset: deny rules are not subtracted, each result is still judged.
        On the casbin path always None: a site model's matcher may reach experiments in ways the
        rules' objects do not show, so searches are not steered (each result is still judged)."""
        if self.engine.engine != "index":
            return None
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
        if time.time() >= self.clock.next_at:
            self.drop_expired()
        key = (subjects_of(principal), names, action)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        decision = self.engine.decide(key[0], names, action)
        self._cache[key] = decision
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return decision

    def holds_any_right(self, principal: Principal, names: tuple[str, ...]) -> bool:
        """Whether any right on the object reaches the principal (only asked on a refusal:
        a caller with none is answered as if the object did not exist)."""
        return self.engine.holds_any_right(subjects_of(principal), names)

    def is_admin(self, principal: Principal) -> bool:
        subjects = subjects_of(principal)
        admin = self._admins.get(subjects)
        if admin is None:
            if len(self._admins) >= self._cache_size:
                self._admins.clear()
            admin = self._admins[subjects] = self.engine.is_admin(subjects)
        return admin

    # -- changes ---------------------------------------------------------------------------------

    async def _change(
        self, make: Callable[[], Awaitable[T]], changed: Callable[[T], bool] = bool
    ) -> T:
        """Every change to the policy: once what waits before a change has run (the owner
        flusher), made in the store; when it changed anything, the other replicas are told."""
        for wait in self.before_change:
            await wait()
        outcome = await make()
        if changed(outcome):
            await self.announce()
        return outcome

    async def announce(self) -> None:
        """Catch up with the store, then tell the other replicas its version."""
        await self.load()
        try:
            await self._redis.publish(CHANNEL, str(self.version))
        except RedisError as exc:  # other replicas catch up by polling
            log.warning("could not announce the policy change: %s", exc)

    async def add(
        self, lines: Iterable[Rule | Grouping], actor: str | None
    ) -> list[Rule | Grouping]:
        return await self._change(lambda: self.store.add(lines, actor))

    async def remove(
        self, lines: Iterable[Rule | Grouping], actor: str | None = None
    ) -> list[Rule | Grouping]:
        return await self._change(lambda: self.store.remove(lines, actor))

    async def rollback(self, version: int, actor: str | None) -> Rollback:
        return await self._change(
            lambda: self.store.rollback(version, actor), lambda done: done.changed
        )

    async def replace_object(self, old: str, new: str | None, actor: str | None) -> int:
        return await self._change(lambda: self.store.replace_object(old, new, actor))

    # -- keeping up with other replicas ----------------------------------------------------------

    def start(self) -> None:
        self._background.start(
            policy_listen=self._listen(), policy_poll=self._poll(), policy_expiry=expiry_loop(self)
        )

    async def stop(self) -> None:
        await self._background.stop()

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
