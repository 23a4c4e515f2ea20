"""Policy changes that meet in the database: each one waits for the other and none fails.

Two stores on one database stand for two replicas (or a replica's expiry sweep and an admin):
an expired rule's removal racing a new expiry for the same rule, and two adds of one new line.
Before policy writes held the policy's write lock from their first statement, the add read the
row, the sweep deleted it, and the add's update of that row failed (a 500 to the admin).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.policy_lines import Rule
from gateway.store.db import create_engine
from gateway.store.migrate import upgrade_database
from gateway.store.policies import PolicyStore
from tests.helpers import temporary_postgres_database

pytestmark = pytest.mark.asyncio(loop_scope="session")

PAST = "2000-01-01T00:00:00Z"
ROUNDS = 40


@contextlib.contextmanager
def database_url(kind: str, tmp_path: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'gateway.db'}"
    else:
        with temporary_postgres_database() as url:
            yield url


@pytest.fixture(params=["sqlite", "postgresql"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple]:
    with database_url(request.param, tmp_path) as url:
        engines = [create_engine(url), create_engine(url)]
        await upgrade_database(engines[0])
        a, b = PolicyStore(engines[0]), PolicyStore(engines[1])
        await a.bootstrap([Rule("role:admin", "*", "*")])
        try:
            yield a, b
        finally:
            for engine in engines:
                await engine.dispose()


async def test_a_new_expiry_racing_the_sweep_of_the_old_one_is_kept(stores: tuple) -> None:
    a, b = stores
    expired = [Rule(f"user:u{i}", f"experiment:{i}", "read", "allow", PAST) for i in range(ROUNDS)]
    await a.add(expired, actor="admin")
    for rule in expired:
        renewed = Rule(rule.subject, rule.object, rule.action, rule.effect)
        swept, added = await asyncio.gather(
            a.expire([rule], "gateway:expiry"), b.add([renewed], actor="admin")
        )
        # Whichever went first, the rule ends as the admin last wrote it, stored once.
        assert added == [renewed]
        snapshot = await b.snapshot()
        assert [r for r in snapshot.rules if r.subject == rule.subject] == [renewed]
        assert swept in ([rule], [])


async def test_two_adds_of_one_new_line_store_it_once(stores: tuple) -> None:
    a, b = stores
    for i in range(ROUNDS):
        rule = Rule(f"user:v{i}", f"experiment:{i}", "edit")
        first, second = await asyncio.gather(a.add([rule], "x"), b.add([rule], "y"))
        assert sorted([first, second], key=len) == [[], [rule]]
    changes = await a.changes_since(1)
    assert changes is not None
    added = [line for was_added, line in changes.changes if was_added]
    assert len(added) == len(set(added)) == ROUNDS
