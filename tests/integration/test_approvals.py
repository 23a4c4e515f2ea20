"""Promotion that needs a second person, against the real MLflow through a real gateway: a held
request changes nothing, a second person's approval makes it (once), with tags and audit events;
rejection, expiry, a version changed meanwhile, the CLI; and with nothing configured, nothing
changes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.helpers import Gateway, MlflowServer, RedisServer, run_cli, start_gateway
from tests.integration.test_authn import basic, request

POLICY = """
p, group:team-a, registered_model:appr-*, edit
p, group:team-a, registered_model:appr-*, request:production
p, group:team-a, registered_model:appr-*, request:alias:champion
p, group:team-a, registered_model:appr-*, promote:staging
p, group:askers, registered_model:appr-*, read
p, group:askers, registered_model:appr-*, request:production
p, group:release, registered_model:*, read
p, group:release, registered_model:*, promote:production
p, group:release, registered_model:*, promote:staging
p, group:release, registered_model:*, alias:champion
"""
USERS = {
    "alice": ("alice-password-1", "team-a"),
    "sam": ("sam-password-123", "askers"),
    "rita": ("rita-password-12", "release"),
    "rex": ("rex-password-123", "release"),
    "bob": ("bob-password-123", ""),
}
APPROVAL_HEADER = "X-Gateway-Approval"
TRANSITION = "/api/2.0/mlflow/model-versions/transition-stage"
ALIAS = "/api/2.0/mlflow/registered-models/alias"


def setup_gateway(gw: Gateway, workdir: Any) -> None:
    for name, (password, group) in USERS.items():
        gw.add_user(name, password, *([group] if group else []))
    (workdir / "policy.csv").write_text(POLICY)
    gw.cli("policy", "import", str(workdir / "policy.csv"))


@pytest.fixture(scope="module")
def gw(
    mlflow_server: MlflowServer, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    data = tmp_path_factory.mktemp("gw-approvals")
    gateway = start_gateway(
        mlflow_server.url,
        redis_server.db_url(5),
        data,
        GATEWAY_APPROVAL_REQUIRED="Production, alias:champion",
    )
    setup_gateway(gateway, data)
    yield gateway
    gateway.stop()


def auth(gw: Gateway, user: str) -> dict[str, str]:
    return gw.auth if user == "admin" else basic(user, USERS[user][0])


def call(
    gw: Gateway, user: str, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, dict[str, str], dict[str, Any]]:
    headers = {**auth(gw, user), "Content-Type": "application/json"}
    data = json.dumps(body).encode() if body is not None else None
    status, response_headers, raw = request(gw, path, method, headers, data)
    return status, response_headers, json.loads(raw) if raw else {}


_RUNS: dict[int, str] = {}


def a_run(gw: Gateway) -> str:
    """One run of the admin's per gateway, the source of every version."""
    if gw.port not in _RUNS:
        status, _, body = call(
            gw, "admin", "POST", "/api/2.0/mlflow/experiments/create", {"name": f"appr-{gw.port}"}
        )
        assert status == 200, body
        status, _, body = call(
            gw, "admin", "POST", "/api/2.0/mlflow/runs/create",
            {"experiment_id": body["experiment_id"]},
        )  # fmt: skip
        assert status == 200, body
        _RUNS[gw.port] = body["run"]["info"]["run_id"]
    return _RUNS[gw.port]


def new_version(gw: Gateway, model: str) -> str:
    """A registered model (created by the admin the first time) and a new version of it."""
    status, _, _ = call(gw, "admin", "GET", "/api/2.0/mlflow/registered-models/get?name=" + model)
    if status == 404:
        status, _, _ = call(
            gw, "admin", "POST", "/api/2.0/mlflow/registered-models/create", {"name": model}
        )
        assert status == 200
    status, _, body = call(
        gw,
        "admin",
        "POST",
        "/api/2.0/mlflow/model-versions/create",
        {"name": model, "source": f"runs:/{a_run(gw)}/model", "run_id": a_run(gw)},
    )
    assert status == 200, body
    return str(body["model_version"]["version"])


