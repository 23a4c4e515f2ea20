"""The admin JSON API on the real stack: who may call it, what each change does to real MLflow
requests, that bad input changes nothing, and that every change is audited with before and after."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import Gateway, MlflowServer, RedisServer, create_experiment, start_gateway
from tests.integration.test_authn import basic, bearer, request

API = "/.gateway/api"
PASSWORD = "a-long-password-1"


def call(
    gw: Gateway,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> tuple[int, Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    status, _, answer = request(
        gw,
        API + path,
        method,
        headers={"Content-Type": "application/json", **(gw.auth if headers is None else headers)},
        body=data,
    )
    try:
        return status, json.loads(answer)
    except ValueError:
        return status, answer.decode()


@pytest.fixture(scope="module")
def gw(
    mlflow_server: MlflowServer, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    gateway = start_gateway(
        mlflow_server.url,
        redis_server.db_url(9),
        tmp_path_factory.mktemp("gw-admin-api"),
        GATEWAY_LOCKOUT_IP_THRESHOLD="1000",
    )
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def experiment(gw: Gateway) -> str:
    return create_experiment(gw, f"admin-api-{time.time_ns()}")


def get_experiment(gw: Gateway, experiment_id: str, headers: dict[str, str]) -> int:
    path = f"/api/2.0/mlflow/experiments/get?experiment_id={experiment_id}"
    return request(gw, path, headers=headers)[0]


def security_events(gw: Gateway, kind: str) -> list[dict[str, Any]]:
    status, page = call(gw, "GET", "/audit?type=security&limit=200")
    assert status == 200
    return [e for e in page["events"] if e.get("event") == kind]


def wait_for_event(gw: Gateway, kind: str, **details: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for event in security_events(gw, kind):
            if all(event["details"].get(k) == v for k, v in details.items()):
                return event
        time.sleep(0.2)
    raise AssertionError(f"no {kind} event with {details}")


# -- the document and who may call --------------------------------------------------------------


def test_openapi_document_is_public_and_names_every_operation(gw: Gateway) -> None:
    status, doc = call(gw, "GET", "/openapi.json", headers={})
    assert status == 200
    assert doc["openapi"].startswith("3.")
    operations = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    for expected in [
        ("GET", "/.gateway/api/me"),
        ("POST", "/.gateway/api/me/tokens"),
        ("GET", "/.gateway/api/users"),
        ("PATCH", "/.gateway/api/users/{username}"),
        ("PUT", "/.gateway/api/groups/{group}/members/{username}"),
        ("POST", "/.gateway/api/policy/rules"),
        ("POST", "/.gateway/api/policy/import"),
        ("GET", "/.gateway/api/policy/explain"),
        ("GET", "/.gateway/api/policy/who-can"),
        ("DELETE", "/.gateway/api/tokens/{token_id}"),
        ("GET", "/.gateway/api/audit"),
        ("GET", "/.gateway/api/audit/export"),
        ("GET", "/.gateway/api/audit/verify"),
    ]:
        assert expected in operations


def test_without_credentials_401_and_non_admins_403(gw: Gateway) -> None:
    gw.add_user("nadia", PASSWORD)
    status, body = call(gw, "GET", "/users", headers={})
    assert status == 401 and body["error_code"] == "UNAUTHENTICATED"
    for method, path in [
        ("GET", "/users"),
        ("GET", "/policy"),
        ("GET", "/audit"),
        ("POST", "/policy/rules"),
        ("GET", "/tokens"),
    ]:
        status, body = call(gw, method, path, {}, headers=basic("nadia", PASSWORD))
        assert status == 403, (method, path)
        assert body["error_code"] == "PERMISSION_DENIED"
    status, me = call(gw, "GET", "/me", headers=basic("nadia", PASSWORD))
    assert status == 200
    assert me["username"] == "nadia" and me["admin"] is False
    # Every signed-in person may create experiments: the bootstrap rule shows among their rights.
    assert any(
        r["object"] == "experiment_name:*" and r["via"] == "group:authenticated"
        for r in me["rights"]
    )


def test_unknown_method_on_a_known_path_is_405(gw: Gateway) -> None:
    status, headers, body = request(gw, API + "/users", "DELETE", gw.auth)
    assert status == 405
    assert headers["Allow"] == "GET, POST"
    assert json.loads(body)["error_code"] == "METHOD_NOT_ALLOWED"


# -- users and groups ---------------------------------------------------------------------------


def test_users_lifecycle_takes_effect_on_the_next_request(gw: Gateway, experiment: str) -> None:
    status, created = call(
        gw, "POST", "/users", {"username": "uma", "password": PASSWORD, "groups": ["readers"]}
    )
    assert status == 201
    assert created["user"] == {
        **created["user"],
        "username": "uma",
        "groups": ["readers"],
        "disabled": False,
        "admin": False,
        "local_password": True,
    }
    assert call(gw, "POST", "/users", {"username": "uma", "password": PASSWORD})[0] == 409

    uma = basic("uma", PASSWORD)
    assert get_experiment(gw, experiment, uma) == 404  # no right on it: as if missing
    # A rule for her group: she reads the experiment through the real MLflow.
    status, _ = call(
        gw,
        "POST",
        "/policy/rules",
        {"subject": "group:readers", "object": f"experiment:{experiment}", "action": "read"},
    )
    assert status == 200
    assert get_experiment(gw, experiment, uma) == 200

    # Disabled: refused at once, password and tokens alike.
    token = gw.token("uma", "uma-laptop")
    assert call(gw, "PATCH", "/users/uma", {"disabled": True})[1]["user"]["disabled"] is True
    assert get_experiment(gw, experiment, uma) == 401
    assert get_experiment(gw, experiment, bearer(token)) == 401
    call(gw, "PATCH", "/users/uma", {"disabled": False, "password": "another-password-2"})
    assert get_experiment(gw, experiment, uma) == 401
    assert get_experiment(gw, experiment, basic("uma", "another-password-2")) == 200

    # Group membership removed: the group's rule no longer reaches her.
    status, group = call(gw, "DELETE", "/groups/readers/members/uma")
    assert status == 200 and group["group"]["members"] == []
    assert get_experiment(gw, experiment, basic("uma", "another-password-2")) == 404
    status, group = call(gw, "PUT", "/groups/readers/members/uma")
    assert status == 200 and group["group"]["members"] == ["uma"]
    assert get_experiment(gw, experiment, basic("uma", "another-password-2")) == 200

    event = wait_for_event(gw, "user_updated", user="uma")
    assert event["actor"]["subject"] == "admin"
    assert "before" in event["details"] and "after" in event["details"]
    event = wait_for_event(gw, "group_member_removed", user="uma", group="readers")
    assert event["details"]["before"] == {"groups": ["readers"]}
    assert event["details"]["after"] == {"groups": []}


def test_admins_cannot_lock_themselves_out(gw: Gateway) -> None:
    for change in ({"disabled": True}, {"admin": False}):
        status, body = call(gw, "PATCH", "/users/admin", change)
        assert status == 409, change
        assert "yourself" in body["message"]
    assert call(gw, "GET", "/users/admin")[1]["user"]["disabled"] is False


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"username": "bad name", "password": PASSWORD}, "username"),
        ({"username": "okname", "password": "short"}, "12 characters"),
        ({"username": "okname", "password": PASSWORD, "colour": "red"}, "unknown field"),
        ({"username": "okname", "admin": "yes"}, "true or false"),
        ({"password": PASSWORD}, "required"),
    ],
)
def test_bad_user_input_is_400_and_changes_nothing(gw: Gateway, body: dict, fragment: str) -> None:
    before = call(gw, "GET", "/users")[1]
    status, answer = call(gw, "POST", "/users", body)
    assert status == 400
    assert answer["error_code"] == "INVALID_PARAMETER_VALUE"
    assert fragment in answer["message"]
    assert call(gw, "GET", "/users")[1] == before


def test_non_json_body_is_400(gw: Gateway) -> None:
    status, answer = call(gw, "POST", "/policy/rules", raw=b"subject=user:x")
    assert status == 400 and "JSON" in answer["message"]


# -- policy -------------------------------------------------------------------------------------


def test_policy_rules_explain_and_who_can(gw: Gateway, experiment: str) -> None:
    gw.add_user("vic", PASSWORD, "analysts")
    rule = {"subject": "group:analysts", "object": f"experiment:{experiment}", "action": "edit"}
    status, answer = call(gw, "POST", "/policy/rules", rule)
    assert status == 200 and answer["changed"] is True
    assert call(gw, "POST", "/policy/rules", rule)[1]["changed"] is False

    status, listing = call(gw, "GET", "/policy?subject=analysts")
    assert status == 200
    assert {**rule, "effect": "allow", "expires_at": None} in listing["rules"]

    status, why = call(
        gw, "GET", f"/policy/explain?user=vic&object=experiment:{experiment}&action=read"
    )
    assert status == 200
    assert why["allowed"] is True
    assert why["rule"] == {**rule, "effect": "allow", "expires_at": None}
    # Judged by id and name, as real requests are.
    assert why["names"][0] == f"experiment:{experiment}"
    assert why["names"][1].startswith("experiment_name:admin-api-")

    status, who = call(gw, "GET", f"/policy/who-can?object=experiment:{experiment}&action=edit")
    subjects = {h["subject"] for h in who["holders"]}
    assert {"group:analysts", "user:vic", "role:admin"} <= subjects

    # A deny for vic alone wins over the group's allow.
    deny = {
        "subject": "user:vic",
        "object": f"experiment:{experiment}",
        "action": "edit",
        "effect": "deny",
    }
    call(gw, "POST", "/policy/rules", deny)
    why = call(gw, "GET", f"/policy/explain?user=vic&object=experiment:{experiment}&action=edit")[1]
    assert why["allowed"] is False and why["rule"] == {**deny, "expires_at": None}
    assert call(gw, "POST", "/policy/rules/delete", deny)[0] == 200
    assert call(gw, "POST", "/policy/rules/delete", deny)[0] == 404

    event = wait_for_event(
        gw, "policy_removed", rule=f"p, user:vic, experiment:{experiment}, edit, deny"
    )
    assert event["details"]["before"] and event["details"]["after"] is None


def test_the_admin_rule_cannot_be_removed(gw: Gateway) -> None:
    status, answer = call(
        gw, "POST", "/policy/rules/delete", {"subject": "role:admin", "object": "*", "action": "*"}
    )
    assert status == 409
    assert "cannot be removed" in answer["message"]


@pytest.mark.parametrize(
    "rule",
    [
        {"subject": "bob", "object": "experiment:1", "action": "read"},
        {"subject": "user:bob", "object": "experiment 1", "action": "read"},
        {"subject": "user:bob", "object": "experiment:1", "action": "fly"},
        {"subject": "user:bob", "object": "experiment:1", "action": "read", "effect": "maybe"},
        {"subject": "user:b,ob", "object": "experiment:1", "action": "read"},
    ],
)
def test_bad_rules_are_400_and_change_nothing(gw: Gateway, rule: dict) -> None:
    version = call(gw, "GET", "/policy")[1]["version"]
    status, answer = call(gw, "POST", "/policy/rules", rule)
    assert status == 400
    assert answer["error_code"] == "INVALID_PARAMETER_VALUE"
    assert call(gw, "GET", "/policy")[1]["version"] == version


def test_import_is_all_or_nothing_and_export_round_trips(gw: Gateway) -> None:
    version = call(gw, "GET", "/policy")[1]["version"]
    status, answer = call(
        gw, "POST", "/policy/import", {"csv": "p, user:wes, experiment:5, read\np, broken line"}
    )
    assert status == 400 and "line 2" in answer["message"]
    assert call(gw, "GET", "/policy")[1]["version"] == version
    status, answer = call(
        gw,
        "POST",
        "/policy/import",
        {"csv": "# two lines\np, user:wes, experiment:5, read\ng, user:wes, group:analysts\n"},
    )
    assert status == 200 and answer["added"] == 2 and answer["removed"] == 0
    status, _, exported = request(gw, API + "/policy/export", headers=gw.auth)
    assert status == 200
    lines = exported.decode().splitlines()
    assert "p, user:wes, experiment:5, read, allow" in lines
    assert "g, user:wes, group:analysts" in lines


# -- tokens -------------------------------------------------------------------------------------


def test_admin_revokes_anyones_token_and_it_stops_working(gw: Gateway, experiment: str) -> None:
    gw.add_user("xena", PASSWORD)
    token = gw.token("xena", "xena-ci")
    assert request(gw, API + "/me", headers=bearer(token))[0] == 200
    listed = call(gw, "GET", "/tokens?owner=xena")[1]["tokens"]
    assert [t["name"] for t in listed] == ["xena-ci"]
    assert "secret" not in json.dumps(listed)
    status, answer = call(gw, "DELETE", f"/tokens/{listed[0]['id']}")
    assert status == 200 and answer["token"]["state"] == "revoked"
    assert request(gw, API + "/me", headers=bearer(token))[0] == 401
    assert call(gw, "DELETE", "/tokens/000000000000")[0] == 404
    assert call(gw, "GET", "/tokens?state=revoked")[1]["tokens"][0]["owner"] == "xena"


def test_my_tokens_created_shown_once_and_revoked_by_their_owner_only(gw: Gateway) -> None:
    gw.add_user("yuri", PASSWORD)
    yuri = basic("yuri", PASSWORD)
    status, created = call(
        gw,
        "POST",
        "/me/tokens",
        {"name": "notebook", "expires_in": "7d", "read_only": True},
        headers=yuri,
    )
    assert status == 201
    secret = created["secret"]
    assert secret.startswith("mlgw_")
    assert created["token"]["scope"] == ["read-only"]
    mine = call(gw, "GET", "/me/tokens", headers=yuri)[1]["tokens"]
    assert [t["id"] for t in mine] == [created["token"]["id"]]
    assert secret not in json.dumps(mine)
    # Someone else's token cannot be revoked through /me.
    gw.add_user("zoe", PASSWORD)
    assert (
        call(gw, "DELETE", f"/me/tokens/{created['token']['id']}", headers=basic("zoe", PASSWORD))[
            0
        ]
        == 404
    )
    assert call(gw, "DELETE", f"/me/tokens/{created['token']['id']}", headers=yuri)[0] == 200
    assert request(gw, API + "/me", headers=bearer(secret))[0] == 401


def test_scoped_admin_tokens_do_not_administer(gw: Gateway) -> None:
    # Any scope, even read-only: administration is what a narrowed token must not reach
    # (tests/integration/test_gateway_route_scope.py has the rest).
    read_only = gw.token("admin", "admin-ro", "--scope", "read-only")
    status, answer = call(gw, "GET", "/users", headers=bearer(read_only))
    assert status == 403 and "scope" in answer["message"]
    status, answer = call(gw, "POST", "/users", {"username": "ro-made"}, headers=bearer(read_only))
    assert status == 403 and "scope" in answer["message"]
    narrow = gw.token("admin", "admin-exp", "--scope", "experiment:1")
    assert call(gw, "GET", "/users", headers=bearer(narrow))[0] == 403
    assert call(gw, "GET", "/me", headers=bearer(read_only))[0] == 200


# -- audit --------------------------------------------------------------------------------------


def test_audit_search_tail_export_and_verify(gw: Gateway) -> None:
    call(
        gw,
        "POST",
        "/policy/rules",
        {"subject": "user:auditee", "object": "experiment:9", "action": "read"},
    )
    event = wait_for_event(gw, "policy_added", rule="p, user:auditee, experiment:9, read, allow")
    assert event["details"]["after"] == "p, user:auditee, experiment:9, read, allow"
    assert event["details"]["before"] is None

    status, tail = call(gw, "GET", "/audit/tail?limit=5")
    assert status == 200 and tail["last_id"]
    request(gw, API + "/me", headers=gw.auth)
    deadline = time.monotonic() + 10
    newer: list[dict] = []
    while not newer and time.monotonic() < deadline:
        newer = call(gw, "GET", f"/audit/tail?after={tail['last_id']}&actor=admin")[1]["events"]
        time.sleep(0.2)
    assert newer and all(e["stream_id"] > tail["last_id"] for e in newer)

    status, headers, body = request(
        gw, API + "/audit/export?format=csv&type=security&since=1h", headers=gw.auth
    )
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert any(r["event"] == "policy_added" for r in rows)
    times = [r["time"] for r in rows]
    assert times == sorted(times)  # oldest first

    status, headers, body = request(
        gw, API + "/audit/export?format=jsonl&type=security", headers=gw.auth
    )
    assert status == 200
    events = [json.loads(line) for line in body.decode().splitlines()]
    assert all(e["type"] == "security" for e in events)

    status, report = call(gw, "GET", "/audit/verify")
    assert status == 200
    assert report["intact"] is True and report["events"] > 0 and report["problems"] == []

    assert call(gw, "GET", "/audit?since=yesterday")[0] == 400
    assert call(gw, "GET", "/audit?limit=0")[0] == 400
    assert call(gw, "GET", "/audit?cursor=nonsense")[0] == 400


# -- browser sessions ---------------------------------------------------------------------------


def test_session_changes_need_the_csrf_header(gw: Gateway) -> None:
    gw.add_user("sam", PASSWORD, admin=True)
    status, headers, _ = request(
        gw,
        "/.gateway/login",
        "POST",
        {"Content-Type": "application/x-www-form-urlencoded", "Origin": gw.url},
        f"username=sam&password={PASSWORD}&next=/".encode(),
    )
    assert status == 303
    cookie = headers["Set-Cookie"].split(";", 1)[0]
    session = {"Cookie": cookie, "Origin": gw.url}
    rule = {"subject": "user:sam", "object": "experiment:77", "action": "read"}
    status, answer = call(gw, "POST", "/policy/rules", rule, headers=session)
    assert status == 403 and "X-CSRF-Token" in answer["message"]
    assert call(gw, "GET", "/policy?subject=user:sam")[1]["rules"] == []
    # The console page carries the token; with it, the same call goes through.
    _, _, page = request(gw, "/.gateway/admin/account", headers={"Cookie": cookie})
    token = page.decode().split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    status, _ = call(gw, "POST", "/policy/rules", rule, headers={**session, "X-CSRF-Token": token})
    assert status == 200
    # From another origin even the right token is refused (the authentication stage's check).
    status, _ = call(
        gw,
        "POST",
        "/policy/rules",
        rule,
        headers={"Cookie": cookie, "Origin": "http://evil.test", "X-CSRF-Token": token},
    )
    assert status == 403


def test_the_token_in_use_cannot_revoke_itself(gw: Gateway) -> None:
    gw.add_user("ike", PASSWORD)
    token = gw.token("ike", "ike-ci")
    own = call(gw, "GET", "/me/tokens", headers=bearer(token))[1]["tokens"][0]["id"]
    status, answer = call(gw, "DELETE", f"/me/tokens/{own}", headers=bearer(token))
    assert status == 409 and "another" in answer["message"]
    assert call(gw, "DELETE", f"/me/tokens/{own}", headers=basic("ike", PASSWORD))[0] == 200


def test_changes_other_sites_could_forge_are_refused(gw: Gateway) -> None:
    # A form on another site can post text to us, with the browser's saved password attached.
    gw.add_user("opal", PASSWORD, admin=True)
    forged = b'{"subject": "user:mallory", "object": "*", "action": "*"}'
    status, _, body = request(
        gw,
        API + "/policy/rules",
        "POST",
        {**basic("opal", PASSWORD), "Content-Type": "text/plain", "Origin": "http://evil.test"},
        forged,
    )
    assert status == 403 and "Cross-origin" in json.loads(body)["message"]
    # Even from our own origin, a body that is not declared JSON is refused (415).
    status, _, body = request(
        gw,
        API + "/policy/rules",
        "POST",
        {**basic("opal", PASSWORD), "Content-Type": "text/plain"},
        forged,
    )
    assert status == 415
    assert call(gw, "GET", "/policy?subject=mallory")[1]["rules"] == []
    # Programs send no Origin: basic auth keeps working for them.
    status, _ = call(gw, "GET", "/users", headers=basic("opal", PASSWORD))
    assert status == 200
