"""Two gateways on one PostgreSQL and one Redis: a change made through either takes effect on the
other within a second, and a browser session started on one works on the other."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import pytest

from tests.helpers import (
    Gateway,
    MlflowServer,
    RedisServer,
    create_experiment,
    gateway_pair,
    temporary_postgres_database,
)
from tests.integration.test_admin_api import call
from tests.integration.test_authn import basic, bearer, request

PASSWORD = "replica-password-1"
# The contract is one second; polling every 20 ms measures how long it really takes.
WITHIN = 1.0
POLL = 0.02


@pytest.fixture(scope="module")
def pair(
    mlflow_server: MlflowServer, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gateway, Gateway]]:
    with temporary_postgres_database() as database:
        shared = {"GATEWAY_DATABASE_URL": database, "GATEWAY_LOCKOUT_IP_THRESHOLD": "1000"}
        workdir = tmp_path_factory.mktemp("pair")
        with gateway_pair(mlflow_server.url, redis_server.db_url(12), workdir, **shared) as pair:
            yield pair


@pytest.fixture(scope="module")
def experiment(pair: tuple[Gateway, Gateway]) -> str:
    a, _ = pair
    return create_experiment(a, f"replicas-{time.time_ns()}")


def seconds_until(condition: Callable[[], bool]) -> float:
    started = time.monotonic()
    while not condition():
        elapsed = time.monotonic() - started
        assert elapsed < WITHIN, f"not in effect after {elapsed:.2f} s"
        time.sleep(POLL)
    return time.monotonic() - started


def status_of(gw: Gateway, experiment: str, headers: dict[str, str]) -> int:
    return request(
        gw, f"/api/2.0/mlflow/experiments/get?experiment_id={experiment}", headers=headers
    )[0]


def test_policy_change_on_one_is_enforced_by_the_other(
    pair: tuple[Gateway, Gateway], experiment: str
) -> None:
    a, b = pair
    # The admin token was created through a's CLI; b knows it from the shared database.
    assert (
        call(b, "POST", "/users", {"username": "rita", "password": PASSWORD}, headers=a.auth)[0]
        == 201
    )
    # A token: its check costs a database lookup, not a deliberately slow password hash, so the
    # time measured is the policy's propagation.
    rita = bearer(a.token("rita", "rita-ci"))
    # No right on it: answered as if it did not exist.
    assert status_of(a, experiment, rita) == 404
    assert status_of(b, experiment, rita) == 404

    rule = {"subject": "user:rita", "object": f"experiment:{experiment}", "action": "read"}
    assert call(a, "POST", "/policy/rules", rule, headers=a.auth)[0] == 200
    granted = seconds_until(lambda: status_of(b, experiment, rita) == 200)

    assert call(b, "POST", "/policy/rules/delete", rule, headers=a.auth)[0] == 200
    revoked = seconds_until(lambda: status_of(a, experiment, rita) == 404)
    print(f"policy propagation: grant {granted * 1000:.0f} ms, revoke {revoked * 1000:.0f} ms")


def test_groups_users_and_tokens_changed_on_one_hold_on_the_other(
    pair: tuple[Gateway, Gateway], experiment: str
) -> None:
    a, b = pair
    call(a, "POST", "/users", {"username": "sol", "password": PASSWORD}, headers=a.auth)
    call(
        a,
        "POST",
        "/policy/rules",
        {
            "subject": "group:replica-readers",
            "object": f"experiment:{experiment}",
            "action": "read",
        },
        headers=a.auth,
    )
    sol = basic("sol", PASSWORD)
    assert call(a, "PUT", "/groups/replica-readers/members/sol", headers=a.auth)[0] == 200
    seconds_until(lambda: status_of(b, experiment, sol) == 200)

    token = a.token("sol", "sol-ci")
    assert status_of(b, experiment, bearer(token)) == 200
    token_id = call(b, "GET", "/tokens?owner=sol", headers=a.auth)[1]["tokens"][0]["id"]
    assert call(b, "DELETE", f"/tokens/{token_id}", headers=a.auth)[0] == 200
    seconds_until(lambda: status_of(a, experiment, bearer(token)) == 401)

    assert call(b, "PATCH", "/users/sol", {"disabled": True}, headers=a.auth)[0] == 200
    seconds_until(lambda: status_of(a, experiment, sol) == 401)


def test_a_session_started_on_one_works_on_the_other(pair: tuple[Gateway, Gateway]) -> None:
    a, b = pair
    call(a, "POST", "/users", {"username": "uli", "password": PASSWORD}, headers=a.auth)
    status, headers, _ = request(
        a,
        "/.gateway/login",
        "POST",
        {"Content-Type": "application/x-www-form-urlencoded", "Origin": a.url},
        f"username=uli&password={PASSWORD}&next=/".encode(),
    )
    assert status == 303
    cookie = headers["Set-Cookie"].split(";", 1)[0]
    status, _, body = request(b, "/.gateway/api/me", headers={"Cookie": cookie})
    assert status == 200 and json.loads(body)["username"] == "uli"
    # Signing out on b (with the session's CSRF token, as the pages send it) ends it everywhere.
    csrf = json.loads(body)["csrf_token"]
    form = {"Cookie": cookie, "Origin": b.url, "Content-Type": "application/x-www-form-urlencoded"}
    status, _, _ = request(b, "/.gateway/logout", "POST", form, f"csrf_token={csrf}".encode())
    assert status == 303
    assert request(a, "/.gateway/api/me", headers={"Cookie": cookie})[0] == 401
