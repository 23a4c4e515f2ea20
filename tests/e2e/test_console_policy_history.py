"""The console's expiring rules, policy history and rollback in a real browser: the admin adds a
rule that expires in 2 hours and one that expires at a given time (both shown with their expiry),
reads the history with a diff between two versions, and rolls the policy back to before them;
bob, whom the rules granted, is refused again. The history page is strict and labelled like every
console page."""

from __future__ import annotations

import re
import time
import urllib.parse
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.browser import new_offline_context
from tests.helpers import (
    ADMIN_PASSWORD,
    Gateway,
    MlflowServer,
    RedisServer,
    create_experiment,
    start_gateway,
)
from tests.integration.test_authn import basic, request

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

PAGE_TIMEOUT_MS = 30_000
REDIS_DB = 14
BOB_PASSWORD = "bob-password-123"
POLICIES = "/.gateway/admin/policies"
HISTORY = "/.gateway/admin/policies/history"


@pytest.fixture(scope="module")
def gw(
    mlflow_server: MlflowServer, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    gateway = start_gateway(
        mlflow_server.url,
        redis_server.db_url(REDIS_DB),
        tmp_path_factory.mktemp("gw-console-history"),
        GATEWAY_LOCKOUT_IP_THRESHOLD="1000",
    )
    gateway.add_user("bob", BOB_PASSWORD)
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def experiment(gw: Gateway) -> str:
    experiment_id = create_experiment(gw, f"history-{time.time_ns()}")
    # The creator's owner rule is stored just after the answer: wait, so versions stay put.
    owner = f"p, user:admin, experiment:{experiment_id}, manage, allow"
    deadline = time.monotonic() + 10
    while owner not in gw.cli("policy", "list", "--subject", "admin").stdout:
        assert time.monotonic() < deadline, "the owner rule was not stored"
        time.sleep(0.1)
    return experiment_id


@pytest.fixture
def admin(browser: Browser, gw: Gateway) -> Iterator[Page]:
    context = new_offline_context(browser, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    page.goto(f"{gw.url}/.gateway/login?next={urllib.parse.quote(POLICIES)}")
    page.fill("#username", "admin")
    page.fill("#password", ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{gw.url}{POLICIES}")
    yield page
    context.close()


def _bob_reads(gw: Gateway, experiment: str) -> int:
    path = f"/api/2.0/mlflow/experiments/get?experiment_id={experiment}"
    return request(gw, path, headers=basic("bob", BOB_PASSWORD))[0]


def _version(gw: Gateway) -> int:
    return int(gw.cli("policy", "export").stdout.splitlines()[0].rsplit(" ", 1)[1])


def _add(admin: Page, experiment: str, action: str, **expiry: str) -> str:
    admin.fill("#rule-subject", "user:bob")
    admin.fill("#rule-object", f"experiment:{experiment}")
    admin.fill("#rule-action", action)
    for field, value in expiry.items():
        admin.fill(f"#rule-{field}", value)
    admin.get_by_role("button", name="Add rule").click()
    admin.wait_for_url(f"**{POLICIES}*")
    return admin.locator("[role=status]").first.inner_text()


def test_expiring_rules_history_with_a_diff_and_rollback(
    gw: Gateway, admin: Page, experiment: str
) -> None:
    problems: list[str] = []
    admin.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    before = _version(gw)
    assert _bob_reads(gw, experiment) == 404

    # A rule that expires in two hours, one that expires at a time given in another zone.
    notice = _add(admin, experiment, "read", **{"expires-in": "2h"})
    found = re.search(
        rf"Added: p, user:bob, experiment:{experiment}, read, allow, "
        r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)",
        notice,
    )
    assert found, notice
    read_expiry = found.group(1)
    notice = _add(admin, experiment, "edit", **{"expires-at": "2999-06-30T14:00:00+02:00"})
    assert f"experiment:{experiment}, edit, allow, 2999-06-30T12:00:00Z" in notice
    assert _bob_reads(gw, experiment) == 200

    # The rules table shows each expiry.
    admin.goto(f"{gw.url}{POLICIES}?subject=user:bob")
    rules = admin.get_by_role("table").first.inner_text()
    assert "Expires (UTC)" in rules
    assert read_expiry in rules and "2999-06-30T12:00:00Z" in rules

    # The history, from the policies page: newest first, who and what.
    admin.get_by_role("link", name="History and rollback").click()
    admin.wait_for_url(f"**{HISTORY}")
    changes = admin.get_by_role("table").inner_text()
    edit_line = f"p, user:bob, experiment:{experiment}, edit, allow, 2999-06-30T12:00:00Z"
    read_line = f"p, user:bob, experiment:{experiment}, read, allow, {read_expiry}"
    assert changes.index(edit_line) < changes.index(read_line)
    assert f"{before + 2}" in changes and "admin" in changes
    # By default the diff is the newest change.
    diff = admin.get_by_role("region").inner_text()
    assert f"From version {before + 1} to version {before + 2}: 1 added, 0 removed" in diff
    assert edit_line in diff and read_line not in diff

    # A diff between two versions the admin chooses.
    admin.get_by_role("textbox", name="From version").fill(str(before))
    admin.get_by_role("textbox", name="to version").fill(str(before + 2))
    admin.get_by_role("button", name="Show the difference").click()
    admin.wait_for_url(f"**{HISTORY}?from={before}&to={before + 2}")
    diff = admin.get_by_role("region").inner_text()
    assert f"From version {before} to version {before + 2}: 2 added, 0 removed" in diff
    assert edit_line in diff and read_line in diff

    # Roll back to before both rules (confirming the dialog): one new version, bob refused.
    admin.get_by_label("Version", exact=True).fill(str(before))
    admin.once("dialog", lambda dialog: dialog.accept())
    admin.get_by_role("button", name="Roll back").click()
    admin.wait_for_url(f"**{HISTORY}*")
    notice = admin.locator("[role=status]").first.inner_text()
    assert f"Rolled back to version {before} as version {before + 3}: 0 added, 2 removed" in notice
    assert _bob_reads(gw, experiment) == 404
    admin.goto(f"{gw.url}{HISTORY}")
    changes = admin.get_by_role("table").inner_text()
    assert changes.count("removed") >= 2 and f"{before + 3}" in changes

    # An unknown version says so, and changes nothing.
    admin.get_by_label("Version", exact=True).fill("99999")
    admin.once("dialog", lambda dialog: dialog.accept())
    admin.get_by_role("button", name="Roll back").click()
    admin.wait_for_url(f"**{HISTORY}*")
    assert "unknown policy version 99999" in admin.locator("[role=alert]").first.inner_text()
    assert _version(gw) == before + 3

    # Strict and labelled, like every console page.
    response = admin.goto(f"{gw.url}{HISTORY}")
    assert response is not None and response.status == 200
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    found_page = admin.evaluate(
        """() => ({
            inline: [...document.scripts].filter(s => !s.src).length,
            unlabelled: [...document.querySelectorAll('input, select, textarea')]
                .filter(el => el.type !== 'hidden')
                .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
                .map(el => el.name || el.id),
        })"""
    )
    assert found_page == {"inline": 0, "unlabelled": []}
    assert problems == []
