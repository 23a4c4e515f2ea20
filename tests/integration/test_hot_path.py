"""A caller already seen costs no SQL and no Redis, and every change still takes effect on the
next request on every replica.

Two gateways on one PostgreSQL and one Redis of their own (a test stops it). The I/O counts come
from `/.gateway/metrics` (`gateway_request_io_total{kind}`): what requests did on their own path.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from gateway.devstack import stop_child
from tests.helpers import (
    Gateway,
    MlflowServer,
    RedisServer,
    create_experiment,
    gateway_pair,
    start_redis,
    temporary_postgres_database,
)
from tests.integration.test_admin_api import call
from tests.integration.test_authn import basic, bearer, login, request, session_cookie

PASSWORD = "hot-path-password-1"


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("hot-redis"))
    yield server
    stop_child(server.child)


@pytest.fixture(scope="module")
def pair(
    mlflow_server: MlflowServer, own_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gateway, Gateway]]:
    with temporary_postgres_database() as database:
        shared = {
            "GATEWAY_DATABASE_URL": database,
            "GATEWAY_LOCKOUT_USER_THRESHOLD": "3",
            "GATEWAY_LOCKOUT_IP_THRESHOLD": "1000",
        }
        workdir = tmp_path_factory.mktemp("pair")
        with gateway_pair(mlflow_server.url, own_redis.url, workdir, **shared) as pair:
            yield pair


@pytest.fixture(scope="module")
def experiment(pair: tuple[Gateway, Gateway]) -> str:
    a, _ = pair
    return create_experiment(a, f"hot-{time.time_ns()}")


def request_io(gw: Gateway) -> dict[str, float]:
    _, _, body = request(gw, "/.gateway/metrics")
    found = re.findall(
        r'^gateway_request_io_total\{kind="(\w+)"\} ([0-9.e+]+)$', body.decode(), re.M
    )
    return {kind: float(value) for kind, value in found}


def read(gw: Gateway, experiment: str, headers: dict[str, str]) -> int:
    path = f"/api/2.0/mlflow/experiments/get?experiment_id={experiment}"
    return request(gw, path, headers=headers)[0]


def user(a: Gateway, name: str, experiment: str) -> dict[str, str]:
    """A user who may read the experiment; their password credentials."""
    call(a, "POST", "/users", {"username": name, "password": PASSWORD}, headers=a.auth)
    rule = {"subject": f"user:{name}", "object": f"experiment:{experiment}", "action": "read"}
    assert call(a, "POST", "/policy/rules", rule, headers=a.auth)[0] == 200
    return basic(name, PASSWORD)


def test_a_caller_already_seen_costs_no_sql_and_no_redis(
    pair: tuple[Gateway, Gateway], experiment: str
) -> None:
    a, _ = pair
    password = user(a, "hot-io", experiment)
    token = bearer(a.token("hot-io", "hot-io"))
    _, headers, _ = login(a, "hot-io", PASSWORD)
    session = {"Cookie": session_cookie(headers)}
    callers = {"password": password, "token": token, "session": session}
    for headers in callers.values():  # first sight: checked, then remembered
        assert read(a, experiment, headers) == 200
    before = request_io(a)
    for _ in range(10):
        for headers in callers.values():
            assert read(a, experiment, headers) == 200
    after = request_io(a)
    spent = {kind: after.get(kind, 0) - before.get(kind, 0) for kind in ("sql", "redis")}
    assert spent == {"sql": 0, "redis": 0}, spent


def test_revocation_holds_on_the_other_replica_at_once(
    pair: tuple[Gateway, Gateway], experiment: str
) -> None:
    a, b = pair
    user(a, "hot-revoke", experiment)
    secret = a.token("hot-revoke", "hot-revoke")
    assert read(b, experiment, bearer(secret)) == 200  # remembered on b
    token_id = next(
        t["id"] for t in call(a, "GET", "/tokens", headers=a.auth)[1]["tokens"]
        if t["name"] == "hot-revoke"
    )  # fmt: skip
    assert call(a, "DELETE", f"/tokens/{token_id}", headers=a.auth)[0] == 200
    assert read(b, experiment, bearer(secret)) == 401  # the very next request


def test_disabling_and_a_new_password_hold_on_the_other_replica_at_once(
    pair: tuple[Gateway, Gateway], experiment: str
) -> None:
    a, b = pair
    password = user(a, "hot-disable", experiment)
    secret = bearer(a.token("hot-disable", "hot-disable"))
    assert read(b, experiment, password) == read(b, experiment, secret) == 200
    call(a, "PATCH", "/users/hot-disable", {"password": "another-password-22"}, headers=a.auth)
    assert read(b, experiment, password) == 401
    assert read(b, experiment, basic("hot-disable", "another-password-22")) == 200
    call(a, "PATCH", "/users/hot-disable", {"disabled": True}, headers=a.auth)
    assert read(b, experiment, basic("hot-disable", "another-password-22")) == 401
    assert read(b, experiment, secret) == 401


def test_group_membership_and_sign_out_hold_on_the_other_replica_at_once(
    pair: tuple[Gateway, Gateway], experiment: str
) -> None:
    a, b = pair
    call(a, "POST", "/users", {"username": "hot-group", "password": PASSWORD}, headers=a.auth)
    rule = {"subject": "group:hot-readers", "object": f"experiment:{experiment}", "action": "read"}
    assert call(a, "POST", "/policy/rules", rule, headers=a.auth)[0] == 200
    call(a, "PUT", "/groups/hot-readers/members/hot-group", headers=a.auth)
    credentials = basic("hot-group", PASSWORD)
    assert read(b, experiment, credentials) == 200
    call(a, "DELETE", "/groups/hot-readers/members/hot-group", headers=a.auth)
    assert read(b, experiment, credentials) == 404  # no right any more: as if it did not exist

    _, headers, _ = login(a, "hot-group", PASSWORD)
    cookie = session_cookie(headers)
    status, _, body = request(b, "/.gateway/api/me", headers={"Cookie": cookie})
    assert status == 200
    csrf = __import__("json").loads(body)["csrf_token"]
    form = {"Cookie": cookie, "Origin": a.url, "Content-Type": "application/x-www-form-urlencoded"}
    assert request(a, "/.gateway/logout", "POST", form, f"csrf_token={csrf}".encode())[0] == 303
    assert request(b, "/.gateway/api/me", headers={"Cookie": cookie})[0] == 401


def test_a_lockout_started_on_one_replica_holds_on_the_other(
    pair: tuple[Gateway, Gateway], experiment: str
) -> None:
    a, b = pair
    password = user(a, "hot-lock", experiment)
    assert read(b, experiment, password) == 200  # remembered on b
    for _ in range(3):
        assert read(a, experiment, basic("hot-lock", "wrong-password-123")) in (401, 429)
    assert read(b, experiment, password) == 429  # even the right password, on the other replica


def test_without_redis_nothing_is_remembered_and_revocation_still_holds(
    pair: tuple[Gateway, Gateway], experiment: str, own_redis: RedisServer
) -> None:
    """Redis away: changes cannot be announced, so nothing is remembered (fail closed)."""
    a, b = pair
    user(a, "hot-noredis", experiment)
    secret = a.token("hot-noredis", "hot-noredis")
    assert read(b, experiment, bearer(secret)) == 200
    stop_child(own_redis.child)
    time.sleep(1.5)  # the replicas notice their subscription is gone
    assert read(b, experiment, bearer(secret)) == 200  # still served, from the database
    token_id = next(
        line.split()[0] for line in a.cli("tokens", "list").stdout.splitlines()
        if "hot-noredis" in line
    )  # fmt: skip
    a.cli("tokens", "revoke", token_id)
    assert read(b, experiment, bearer(secret)) == 401
