"""Policy changes reach other replicas as the changed lines, not as a reload of everything.

Two enforcers on one SQLite database and one Redis stand for two gateway replicas.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import redis.asyncio as aioredis
from sqlalchemy import delete

from gateway.authn.principal import Principal
from gateway.authz.enforcer import Enforcer
from gateway.policy_lines import PROTECTED_RULE, Grouping, Rule, expiry_in, expiry_moment
from gateway.store.db import create_engine
from gateway.store.migrate import upgrade_database
from gateway.store.models import PolicyChange
from gateway.store.policies import PolicyStore
from gateway.store.policy_history import UnknownVersion
from tests.helpers import RedisServer

# The fixtures run on the session's event loop (pyproject.toml); so do these tests.
pytestmark = pytest.mark.asyncio(loop_scope="session")

BOB = Principal(subject="bob", method="token")


class Replicas:
    def __init__(self, a: Enforcer, b: Enforcer) -> None:
        self.a, self.b = a, b

    async def b_catches_up(self, within: float = 5.0) -> float:
        started = time.monotonic()
        while self.b.version != self.a.version:
            assert time.monotonic() - started < within, "replica B did not hear of the change"
            await asyncio.sleep(0.01)
        return time.monotonic() - started


@pytest.fixture
async def replicas(tmp_path, redis_server: RedisServer) -> AsyncIterator[Replicas]:
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    engines = [create_engine(url), create_engine(url)]
    await upgrade_database(engines[0])
    clients = [aioredis.Redis.from_url(redis_server.url) for _ in engines]
    a, b = (Enforcer(PolicyStore(e), c) for e, c in zip(engines, clients, strict=True))
    await a.store.bootstrap([Rule("role:admin", "*", "*")])
    await a.load()
    await b.load()
    b.start()
    await asyncio.sleep(0.2)  # B subscribed
    try:
        yield Replicas(a, b)
    finally:
        await b.stop()
        for client in clients:
            await client.aclose()
        for engine in engines:
            await engine.dispose()


async def test_a_change_on_one_replica_is_applied_on_the_other(replicas: Replicas) -> None:
    a, b = replicas.a, replicas.b
    assert b.last_load == "full" and not b.decide(BOB, ("experiment:1",), "read").allowed

    await a.add([Rule("user:bob", "experiment:1", "read")], actor="test")
    took = await replicas.b_catches_up()
    assert b.last_load == "delta", "one added line must not reload the whole policy"
    assert b.decide(BOB, ("experiment:1",), "read").allowed
    assert took < 1.0

    await a.add(
        [Grouping("user:bob", "group:team"), Rule("group:team", "experiment:2", "edit")], "t"
    )
    await replicas.b_catches_up()
    assert b.decide(BOB, ("experiment:2",), "edit").allowed

    await a.replace_object("experiment:1", "experiment:9", actor="test")
    await replicas.b_catches_up()
    assert not b.decide(BOB, ("experiment:1",), "read").allowed
    assert b.decide(BOB, ("experiment:9",), "read").allowed

    await a.remove([Grouping("user:bob", "group:team")])
    await replicas.b_catches_up()
    assert b.last_load == "delta"
    assert not b.decide(BOB, ("experiment:2",), "edit").allowed
    assert set(b.index.rules) == set(a.index.rules)
    assert set(b.index.groupings) == set(a.index.groupings)


async def test_a_gap_in_the_change_log_reloads_everything(replicas: Replicas) -> None:
    a, b = replicas.a, replicas.b
    await b.stop()  # B misses the next changes, as a replica cut off from Redis would
    await a.add([Rule("user:bob", "experiment:3", "read")], actor="test")
    await a.add([Rule("user:bob", "experiment:4", "read")], actor="test")
    async with a.store._sessions.begin() as session:  # the log was pruned past B's version
        await session.execute(delete(PolicyChange).where(PolicyChange.version == a.version - 1))
    await b.load()
    assert b.version == a.version and b.last_load == "full"
    assert b.decide(BOB, ("experiment:3",), "read").allowed
    assert b.decide(BOB, ("experiment:4",), "read").allowed
    b.start()


async def test_versions_and_log_stay_in_step(replicas: Replicas) -> None:
    a = replicas.a
    before = a.version
    assert await a.add([Rule("user:bob", "experiment:5", "read")], actor="t")
    assert await a.add([Rule("user:bob", "experiment:5", "read")], actor="t") == []
    assert a.version == before + 1, "a change that changes nothing takes no version"
    delta = await a.store.changes_since(before)
    assert delta is not None and delta.version == before + 1
    assert delta.changes == ((True, Rule("user:bob", "experiment:5", "read")),)
    assert await a.store.changes_since(a.version + 5) is None


async def test_an_expired_rule_stops_deciding_on_both_replicas_and_is_removed_once(
    replicas: Replicas,
) -> None:
    a, b = replicas.a, replicas.b
    expired: list[Rule] = []
    a.on_expired.append(expired.extend)
    b.on_expired.append(expired.extend)
    a.start()
    try:
        rule = Rule("user:bob", "experiment:7", "read", "allow", expiry_in(timedelta(seconds=2)))
        await a.add([rule], actor="test")
        await replicas.b_catches_up()
        # Cached allows on both replicas: they must not outlive the rule.
        assert a.decide(BOB, ("experiment:7",), "read").allowed
        assert b.decide(BOB, ("experiment:7",), "read").allowed
        await asyncio.sleep(max(0.0, expiry_moment(rule.expires_at) - time.time()))
        # Decided on without waiting for any task: the clock is checked before the cache.
        assert not a.decide(BOB, ("experiment:7",), "read").allowed
        assert not b.decide(BOB, ("experiment:7",), "read").allowed
        # Both replicas try to remove it from the store; one removal commits, one event.
        deadline = time.monotonic() + 3
        while not expired or b.version != a.version or a.version != await a.store.version():
            assert time.monotonic() < deadline, "the expired rule was not removed from the store"
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
        assert expired == [rule]
        assert rule not in (await a.store.snapshot()).rules
        history = await a.store.history(1)
        assert history[0].actor == "gateway:expiry" and history[0].line == rule
    finally:
        await a.stop()


async def test_rollback_restores_a_version_and_reaches_the_other_replica(
    replicas: Replicas,
) -> None:
    a, b = replicas.a, replicas.b
    await a.add([Rule("user:bob", "experiment:8", "read")], actor="alice")
    kept = a.version
    await a.add([Rule("user:bob", "experiment:9", "edit")], actor="alice")
    await a.remove([Rule("user:bob", "experiment:8", "read")], actor="carol")
    await replicas.b_catches_up()
    assert not b.decide(BOB, ("experiment:8",), "read").allowed

    done = await a.rollback(kept, "dave")
    assert done.version == kept + 3 and done.target == kept
    assert done.added == (Rule("user:bob", "experiment:8", "read"),)
    assert done.removed == (Rule("user:bob", "experiment:9", "edit"),)
    await replicas.b_catches_up()
    assert b.last_load == "delta"
    assert b.decide(BOB, ("experiment:8",), "read").allowed
    assert not b.decide(BOB, ("experiment:9",), "edit").allowed
    entries = await a.store.history(3)
    assert {(e.version, e.actor, e.op) for e in entries} == {
        (done.version, "dave", "add"),
        (done.version, "dave", "remove"),
        (done.version - 1, "carol", "remove"),
    }
    with pytest.raises(UnknownVersion, match="unknown policy version 999"):
        await a.rollback(999, "dave")
    # The admin rule survives a rollback to before it existed.
    assert PROTECTED_RULE in (await a.store.snapshot()).rules