def version_of(gw: Gateway, model: str, version: str) -> dict[str, Any]:
    query = urlencode({"name": model, "version": version})
    status, _, body = call(gw, "admin", "GET", f"/api/2.0/mlflow/model-versions/get?{query}")
    assert status == 200, body
    return dict(body["model_version"])


def tags_of(gw: Gateway, model: str, version: str) -> dict[str, str]:
    return {t["key"]: t["value"] for t in version_of(gw, model, version).get("tags", [])}


def ask_production(gw: Gateway, user: str, model: str, version: str) -> str:
    """``user`` asks for Production: held, never forwarded; the approval's id."""
    status, headers, body = call(
        gw, user, "POST", TRANSITION, {"name": model, "version": version, "stage": "Production"}
    )
    assert status == 403, body
    assert body["error_code"] == "PERMISSION_DENIED"
    approval_id = headers[APPROVAL_HEADER]
    assert approval_id in body["message"] and "approve" in body["message"]
    return approval_id


def approvals_of(gw: Gateway, user: str, **query: str) -> dict[str, dict[str, Any]]:
    suffix = f"?{urlencode(query)}" if query else ""
    status, _, body = call(gw, user, "GET", "/.gateway/api/approvals" + suffix)
    assert status == 200, body
    return {a["id"]: a for a in body["approvals"]}


def decide(
    gw: Gateway, user: str, approval_id: str, verb: str, comment: str | None = None
) -> tuple[int, dict[str, Any]]:
    body = {"comment": comment} if comment else {}
    status, _, answer = call(
        gw, user, "POST", f"/.gateway/api/approvals/{approval_id}/{verb}", body
    )
    return status, answer


def security_events(gw: Gateway, kind: str, approval_id: str) -> list[dict[str, Any]]:
    """The successful security events of ``kind`` about one approval (the audit writer batches:
    waits a little for the first)."""
    found: list[dict[str, Any]] = []
    for _ in range(40):
        status, _, body = call(gw, "admin", "GET", "/.gateway/api/audit?type=security&limit=1000")
        assert status == 200, body
        found = [
            e
            for e in body["events"]
            if e.get("event") == kind
            and e["outcome"] == "success"
            and e["details"].get("approval") == approval_id
        ]
        if found:
            return found
        time.sleep(0.25)
    return found


def test_a_held_request_changes_nothing_in_mlflow(gw: Gateway) -> None:
    version = new_version(gw, "appr-held")
    approval_id = ask_production(gw, "alice", "appr-held", version)
    assert version_of(gw, "appr-held", version)["current_stage"] == "None"
    mine = approvals_of(gw, "alice")
    assert mine[approval_id]["status"] == "pending"
    assert mine[approval_id]["requested_by"] == "alice"
    assert mine[approval_id]["stage"] == "Production"
    assert mine[approval_id]["may_decide"] is False
    # Someone with no right to ask gets the plain refusal, and nothing is held.
    status, headers, _ = call(
        gw, "bob", "POST", TRANSITION, {"name": "appr-held", "version": version, "stage": "prod"}
    )
    assert status in (403, 404) and APPROVAL_HEADER not in headers
    # Stages that need no approval go through as before.
    status, _, body = call(
        gw,
        "rita",
        "POST",
        TRANSITION,
        {"name": "appr-held", "version": version, "stage": "staging"},
    )
    assert status == 200 and body["model_version"]["current_stage"] == "Staging"


