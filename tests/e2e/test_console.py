"""The admin console in a real browser, with a real OpenID provider and the real MLflow UI.

An admin signs in through SSO and grants bob `read` on an experiment from the Policies page; bob,
in a second browser, now sees the experiment in the MLflow UI; the admin removes the rule and bob
no longer sees it; the audit pages show all of it. Every console page is also checked for what a
security product's pages owe their users: a strict Content-Security-Policy, no inline script,
labelled form controls, and no errors in the browser console.

With GATEWAY_SCREENSHOTS=<dir>, each console page is saved there as a PNG (`make screenshots`
writes the pictures in docs/images/).
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from gateway.devstack import free_port
from tests.browser import new_offline_context
from tests.helpers import Gateway, MlflowServer, RedisServer, create_experiment, start_gateway
from tests.integration.test_authn import request
from tests.oidc_provider import (
    OidcProvider,
    gateway_client,
    require_e2e_tools,
    start_oidc_provider,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

PAGE_TIMEOUT_MS = 30_000
CLIENT_ID = "mlflow-gateway-console"
CLIENT_SECRET = "console-client-secret-0123456789abcdef0123"
REDIS_DB = 11
USERS: list[dict[str, Any]] = [
    {
        "username": "root",
        "password": "root-idp-password",
        "email": "root@example.test",
        "groups": ["platform"],
    },
    {
        "username": "bob",
        "password": "bob-idp-password",
        "email": "bob@example.test",
        "groups": ["data-science"],
    },
]
SHOTS = os.environ.get("GATEWAY_SCREENSHOTS")


@pytest.fixture(scope="module")
def gateway_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory, gateway_port: int) -> Iterator[OidcProvider]:
    require_e2e_tools(node=True, browser=True)
    client = gateway_client(f"http://127.0.0.1:{gateway_port}", CLIENT_ID, CLIENT_SECRET)
    oidc = start_oidc_provider(tmp_path_factory.mktemp("idp-console"), [client], USERS)
    yield oidc
    oidc.stop()


@pytest.fixture(scope="module")
def gw(
    provider: OidcProvider,
    gateway_port: int,
    mlflow_server: MlflowServer,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gateway]:
    gateway = start_gateway(
        mlflow_server.url,
        redis_server.db_url(REDIS_DB),
        tmp_path_factory.mktemp("gw-console"),
        port=gateway_port,
        GATEWAY_OIDC_ISSUER=provider.issuer,
        GATEWAY_OIDC_CLIENT_ID=CLIENT_ID,
        GATEWAY_OIDC_CLIENT_SECRET=CLIENT_SECRET,
        GATEWAY_OIDC_SCOPES="openid email profile groups",
        GATEWAY_OIDC_DISPLAY_NAME="Example SSO",
        GATEWAY_LOCKOUT_IP_THRESHOLD="1000",
    )
    # The IdP's platform group are the admins; everyone may see the Default experiment, so the
    # MLflow UI always has something to show.
    gateway.cli("policy", "add", "g", "group:platform", "role:admin")
    gateway.cli("policy", "add", "p", "group:authenticated", "experiment:0", "read")
    # A little of an installation in use: a team with its rules, a member and a CI token.
    gateway.add_user("carol", "carol-password-123", "team-a", "ml")
    gateway.cli("policy", "add", "p", "group:team-a", "experiment_name:/team-a/*", "manage")
    gateway.cli("policy", "add", "p", "group:ml", "registered_model:*", "promote:staging")
    gateway.cli(
        "policy", "add", "p", "group:ml", "registered_model:*", "promote:production", "deny"
    )
    gateway.token("carol", "team-a-ci", "--scope", "experiment:0", "--expires-in", "90d")
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def experiment(gw: Gateway) -> dict[str, str]:
    name = f"churn-model-{time.time_ns()}"
    return {"id": create_experiment(gw, name), "name": name}


def _context(browser: Browser) -> BrowserContext:
    context = new_offline_context(browser, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    return context


def _sso(page: Page, gw: Gateway, username: str, password: str, next_path: str) -> None:
    page.goto(f"{gw.url}/.gateway/login?next={urllib.parse.quote(next_path)}")
    page.click("text=Sign in with Example SSO")
    page.wait_for_selector("input[name=login]")
    page.fill("input[name=login]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{gw.url}/**")


@pytest.fixture(scope="module")
def admin(browser: Browser, gw: Gateway) -> Iterator[Page]:
    context = _context(browser)
    page = context.new_page()
    _sso(page, gw, "root", "root-idp-password", "/.gateway/admin/")
    page.wait_for_url(f"{gw.url}/.gateway/admin/policies")
    yield page
    context.close()


@pytest.fixture(scope="module")
def bob(browser: Browser, gw: Gateway) -> Iterator[Page]:
    context = _context(browser)
    page = context.new_page()
    _sso(page, gw, "bob", "bob-idp-password", "/#/experiments")
    yield page
    context.close()


def _experiments_shown(page: Page, gw: Gateway) -> str:
    """The names in bob's MLflow experiments list, once it has loaded."""
    page.goto(f"{gw.url}/#/experiments")
    page.reload()
    page.get_by_text("Default", exact=True).first.wait_for()
    return page.locator("main, body").first.inner_text()


