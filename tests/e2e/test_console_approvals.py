"""The console's Approvals page in a real browser: alice asks for Production (held), rita sees it
waiting for her, approves it with a comment and the version is in Production; a second request is
rejected; alice sees both outcomes and can decide neither of her own. The page is strict and
labelled like every console page."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser import new_offline_context
from tests.helpers import Gateway, MlflowServer, RedisServer, start_gateway
from tests.integration.test_authn import basic, request

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

PAGE_TIMEOUT_MS = 30_000
REDIS_DB = 15
PASSWORDS = {"alice": "alice-password-1", "rita": "rita-password-12"}
MODEL = "console-approvals-churn"


@pytest.fixture(scope="module")
def gw(
    mlflow_server: MlflowServer, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    gateway = start_gateway(
        mlflow_server.url,
        redis_server.db_url(REDIS_DB),
        tmp_path_factory.mktemp("gw-console-approvals"),
        GATEWAY_APPROVAL_REQUIRED="production",
    )
    gateway.add_user("alice", PASSWORDS["alice"], "team-a")
    gateway.add_user("rita", PASSWORDS["rita"], "release")
    gateway.cli("policy", "add", "p", "group:team-a", f"registered_model:{MODEL}", "read")
    gateway.cli(
        "policy", "add", "p", "group:team-a", f"registered_model:{MODEL}", "request:production"
    )
    gateway.cli("policy", "add", "p", "group:release", "registered_model:*", "promote:production")
    yield gateway
    gateway.stop()


def _api(
    gw: Gateway, method: str, path: str, body: dict[str, Any], headers: dict[str, str]
) -> tuple[int, dict[str, str], dict[str, Any]]:
    status, answer_headers, raw = request(
        gw, path, method, {**headers, "Content-Type": "application/json"}, json.dumps(body).encode()
    )
    return status, answer_headers, json.loads(raw) if raw else {}


@pytest.fixture(scope="module")
def versions(gw: Gateway) -> list[str]:
    """Two versions of the model, made by the admin."""
    status, _, body = _api(
        gw, "POST", "/api/2.0/mlflow/experiments/create", {"name": MODEL}, gw.auth
    )
    assert status == 200, body
    status, _, body = _api(
        gw, "POST", "/api/2.0/mlflow/runs/create", {"experiment_id": body["experiment_id"]}, gw.auth
    )
    run = body["run"]["info"]["run_id"]
    _api(gw, "POST", "/api/2.0/mlflow/registered-models/create", {"name": MODEL}, gw.auth)
    made = []
    for _ in range(2):
        status, _, body = _api(
            gw,
            "POST",
            "/api/2.0/mlflow/model-versions/create",
            {"name": MODEL, "source": f"runs:/{run}/model", "run_id": run},
            gw.auth,
        )
        assert status == 200, body
        made.append(str(body["model_version"]["version"]))
    return made


def _ask(gw: Gateway, version: str) -> str:
    status, headers, body = _api(
        gw,
        "POST",
        "/api/2.0/mlflow/model-versions/transition-stage",
        {"name": MODEL, "version": version, "stage": "Production"},
        basic("alice", PASSWORDS["alice"]),
    )
    assert status == 403, body
    return headers["X-Gateway-Approval"]


def _stage(gw: Gateway, version: str) -> str:
    query = urllib.parse.urlencode({"name": MODEL, "version": version})
    status, _, raw = request(gw, f"/api/2.0/mlflow/model-versions/get?{query}", headers=gw.auth)
    assert status == 200
    return str(json.loads(raw)["model_version"]["current_stage"])


def _signed_in(browser: Browser, gw: Gateway, user: str) -> Page:
    context = new_offline_context(browser, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    page.goto(f"{gw.url}/.gateway/login?next={urllib.parse.quote('/.gateway/admin/approvals')}")
    page.fill("#username", user)
    page.fill("#password", PASSWORDS[user])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{gw.url}/.gateway/admin/approvals")
    return page


def test_a_second_person_approves_and_rejects_from_the_console(
    browser: Browser, gw: Gateway, versions: list[str]
) -> None:
    approved_id, rejected_id = _ask(gw, versions[0]), _ask(gw, versions[1])
    rita = _signed_in(browser, gw, "rita")
    problems: list[str] = []
    rita.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    rita.reload()
    waiting = rita.get_by_role("table", name="Waiting for your decision").inner_text()
    assert approved_id in waiting and rejected_id in waiting
    assert f"move {MODEL} version {versions[0]} to Production" in waiting and "alice" in waiting

    rita.get_by_label(f"Comment on {approved_id}").fill("metrics look right")
    rita.get_by_role("button", name=f"Approve {approved_id}").click()
    rita.wait_for_url(f"{gw.url}/.gateway/admin/approvals")
    notice = rita.locator("[role=status]").first.inner_text()
    assert f"Approved: move {MODEL} version {versions[0]} to Production is done" in notice
    assert _stage(gw, versions[0]) == "Production"

    rita.get_by_role("button", name=f"Reject {rejected_id}").click()
    rita.wait_for_url(f"{gw.url}/.gateway/admin/approvals")
    assert "Rejected:" in rita.locator("[role=status]").first.inner_text()
    assert _stage(gw, versions[1]) == "None"
    assert "Nothing is waiting for your decision." in rita.content()
    assert problems == []

    # alice sees what became of her requests, and has nothing to decide.
    alice = _signed_in(browser, gw, "alice")
    mine = alice.get_by_role("table", name="My requests")
    row = mine.locator("tr", has_text=approved_id).inner_text()
    assert "approved" in row and "rita" in row and "metrics look right" in row
    assert "rejected" in mine.locator("tr", has_text=rejected_id).inner_text()
    assert alice.get_by_role("button", name=f"Approve {approved_id}").count() == 0
    alice.context.close()
    rita.context.close()


def test_a_requester_cannot_approve_their_own_request_from_the_console(
    browser: Browser, gw: Gateway, versions: list[str]
) -> None:
    approval_id = _ask(gw, versions[1])
    alice = _signed_in(browser, gw, "alice")
    assert alice.get_by_role("button", name=f"Approve {approval_id}").count() == 0
    # A form posted by hand is refused all the same, with the reason.
    csrf = alice.context.request.get(f"{gw.url}/.gateway/api/me").json()["csrf_token"]
    answer = alice.context.request.post(
        f"{gw.url}/.gateway/admin/approvals/{approval_id}/approve",
        form={"csrf_token": csrf, "back": "/.gateway/admin/approvals"},
        headers={"Origin": gw.url},
        max_redirects=0,
    )
    assert answer.status == 303
    alice.goto(f"{gw.url}/.gateway/admin/approvals")
    assert "another person" in alice.locator("[role=alert]").first.inner_text()
    assert _stage(gw, versions[1]) == "None"
    alice.context.close()


def test_the_approvals_page_is_strict_and_labelled(
    browser: Browser, gw: Gateway, versions: list[str]
) -> None:
    _ask(gw, versions[1])
    rita = _signed_in(browser, gw, "rita")
    response = rita.goto(f"{gw.url}/.gateway/admin/approvals")
    assert response is not None and response.status == 200
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    found = rita.evaluate(
        """() => ({
            inline: [...document.scripts].filter(s => !s.src).length,
            unlabelled: [...document.querySelectorAll('input, select, textarea')]
                .filter(el => el.type !== 'hidden')
                .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
                .map(el => el.name || el.id),
        })"""
    )
    assert found == {"inline": 0, "unlabelled": []}
    assert rita.get_by_role("link", name="Approvals").get_attribute("aria-current") == "page"
    rita.context.close()