def test_a_request_right_only_allows_asking(gw: Gateway) -> None:
    version = new_version(gw, "appr-ask")
    approval_id = ask_production(gw, "sam", "appr-ask", version)
    other = ask_production(gw, "alice", "appr-ask", version)
    # sam may ask but not approve someone else's request.
    status, body = decide(gw, "sam", other, "approve")
    assert status == 403 and "promote:production" in body["message"]
    # sam sees his own request, not alice's (he could not decide it).
    assert approval_id in approvals_of(gw, "sam") and other not in approvals_of(gw, "sam")
    # rita sees both waiting for her.
    waiting = approvals_of(gw, "rita", status="pending")
    assert waiting[approval_id]["may_decide"] and waiting[other]["may_decide"]
    assert version_of(gw, "appr-ask", version)["current_stage"] == "None"


def test_nobody_approves_their_own_request_admins_included(gw: Gateway) -> None:
    version = new_version(gw, "appr-self")
    approval_id = ask_production(gw, "rita", "appr-self", version)
    status, body = decide(gw, "rita", approval_id, "approve")
    assert status == 403 and "another person" in body["message"]
    admin_id = ask_production(gw, "admin", "appr-self", version)
    status, body = decide(gw, "admin", admin_id, "approve")
    assert status == 403 and "another person" in body["message"]
    assert version_of(gw, "appr-self", version)["current_stage"] == "None"
    # The admin may approve someone else's: rita's.
    status, body = decide(gw, "admin", approval_id, "approve")
    assert status == 200, body
    assert version_of(gw, "appr-self", version)["current_stage"] == "Production"


def test_a_second_person_approves_and_it_is_recorded(gw: Gateway) -> None:
    version = new_version(gw, "appr-ok")
    approval_id = ask_production(gw, "alice", "appr-ok", version)
    status, body = decide(gw, "rita", approval_id, "approve", "looks good")
    assert status == 200, body
    assert body["approval"]["status"] == "approved"
    assert version_of(gw, "appr-ok", version)["current_stage"] == "Production"
    tags = tags_of(gw, "appr-ok", version)
    assert tags["mlflow_gateway.approval.requested_by"] == "alice"
    assert tags["mlflow_gateway.approval.approved_by"] == "rita"
    assert tags["mlflow_gateway.approval.approval_id"] == approval_id
    # The requester sees the outcome.
    seen = approvals_of(gw, "alice")[approval_id]
    assert (seen["status"], seen["decided_by"], seen["comment"]) == (
        "approved",
        "rita",
        "looks good",
    )
    [event] = security_events(gw, "approval_approved", approval_id)
    assert event["actor"]["subject"] == "rita"
    assert event["details"]["requested_by"] == "alice"
    assert event["details"]["after"]["status"] == "approved"
    [asked] = security_events(gw, "approval_requested", approval_id)
    assert asked["actor"]["subject"] == "alice"
    assert asked["details"]["resource"] == "registered_model:appr-ok"
    # Approving again: it is no longer pending.
    status, body = decide(gw, "rex", approval_id, "approve")
    assert status == 409 and "approved" in body["message"]


def test_the_gateways_tags_cannot_be_forged(gw: Gateway) -> None:
    version = new_version(gw, "appr-forge")
    status, _, body = call(
        gw,
        "alice",
        "POST",
        "/api/2.0/mlflow/model-versions/set-tag",
        {
            "name": "appr-forge",
            "version": version,
            "key": "mlflow_gateway.approval.approved_by",
            "value": "rita",
        },
    )
    assert status == 403, body
    assert "mlflow_gateway.approval.approved_by" not in tags_of(gw, "appr-forge", version)