def _shot(page: Page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        # The audit pages go on for ever: their first screenful says enough.
        whole = not name.startswith("audit")
        page.screenshot(path=str(Path(SHOTS) / f"console-{name}.png"), full_page=whole)


# -- the scenario -------------------------------------------------------------------------


def test_grant_then_revoke_read_from_the_console(
    gw: Gateway, admin: Page, bob: Page, experiment: dict[str, str]
) -> None:
    assert experiment["name"] not in _experiments_shown(bob, gw)

    # The admin adds the rule with the keyboard only: type, Tab to the next field, Enter.
    admin.goto(f"{gw.url}/.gateway/admin/policies")
    admin.focus("#rule-subject")
    admin.keyboard.type("user:bob")
    admin.keyboard.press("Tab")
    admin.keyboard.type(f"experiment:{experiment['id']}")
    admin.keyboard.press("Tab")
    admin.keyboard.press("Control+A")
    admin.keyboard.type("read")
    admin.keyboard.press("Enter")
    admin.wait_for_url(f"{gw.url}/.gateway/admin/policies*")
    notice = admin.locator("[role=status]").first.inner_text()
    assert f"Added: p, user:bob, experiment:{experiment['id']}, read, allow" in notice

    # Bob sees it in the MLflow UI, on his next page load.
    bob.goto(f"{gw.url}/#/experiments")
    bob.reload()
    bob.get_by_text(experiment["name"], exact=True).first.wait_for()

    # The gateway's bar on MLflow's page leads him to his account (no console: not an admin).
    bar = bob.get_by_role("navigation", name="mlflow-gateway")
    assert bar.inner_text().split() == ["bob", "My", "account", "Sign", "out"]
    bar.get_by_role("link", name="My account").click()
    bob.wait_for_url(f"{gw.url}/.gateway/admin/account")

    # His own account page says why.
    rights = bob.get_by_role("table", name="Rules that apply").inner_text()
    assert f"experiment:{experiment['id']}" in rights and "user:bob" in rights

    # The admin removes the rule (confirming the dialog) and bob loses the experiment.
    admin.goto(f"{gw.url}/.gateway/admin/policies?subject=user:bob")
    admin.once("dialog", lambda dialog: dialog.accept())
    admin.get_by_role(
        "button", name=f"Remove rule user:bob experiment:{experiment['id']} read allow"
    ).click()
    admin.wait_for_url(f"{gw.url}/.gateway/admin/policies*")
    assert "Removed:" in admin.locator("[role=status]").first.inner_text()
    assert experiment["name"] not in _experiments_shown(bob, gw)

    # The audit page tells the story: the grant, bob's reads, the revocation, in that order.
    admin.goto(f"{gw.url}/.gateway/admin/audit?type=security")
    events = admin.get_by_role("table", name="Audit events, newest first").inner_text()
    rule = f"p, user:bob, experiment:{experiment['id']}, read, allow"
    assert "policy_removed" in events and "policy_added" in events and rule in events
    assert events.index("policy_removed") < events.index("policy_added")  # newest first
    admin.goto(f"{gw.url}/.gateway/admin/audit?actor=bob")
    reads = admin.get_by_role("table", name="Audit events, newest first").inner_text()
    assert "/ajax-api/2.0/mlflow/experiments/search" in reads


def test_the_audit_page_names_what_an_admin_asked_for_that_does_not_exist(
    gw: Gateway, admin: Page
) -> None:
    """An admin's lookup of an experiment that does not exist resolves nothing and is judged by no
    rule, yet its event names the experiment asked for (and the index finds it by actor)."""
    name = f"/nowhere/asked-{time.time_ns()}"
    query = urllib.parse.urlencode({"experiment_name": name})
    answer = admin.request.get(f"{gw.url}/ajax-api/2.0/mlflow/experiments/get-by-name?{query}")
    assert answer.status == 404
    row = admin.get_by_role("row").filter(has_text="experiments/get-by-name").first
    for _ in range(20):  # the event is written just after the answer: reload as a person would
        admin.goto(f"{gw.url}/.gateway/admin/audit?actor=root&type=request")
        if row.count():
            break
        time.sleep(0.25)
    row.locator("summary").click()
    details = json.loads(row.locator("pre").inner_text())
    assert details["params"] == {"experiment_name": name}
    assert details["http"]["status"] == 404 and details["actor"]["subject"] == "root"


def test_live_view_shows_new_events_as_they_happen(gw: Gateway, admin: Page, bob: Page) -> None:
    admin.goto(f"{gw.url}/.gateway/admin/audit/live")
    admin.wait_for_selector("#live-state:has-text('live')")
    marker = f"/.gateway/seen-{time.time_ns()}"
    bob.goto(gw.url + marker)
    row = admin.locator("#live-rows tr", has_text=marker)
    row.first.wait_for()
    assert "bob" in row.first.inner_text()
    _shot(admin, "audit-live")


def test_explain_and_who_can_answer_in_the_page(
    gw: Gateway, admin: Page, experiment: dict[str, str]
) -> None:
    admin.goto(f"{gw.url}/.gateway/admin/explain")
    admin.fill("#x-user", "bob")
    admin.fill("#x-object", f"experiment:{experiment['id']}")
    admin.fill("#x-action", "read")
    admin.get_by_role("button", name="Explain").click()
    verdict = admin.locator(".verdict").inner_text()
    assert verdict.startswith("Denied") and "denied by default" in verdict
    admin.fill("#w-object", f"experiment:{experiment['id']}")
    admin.fill("#w-action", "manage")
    admin.get_by_role("button", name="Who can?").click()
    holders = admin.get_by_role("table", name=re.compile("Who can")).inner_text()
    # The creator owns what they create; admins may do everything.
    assert "user:admin" in holders and "role:admin" in holders


def test_people_who_are_not_admins_see_their_account_only(gw: Gateway, bob: Page) -> None:
    response = bob.goto(f"{gw.url}/.gateway/admin/policies")
    assert response is not None and response.status == 403
    assert "for gateway admins" in bob.content()
    assert bob.get_by_role("link", name="Console").count() == 0
    # Tokens from the account page: shown once, then only their name and state.
    bob.goto(f"{gw.url}/.gateway/admin/account")
    bob.fill("#name", "notebook")
    bob.get_by_role("button", name="Create token").click()
    secret = bob.locator("#new-token").input_value()
    assert secret.startswith("mlgw_")
    bob.reload()
    assert secret not in bob.content()
    status, _, _ = request(gw, "/.gateway/api/me", headers={"Authorization": f"Bearer {secret}"})
    assert status == 200


def test_console_pages_are_strict_labelled_and_error_free(
    gw: Gateway, admin: Page, experiment: dict[str, str]
) -> None:
    problems: list[str] = []
    admin.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    pages = {
        "policies": "/.gateway/admin/policies",
        "policy-history": "/.gateway/admin/policies/history",
        "explain": f"/.gateway/admin/explain?user=bob&object=experiment:{experiment['id']}"
        f"&action=read&who_object=experiment:{experiment['id']}&who_action=manage",
        "users": "/.gateway/admin/users",
        "user": "/.gateway/admin/users/bob",
        "groups": "/.gateway/admin/groups",
        "tokens": "/.gateway/admin/tokens",
        "audit": "/.gateway/admin/audit",
        "account": "/.gateway/admin/account",
        "approvals": "/.gateway/admin/approvals",
    }
    for name, path in pages.items():
        response = admin.goto(gw.url + path)
        assert response is not None and response.status == 200, path
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        assert "frame-ancestors 'none'" in policy
        found = admin.evaluate(
            """() => ({
                inline: [...document.scripts].filter(s => !s.src).length,
                handlers: [...document.querySelectorAll('*')].filter(
                    el => [...el.attributes].some(a => a.name.startsWith('on'))).length,
                unlabelled: [...document.querySelectorAll('input, select, textarea')]
                    .filter(el => el.type !== 'hidden')
                    .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
                    .map(el => el.name || el.id),
            })"""
        )
        assert found == {"inline": 0, "handlers": 0, "unlabelled": []}, (path, found)
        _shot(admin, name)
    assert problems == []


def test_mlflow_pages_carry_the_bar_without_breaking(gw: Gateway, admin: Page) -> None:
    errors: list[str] = []
    admin.on("pageerror", lambda exc: errors.append(str(exc)))
    admin.goto(f"{gw.url}/#/experiments")
    admin.get_by_text("Default", exact=True).first.wait_for()
    bar = admin.get_by_role("navigation", name="mlflow-gateway")
    assert "Console" in bar.inner_text()
    _shot(admin, "mlflow-bar")
    assert errors == []
    bar.get_by_role("link", name="Console").click()
    admin.wait_for_url(f"{gw.url}/.gateway/admin/policies")


def test_console_forms_need_the_session_csrf_token(gw: Gateway, admin: Page) -> None:
    answer = admin.context.request.post(
        f"{gw.url}/.gateway/admin/policies/add",
        form={"kind": "p", "subject": "user:mallory", "object": "*", "action": "*"},
        headers={"Origin": gw.url},
    )
    assert answer.status == 403
    assert "form expired" in answer.text()
    _, _, body = request(gw, "/.gateway/api/policy?subject=mallory", headers=gw.auth)
    assert json.loads(body)["rules"] == []


# -- signing out --------------------------------------------------------------------------


def _password_session(browser: Browser, gw: Gateway, next_path: str) -> tuple[BrowserContext, Page]:
    context = _context(browser)
    page = context.new_page()
    page.goto(f"{gw.url}/.gateway/login?next={urllib.parse.quote(next_path)}")
    page.fill("#username", "carol")
    page.fill("#password", "carol-password-123")
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(f"{gw.url}{next_path}")
    return context, page


def _me_status(gw: Gateway, session: str) -> int:
    return request(gw, "/.gateway/api/me", headers={"Cookie": f"mlgw_session={session}"})[0]


@pytest.mark.parametrize("where", ["bar", "console", "confirm page"])
def test_sign_out_from_the_bar_the_console_and_the_confirm_page(
    browser: Browser, gw: Gateway, where: str
) -> None:
    context, page = _password_session(browser, gw, "/#/experiments")
    # Errors of the gateway's pages only (MLflow's UI logs refusals of calls carol may not make).
    problems: list[str] = []
    session = {c["name"]: c for c in context.cookies()}["mlgw_session"]["value"]
    if where == "bar":
        page.get_by_text("Default", exact=True).first.wait_for()
        bar = page.get_by_role("navigation", name="mlflow-gateway")
        bar.get_by_role("button", name="Sign out").click()
    elif where == "console":
        page.goto(f"{gw.url}/.gateway/admin/account")
        page.locator("header").get_by_role("button", name="Sign out").click()
    else:
        # Visiting the sign-out address only asks: still signed in until the button is pressed.
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        response = page.goto(f"{gw.url}/.gateway/logout")
        assert response is not None and response.status == 200
        assert "unsafe-inline" not in response.headers["content-security-policy"]
        assert _me_status(gw, session) == 200
        page.locator("main").get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{gw.url}/.gateway/login?signed_out=1")
    assert "You are signed out" in page.content()
    assert _me_status(gw, session) == 401
    assert problems == []
    context.close()
