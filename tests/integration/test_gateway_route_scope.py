"""A token's scope on the gateway's own routes, on the real stack: a token with a scope never
administers, and a token creates only tokens at most as wide and as long-lived as itself, at every
door that creates tokens (the JSON API, /.gateway/tokens, the console)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.helpers import Gateway, MlflowServer, RedisServer, create_experiment, start_gateway
from tests.integration.test_admin_api import call, security_events
from tests.integration.test_authn import bearer, request

REDIS_DB = 14
PASSWORD = "scope-password-1"
DENIED = "PERMISSION_DENIED"


@pytest.fixture(scope="module")
def gw(
    mlflow_server: MlflowServer, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    gateway = start_gateway(
        mlflow_server.url,
        redis_server.db_url(REDIS_DB),
        tmp_path_factory.mktemp("gw-route-scope"),
        GATEWAY_LOCKOUT_IP_THRESHOLD="1000",
    )
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def experiments(gw: Gateway) -> tuple[str, str]:
    stamp = time.time_ns()
    return create_experiment(gw, f"scope-a-{stamp}"), create_experiment(gw, f"scope-b-{stamp}")


def mint(gw: Gateway, token: str, **body: Any) -> tuple[int, dict[str, Any]]:
    return call(gw, "POST", "/me/tokens", {"name": "child", **body}, headers=bearer(token))


def refused(answer: tuple[int, dict[str, Any]], *fragments: str) -> str:
    status, body = answer
    assert status == 403, body
    assert body["error_code"] == DENIED
    for fragment in fragments:
        assert fragment in body["message"], body["message"]
    return str(body["message"])


def created(answer: tuple[int, dict[str, Any]]) -> dict[str, Any]:
    status, body = answer
    assert status == 201, body
    return body


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def my_token(gw: Gateway, token: str) -> dict[str, Any]:
    status, body = call(gw, "GET", "/me/tokens", headers=bearer(token))
    assert status == 200 and len(body["tokens"]) == 1
    return dict(body["tokens"][0])


def experiment_status(gw: Gateway, token: str, experiment_id: str) -> int:
    path = f"/api/2.0/mlflow/experiments/get?experiment_id={experiment_id}"
    return request(gw, path, headers=bearer(token))[0]


def create_run_status(gw: Gateway, token: str, experiment_id: str) -> int:
    body = json.dumps({"experiment_id": experiment_id}).encode()
    headers = {**bearer(token), "Content-Type": "application/json"}
    return request(gw, "/api/2.0/mlflow/runs/create", "POST", headers, body)[0]


def refusal_event(gw: Gateway, kind: str, token_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for event in security_events(gw, kind):
            if event["outcome"] == "failure" and event["actor"]["token_id"] == token_id:
                return event
        time.sleep(0.2)
    raise AssertionError(f"no refused {kind} event for token {token_id}")


# -- the exploit --------------------------------------------------------------------------------


def test_an_admins_scoped_hour_token_cannot_mint_a_wide_long_one(
    gw: Gateway, experiments: tuple[str, str]
) -> None:
    a, b = experiments
    hour = gw.token("admin", "admin-hour", "--scope", f"experiment:{a}", "--expires-in", "1h")
    parent = my_token(gw, hour)

    # The exploit: a 90-day token without a scope. Refused, saying what to change, and audited.
    refused(mint(gw, hour, expires_in="90d"), "at most as wide", f"experiment:{a}")
    refused(mint(gw, hour), "name the experiments")
    event = refusal_event(gw, "token_created", parent["id"])
    assert event["details"]["owner"] == "admin" and "at most as wide" in event["details"]["reason"]
    status, mine = call(gw, "GET", "/tokens?owner=admin", headers=gw.auth)
    assert status == 200 and "child" not in [t["name"] for t in mine["tokens"]]
    # Within its scope but longer-lived: refused too.
    refused(mint(gw, hour, experiments=[a], expires_in="2h"), "expires at", "shorter expires_in")

    # Narrower and shorter: allowed, and really narrower when used against MLflow.
    answer = created(mint(gw, hour, experiments=[a], read_only=True, expires_in="30m"))
    child = answer["secret"]
    assert answer["token"]["scope"] == ["read-only", f"experiment:{a}"]
    assert moment(answer["token"]["expires_at"]) <= moment(parent["expires_at"])
    assert experiment_status(gw, child, a) == 200
    assert experiment_status(gw, child, b) == 403
    assert create_run_status(gw, child, a) == 403
    assert create_run_status(gw, hour, a) == 200  # the parent may write: the child may not

    # Neither of them administers, although their owner is an admin.
    for token in (hour, child):
        message = refused(call(gw, "GET", "/users", headers=bearer(token)), "scope")
        assert "unscoped token" in message


def test_the_tokens_page_is_the_same_door(gw: Gateway, experiments: tuple[str, str]) -> None:
    a, _ = experiments
    hour = gw.token("admin", "admin-page", "--scope", f"experiment:{a}", "--expires-in", "1h")
    form = {"Content-Type": "application/x-www-form-urlencoded", **bearer(hour)}
    body = urlencode({"name": "wide", "expires_in": "90d"}).encode()
    status, _, page = request(gw, "/.gateway/tokens", "POST", form, body)
    assert status == 403 and "at most as wide" in page.decode()
    body = urlencode({"name": "narrow", "experiments": a, "expires_in": "1d"}).encode()
    status, _, page = request(gw, "/.gateway/tokens", "POST", form, body)
    assert status == 403 and "expires at" in page.decode()
    # No lifetime named: the new token expires with the one that made it.
    body = urlencode({"name": "narrow", "experiments": a}).encode()
    status, _, page = request(gw, "/.gateway/tokens", "POST", form, body)
    assert status == 200 and 'id="new-token"' in page.decode()
    # The console's token form needs a browser session: a token gets the refusal page.
    status, _, _ = request(gw, "/.gateway/admin/account/tokens", "POST", form, body)
    assert status == 403


# -- narrower only ------------------------------------------------------------------------------


def test_read_only_stays_read_only(gw: Gateway) -> None:
    gw.add_user("rhea", PASSWORD)
    reader = gw.token("rhea", "reader", "--scope", "read-only")
    refused(mint(gw, reader), "read-only", "make the new token read-only too")
    refused(mint(gw, reader, experiments=["1"]), "read-only")
    answer = created(mint(gw, reader, read_only=True))
    assert answer["token"]["scope"] == ["read-only"]
    # Narrower still is fine: read-only and one experiment.
    answer = created(mint(gw, reader, read_only=True, experiments=["1"]))
    assert answer["token"]["scope"] == ["read-only", "experiment:1"]


def test_experiment_and_model_scopes_only_narrow(gw: Gateway, experiments: tuple[str, str]) -> None:
    a, b = experiments
    gw.add_user("emil", PASSWORD)
    team = gw.token(
        "emil", "team", "--scope", f"experiment:{a}", "--scope", "registered_model:fr-*"
    )
    refused(mint(gw, team), "name the experiments or registered models")
    refused(mint(gw, team, read_only=True), "name the experiments")
    refused(mint(gw, team, experiments=[b]), f"experiment:{b} is outside")
    refused(mint(gw, team, experiments=["*"]), "experiment:* is outside")
    for models in (["*"], ["f*"], ["fr-*", "other"]):
        refused(mint(gw, team, registered_models=models), "is outside")
    for models in (["fr-eu"], ["fr-*"], ["fr-eu-*"]):
        answer = created(mint(gw, team, registered_models=models))
        assert answer["token"]["scope"] == [f"registered_model:{m}" for m in models]
    answer = created(mint(gw, team, experiments=[a], registered_models=["fr-1"]))
    assert answer["token"]["scope"] == [f"experiment:{a}", "registered_model:fr-1"]


def test_expiry_is_capped_by_the_minting_token(gw: Gateway) -> None:
    gw.add_user("cato", PASSWORD)
    short = gw.token("cato", "short", "--expires-in", "2h")  # no scope, but it expires
    listed = call(gw, "GET", "/me/tokens", headers=bearer(short))[1]["tokens"]
    parent = next(t for t in listed if t["name"] == "short")
    refused(mint(gw, short, expires_in="3h"), "expires at", "shorter expires_in")
    refused(mint(gw, short, expires_in="30d"), "expires at")
    answer = created(mint(gw, short, expires_in="1h"))
    assert moment(answer["token"]["expires_at"]) <= moment(parent["expires_at"])
    answer = created(mint(gw, short))  # no expiry named: defaults to the parent's, not refused
    assert answer["token"]["expires_at"] == parent["expires_at"]
    # A token without expiry mints with the usual 30-day default.
    forever = gw.token("cato", "forever")
    answer = created(mint(gw, forever))
    lifetime = moment(answer["token"]["expires_at"]) - moment(answer["token"]["created_at"])
    assert timedelta(days=29, hours=23) < lifetime <= timedelta(days=30, seconds=5)


# -- no administration with a scope -------------------------------------------------------------


def test_scoped_tokens_never_reach_admin_routes(gw: Gateway) -> None:
    victim = gw.token("admin", "victim")
    listed = call(gw, "GET", "/tokens?owner=admin", headers=gw.auth)[1]["tokens"]
    victim_id = next(t["id"] for t in listed if t["name"] == "victim")
    for scope in (
        ["--scope", "read-only"],
        ["--scope", "experiment:*"],
        ["--scope", "registered_model:*"],
    ):
        token = gw.token("admin", "admin-" + scope[1].replace(":", "-").rstrip("*"), *scope)
        for method, path in [
            ("GET", "/users"),
            ("GET", "/groups"),
            ("GET", "/policy"),
            ("GET", "/policy/export"),
            ("GET", "/tokens"),
            ("GET", "/audit"),
            ("GET", "/audit/verify"),
            ("DELETE", f"/tokens/{victim_id}"),
            ("POST", "/users"),
        ]:
            status, body = call(gw, method, path, {} if method == "POST" else None, bearer(token))
            assert status == 403 and body["error_code"] == DENIED, (scope, method, path)
            assert "scope" in body["message"], (scope, method, path)
        # The console's admin pages too, and its front door sends it to "My account".
        status, _, page = request(gw, "/.gateway/admin/users", headers=bearer(token))
        assert status == 403 and "cannot administer" in page.decode()
        status, headers, _ = request(gw, "/.gateway/admin/", headers=bearer(token))
        assert status == 303 and headers["Location"] == "/.gateway/admin/account"
        _, _, page = request(gw, "/.gateway/admin/account", headers=bearer(token))
        assert "/.gateway/admin/users" not in page.decode()  # no admin tabs
        assert call(gw, "GET", "/me", headers=bearer(token))[0] == 200
    assert request(gw, "/.gateway/api/me", headers=bearer(victim))[0] == 200
    # An admin's unscoped token still administers, even one that expires.
    expiring = gw.token("admin", "admin-1d", "--expires-in", "1d")
    assert call(gw, "GET", "/users", headers=bearer(expiring))[0] == 200


# -- a scoped token and its owner's other tokens ------------------------------------------------


def test_a_scoped_token_sees_and_revokes_only_itself(gw: Gateway) -> None:
    gw.add_user("tess", PASSWORD)
    laptop = gw.token("tess", "laptop")
    ci = gw.token("tess", "ci", "--scope", "read-only")
    ids = {
        t["name"]: t["id"]
        for t in call(gw, "GET", "/me/tokens", headers=bearer(laptop))[1]["tokens"]
    }
    assert set(ids) == {"laptop", "ci"}  # unscoped: every token of the owner

    assert [t["name"] for t in call(gw, "GET", "/me/tokens", headers=bearer(ci))[1]["tokens"]] == [
        "ci"
    ]
    _, _, page = request(gw, "/.gateway/tokens", headers=bearer(ci))
    assert ids["ci"] in page.decode() and ids["laptop"] not in page.decode()

    refused(call(gw, "DELETE", f"/me/tokens/{ids['laptop']}", headers=bearer(ci)), "only itself")
    refused(call(gw, "DELETE", "/me/tokens/000000000000", headers=bearer(ci)), "only itself")
    form = {"Content-Type": "application/x-www-form-urlencoded", **bearer(ci)}
    status, _, page = request(gw, f"/.gateway/tokens/{ids['laptop']}/revoke", "POST", form, b"")
    assert status == 403 and "only itself" in page.decode()
    assert request(gw, "/.gateway/api/me", headers=bearer(laptop))[0] == 200
    refusal_event(gw, "token_revoked", ids["ci"])

    # It may revoke itself (a leaked token's holder can kill it), and then it is dead.
    status, answer = call(gw, "DELETE", f"/me/tokens/{ids['ci']}", headers=bearer(ci))
    assert status == 200 and answer["token"]["state"] == "revoked"
    assert request(gw, "/.gateway/api/me", headers=bearer(ci))[0] == 401

    # An unscoped token manages its owner's other tokens (not itself: that would lock its
    # script out; test_admin_api.py's test_the_token_in_use_cannot_revoke_itself).
    other = gw.token("tess", "other")
    other_id = next(
        t["id"]
        for t in call(gw, "GET", "/me/tokens", headers=bearer(laptop))[1]["tokens"]
        if t["name"] == "other"
    )
    assert call(gw, "DELETE", f"/me/tokens/{other_id}", headers=bearer(laptop))[0] == 200
    assert request(gw, "/.gateway/api/me", headers=bearer(other))[0] == 401
    status, answer = call(gw, "DELETE", f"/me/tokens/{ids['laptop']}", headers=bearer(laptop))
    assert status == 409 and "another" in answer["message"]
    assert request(gw, "/.gateway/api/me", headers=bearer(laptop))[0] == 200