def test_protected_aliases_wait_for_approval_too(gw: Gateway) -> None:
    version = new_version(gw, "appr-alias")
    body = {"name": "appr-alias", "alias": "Champion", "version": version}
    status, headers, answer = call(gw, "alice", "POST", ALIAS, body)
    assert status == 403, answer
    approval_id = headers[APPROVAL_HEADER]
    assert "aliases" not in version_of(gw, "appr-alias", version) or not version_of(
        gw, "appr-alias", version
    ).get("aliases")
    status, answer = decide(gw, "rita", approval_id, "approve")
    assert status == 200, answer
    assert "Champion" in version_of(gw, "appr-alias", version).get("aliases", [])
    assert tags_of(gw, "appr-alias", version)["mlflow_gateway.approval.requested_by"] == "alice"
    # Deleting it is held as well.
    status, headers, _ = call(
        gw, "alice", "DELETE", ALIAS, {"name": "appr-alias", "alias": "Champion"}
    )
    assert status == 403 and APPROVAL_HEADER in headers
    assert "Champion" in version_of(gw, "appr-alias", version).get("aliases", [])


def test_a_rejected_request_is_never_made(gw: Gateway) -> None:
    version = new_version(gw, "appr-no")
    approval_id = ask_production(gw, "alice", "appr-no", version)
    status, body = decide(gw, "rita", approval_id, "reject", "not this one")
    assert status == 200 and body["approval"]["status"] == "rejected"
    assert version_of(gw, "appr-no", version)["current_stage"] == "None"
    seen = approvals_of(gw, "alice")[approval_id]
    assert (seen["status"], seen["decided_by"], seen["comment"]) == (
        "rejected",
        "rita",
        "not this one",
    )
    status, body = decide(gw, "rex", approval_id, "approve")
    assert status == 409 and "rejected" in body["message"]
    assert version_of(gw, "appr-no", version)["current_stage"] == "None"


def test_a_version_changed_meanwhile_fails_cleanly(gw: Gateway) -> None:
    deleted = new_version(gw, "appr-gone")
    moved = new_version(gw, "appr-gone")
    first = ask_production(gw, "alice", "appr-gone", deleted)
    second = ask_production(gw, "alice", "appr-gone", moved)
    status, _, body = call(
        gw,
        "admin",
        "DELETE",
        "/api/2.0/mlflow/model-versions/delete",
        {"name": "appr-gone", "version": deleted},
    )
    assert status == 200, body
    status, _, body = call(
        gw, "rita", "POST", TRANSITION, {"name": "appr-gone", "version": moved, "stage": "Staging"}
    )
    assert status == 200, body
    status, body = decide(gw, "rita", first, "approve")
    assert status == 409 and "no longer exists" in body["message"], body
    status, body = decide(gw, "rita", second, "approve")
    assert status == 409 and "moved from None to Staging" in body["message"], body
    assert version_of(gw, "appr-gone", moved)["current_stage"] == "Staging"
    seen = approvals_of(gw, "alice")
    assert seen[first]["status"] == seen[second]["status"] == "failed"
    assert "no longer exists" in seen[first]["error"]


def test_two_approvals_at_once_execute_once(gw: Gateway) -> None:
    version = new_version(gw, "appr-race")
    approval_id = ask_production(gw, "alice", "appr-race", version)
    answers: dict[str, int] = {}
    start = threading.Barrier(2)

    def approve(user: str) -> None:
        start.wait()
        answers[user] = decide(gw, user, approval_id, "approve")[0]

    threads = [threading.Thread(target=approve, args=(u,)) for u in ("rita", "rex")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers.values()) == [200, 409], answers
    winner = next(u for u, s in answers.items() if s == 200)
    assert tags_of(gw, "appr-race", version)["mlflow_gateway.approval.approved_by"] == winner
    time.sleep(1)
    assert len(security_events(gw, "approval_approved", approval_id)) == 1


