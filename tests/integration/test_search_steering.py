"""Experiment searches narrowed upstream to the caller's experiment ids give MLflow's own answer for
the visible share: same items, same order, complete paging; deny rules and token scopes still hold;
callers whose rights are patterns are served page by page, with the same result. An MLflow too old
to filter experiments by id is searched unsteered, with the same answers."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import Gateway, MlflowServer, RedisServer, start_gateway
from tests.integration.test_authn import bearer, request

SEARCH = "/api/2.0/mlflow/experiments/search"


def call(gw: Gateway, token: str, body: dict) -> tuple[int, dict]:
    status, _, raw = request(
        gw,
        SEARCH,
        "POST",
        {**bearer(token), "Content-Type": "application/json"},
        json.dumps(body).encode(),
    )
    return status, json.loads(raw)


def every_page(gw: Gateway, token: str, body: dict) -> list[dict]:
    """Page through with the client's contract: follow next_page_token until there is none."""
    items: list[dict] = []
    page_token = None
    for _ in range(100):
        status, page = call(
            gw, token, {**body, **({"page_token": page_token} if page_token else {})}
        )
        assert status == 200, page
        items += page.get("experiments", [])
        page_token = page.get("next_page_token")
        if not page_token:
            return items
    raise AssertionError("paging did not end")


@dataclass
class World:
    prefix: str
    ids: list[str]  # in creation order
    granted: set[str]  # what the steered caller may read (granted by id, one of them denied)
    steered_token: str


def make_world(gateway: Gateway) -> World:
    prefix = f"/steer-{secrets.token_hex(3)}/"
    ids = []
    for i in range(14):
        status, _, raw = request(
            gateway,
            "/api/2.0/mlflow/experiments/create",
            "POST",
            {**gateway.auth, "Content-Type": "application/json"},
            json.dumps({"name": f"{prefix}{'ab'[i % 2]}-{i:02d}"}).encode(),
        )
        assert status == 200, raw
        ids.append(json.loads(raw)["experiment_id"])
    # A deny on one of the granted ones: the narrowed query brings it back, judging drops it.
    granted = set(ids[:9])
    token = user_with(
        gateway,
        *(f"experiment:{i} read" for i in sorted(granted)),
        f"experiment:{ids[3]} read deny",
    )
    return World(prefix, ids, granted - {ids[3]}, token)


@pytest.fixture(scope="module")
def world(gateway: Gateway) -> World:
    return make_world(gateway)


def admin_view(gw: Gateway, body: dict) -> list[dict]:
    return every_page(gw, gw.admin_token, {**body, "max_results": 1000})


def visible(gw: Gateway, body: dict, readable: set[str]) -> list[str]:
    return [e["experiment_id"] for e in admin_view(gw, body) if e["experiment_id"] in readable]


def user_with(gw: Gateway, *rules: str, scope: tuple[str, ...] = ()) -> str:
    name = f"steer{secrets.token_hex(3)}"
    gw.add_user(name, "steer-password-123")
    lines = "".join(f"p, user:{name}, {', '.join(rule.split())}\n" for rule in rules)
    gw.cli("policy", "import", "-", input=lines)
    options = [f"--scope={s}" for s in scope]
    return gw.token(name, "steer", *options)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"filter": "name LIKE '%/a-%'"},
        {"order_by": ["name DESC"]},
        {"filter": "name LIKE '%/b-%'", "order_by": ["creation_time ASC", "name ASC"]},
    ],
    ids=["plain", "filter", "order", "filter+order"],
)
def test_steered_search_is_mlflows_answer_for_the_visible_share(
    gateway: Gateway, world: World, body: dict
) -> None:
    body = {
        **body,
        "filter": f"name LIKE '{world.prefix}%'"
        + (f" AND {body['filter']}" if body.get("filter") else ""),
    }
    expected = visible(gateway, body, world.granted)
    assert expected, "the case must have something to show"
    for page_size in (2, 100):
        got = [
            e["experiment_id"]
            for e in every_page(gateway, world.steered_token, {**body, "max_results": page_size})
        ]
        assert got == expected, page_size


def test_pattern_rights_are_served_page_by_page_with_the_same_result(
    gateway: Gateway, world: World
) -> None:
    token = user_with(gateway, f"experiment_name:{world.prefix}a-* read")
    body = {"filter": f"name LIKE '{world.prefix}%'"}
    readable = {e["experiment_id"] for e in admin_view(gateway, body) if "/a-" in e["name"]}
    expected = visible(gateway, body, readable)
    got = [e["experiment_id"] for e in every_page(gateway, token, {**body, "max_results": 3})]
    assert got == expected and len(got) == 7


def test_a_token_scope_narrows_a_wide_right(gateway: Gateway, world: World) -> None:
    ids = world.ids
    token = user_with(
        gateway,
        f"experiment_name:{world.prefix}* read",
        scope=(f"experiment:{ids[0]}", f"experiment:{ids[5]}"),
    )
    got = [e["experiment_id"] for e in every_page(gateway, token, {"max_results": 1})]
    assert sorted(got) == sorted([ids[0], ids[5]])


def test_a_caller_who_may_read_nothing_gets_nothing_and_mlflows_errors(
    gateway: Gateway, world: World
) -> None:
    token = user_with(gateway, "registered_model:nothing-here read")
    status, page = call(gateway, token, {"max_results": 5})
    assert status == 200 and page.get("experiments", []) == [] and "next_page_token" not in page
    status, page = call(gateway, token, {"filter": "name = "})
    assert status == 400 and page["error_code"] == "INVALID_PARAMETER_VALUE"


def test_a_steered_page_token_after_rights_widen_asks_to_start_again(
    gateway: Gateway, world: World
) -> None:
    ids = world.ids
    name = f"steer{secrets.token_hex(3)}"
    gateway.add_user(name, "steer-password-123")
    lines = "".join(f"p, user:{name}, experiment:{i}, read\n" for i in ids[:4])
    gateway.cli("policy", "import", "-", input=lines)
    token = gateway.token(name, "steer")
    status, first = call(gateway, token, {"max_results": 2})
    assert status == 200 and first.get("next_page_token")
    gateway.cli("policy", "add", "p", f"user:{name}", "experiment_name:/other/*", "read")
    status, second = call(
        gateway, token, {"max_results": 2, "page_token": first["next_page_token"]}
    )
    assert status == 400 and "start the search again" in second["message"]


def test_an_mlflow_that_cannot_filter_by_id_gives_the_same_answers(
    oldest_mlflow_server: MlflowServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    """MLflow 3.16 refuses `attribute.experiment_id` in a filter (400): the gateway must not pass
    that refusal on, but search item by item, first page, later pages and later callers alike."""
    gateway = start_gateway(oldest_mlflow_server.url, redis_server.db_url(5), tmp_path)
    try:
        old = make_world(gateway)
        body = {"filter": f"name LIKE '{old.prefix}%'"}
        expected = visible(gateway, body, old.granted)
        assert len(expected) == 8
        for page_size in (2, 100):
            got = every_page(gateway, old.steered_token, {**body, "max_results": page_size})
            assert [e["experiment_id"] for e in got] == expected, page_size
        nothing = user_with(gateway, "registered_model:nothing-here read")
        status, page = call(gateway, nothing, {"max_results": 5})
        assert status == 200 and page.get("experiments", []) == [] and "next_page_token" not in page
    finally:
        gateway.stop()
