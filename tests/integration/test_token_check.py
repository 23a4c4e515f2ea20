"""The per-request token check answers the same whether it reads the SQLite file directly (the hot
path) or through the async driver (the fallback, and PostgreSQL's way), and sees changes at once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from gateway.scopes import TokenScope
from gateway.store.db import create_engine
from gateway.store.migrate import upgrade_database
from gateway.store.tokens import TokenCheck, TokenStore
from gateway.store.users import UserStore

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
async def stores(tmp_path) -> AsyncIterator[tuple[UserStore, TokenStore, TokenStore]]:
    engine = create_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
    await upgrade_database(engine)
    direct, through_driver = TokenStore(engine), TokenStore(engine)
    assert direct._reader is not None
    through_driver._reader = None
    yield UserStore(engine), direct, through_driver
    await engine.dispose()


async def both(direct: TokenStore, driver: TokenStore, secret: str) -> TokenCheck:
    first, second = await direct.check(secret), await driver.check(secret)
    # last_used_at moves when a check writes it; everything else must be identical.
    strip = lambda c: (c.owner, c.token and c.token.id, c.token and c.token.scope, c.refusal)  # noqa: E731
    assert strip(first) == strip(second)
    return first


async def test_direct_and_driver_reads_agree_and_see_changes(stores) -> None:
    users, direct, driver = stores
    await users.add("ann", None, groups=("team-b", "team-a"))
    record, secret = await direct.create(
        "ann", "laptop", expires_in=timedelta(days=1), scope=TokenScope(True, ("12",), ())
    )
    check = await both(direct, driver, secret)
    assert check.owner is not None and check.owner.groups == ("team-a", "team-b")
    assert check.token is not None and check.token.scope == TokenScope(True, ("12",), ())
    assert check.token.expires_at is not None and check.token.created_at <= check.token.expires_at

    await users.add_member("team-c", "ann")
    assert (await both(direct, driver, secret)).owner.groups == ("team-a", "team-b", "team-c")
    await users.set_disabled("ann", True)
    assert (await both(direct, driver, secret)).refusal == f"owner of token {record.id} is disabled"
    await users.set_disabled("ann", False)
    await direct.revoke(record.id)
    assert (await both(direct, driver, secret)).refusal == f"token {record.id} is revoked"
    assert (await both(direct, driver, "mlgw_" + "x" * 43)).refusal == "unknown token"


async def test_a_user_without_groups_and_the_last_use(stores) -> None:
    users, direct, driver = stores
    await users.add("bob", None)
    record, secret = await direct.create("bob", "ci")
    check = await both(direct, driver, secret)
    assert check.owner is not None and check.owner.groups == ()
    listed = {t.id: t for t in await direct.list("bob")}
    assert listed[record.id].last_used_at is not None