def test_the_cli_lists_approves_and_rejects(gw: Gateway) -> None:
    version = new_version(gw, "appr-cli")
    approve_id = ask_production(gw, "alice", "appr-cli", version)
    reject_id = ask_production(gw, "alice", "appr-cli", version)
    env = {**gw.env, "MLFLOW_TRACKING_URI": gw.url}
    rita = {**env, "MLFLOW_TRACKING_USERNAME": "rita", "MLFLOW_TRACKING_PASSWORD": USERS["rita"][0]}
    alice = {
        **env,
        "MLFLOW_TRACKING_USERNAME": "alice",
        "MLFLOW_TRACKING_PASSWORD": USERS["alice"][0],
    }
    listed = run_cli("approvals", "list", "--status", "pending", env=rita)
    assert listed.returncode == 0, listed.stderr
    assert approve_id in listed.stdout and reject_id in listed.stdout
    own = run_cli("approvals", "approve", approve_id, env=alice)
    assert own.returncode != 0 and "another person" in own.stderr
    done = run_cli("approvals", "approve", approve_id, "--comment", "ship it", env=rita)
    assert done.returncode == 0, done.stderr
    assert "approved" in done.stdout
    no = run_cli("approvals", "reject", reject_id, env=rita)
    assert no.returncode == 0, no.stderr
    mine = run_cli("approvals", "list", "--json", env=alice)
    outcomes = {json.loads(line)["id"]: json.loads(line) for line in mine.stdout.splitlines()}
    assert outcomes[approve_id]["status"] == "approved"
    assert outcomes[approve_id]["comment"] == "ship it"
    assert outcomes[reject_id]["status"] == "rejected"
    assert version_of(gw, "appr-cli", version)["current_stage"] == "Production"


def test_a_request_nobody_approves_expires(
    mlflow_server: MlflowServer, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    data = tmp_path_factory.mktemp("gw-approvals-ttl")
    gw = start_gateway(
        mlflow_server.url,
        redis_server.db_url(6),
        data,
        GATEWAY_APPROVAL_REQUIRED="production",
        GATEWAY_APPROVAL_TTL="2s",
    )
    try:
        setup_gateway(gw, data)
        version = new_version(gw, "appr-late")
        approval_id = ask_production(gw, "alice", "appr-late", version)
        time.sleep(2.5)
        assert approvals_of(gw, "alice")[approval_id]["status"] == "expired"
        status, body = decide(gw, "rita", approval_id, "approve")
        assert status == 409 and "expired" in body["message"]
        assert version_of(gw, "appr-late", version)["current_stage"] == "None"
    finally:
        gw.stop()


def test_nothing_configured_changes_nothing(gateway: Gateway) -> None:
    """The session gateway has GATEWAY_APPROVAL_REQUIRED empty: promotion goes straight through."""
    version = new_version(gateway, "appr-unset")
    status, headers, body = call(
        gateway,
        "admin",
        "POST",
        TRANSITION,
        {"name": "appr-unset", "version": version, "stage": "Production"},
    )
    assert status == 200 and APPROVAL_HEADER not in headers, body
    assert body["model_version"]["current_stage"] == "Production"
    status, _, body = call(gateway, "admin", "GET", "/.gateway/api/approvals")
    assert status == 200 and body["approvals"] == []


def test_taking_a_version_out_of_production_waits_for_approval_too(gw: Gateway) -> None:
    version = new_version(gw, "appr-out")
    first = ask_production(gw, "alice", "appr-out", version)
    assert decide(gw, "rita", first, "approve")[0] == 200
    status, headers, body = call(
        gw,
        "alice",
        "POST",
        TRANSITION,
        {"name": "appr-out", "version": version, "stage": "Staging"},
    )
    assert status == 403 and APPROVAL_HEADER in headers, body
    approval_id = headers[APPROVAL_HEADER]
    held = approvals_of(gw, "alice")[approval_id]
    assert set(held["rights"]) == {"promote:production", "promote:staging"}
    assert version_of(gw, "appr-out", version)["current_stage"] == "Production"
    # Someone with no right on the model is told nothing of the approval.
    assert decide(gw, "bob", approval_id, "approve")[0] == 404
    status, body = decide(gw, "rex", approval_id, "approve")
    assert status == 200, body
    assert version_of(gw, "appr-out", version)["current_stage"] == "Staging"
