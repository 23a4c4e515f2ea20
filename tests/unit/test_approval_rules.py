"""The approval rules that need no server: the request: rights and what grants them, the settings
that say what needs approval, and an approval's record as Redis keeps it."""

from __future__ import annotations

import re

import pytest

from gateway.admin.console_policy import ACTIONS
from gateway.admin.fields import ACTION
from gateway.approvals.store import SET_ALIAS, TRANSITION_STAGE, Approval
from gateway.authz.actions import asked, asking, blocks, grants, valid_action
from gateway.config import ConfigError, load_settings
from gateway.policy_lines import PolicyError, Rule


def test_request_rights_are_valid_policy_actions() -> None:
    for action in ("request:production", "request:*", "request:alias:champion"):
        assert valid_action(action), action
        assert re.fullmatch(ACTION, action), action
        Rule("group:team-a", "registered_model:fraud", action).validate()
    for action in ("request:", "request:Production", "request:alias:", "requests:production"):
        assert not valid_action(action), action


def test_an_invalid_action_is_answered_with_the_request_rights_among_the_valid_ones() -> None:
    with pytest.raises(PolicyError) as refused:
        Rule("group:team-a", "registered_model:fraud", "requests:production").validate()
    assert "request:<stage>, request:alias:<name>" in str(refused.value)


def test_the_console_offers_the_request_rights() -> None:
    assert {"request:production", "request:alias:champion"} <= set(ACTIONS)
    for action in ACTIONS:
        assert valid_action(action), action


def test_asking_names_the_right_to_ask_for_a_promotion() -> None:
    assert asking("promote:production") == "request:production"
    assert asking("alias:champion") == "request:alias:champion"
    assert asked("request:production") == "promote:production"
    assert asked("request:alias:champion") == "alias:champion"
    assert asked("promote:production") is None and asked("edit") is None


def test_whoever_may_promote_may_ask_but_asking_is_not_promoting() -> None:
    for granted in ("promote:production", "promote:*", "manage", "*", "request:production"):
        assert grants(granted, "request:production"), granted
    assert grants("request:*", "request:production")
    assert grants("request:*", "request:alias:champion")
    assert grants("alias:champion", "request:alias:champion")
    assert not grants("promote:production", "request:alias:champion")
    assert not grants("promote:staging", "request:production")
    assert not grants("edit", "request:production")
    # Asking never grants the promotion itself.
    assert not grants("request:production", "promote:production")
    assert not grants("request:*", "promote:production")
    assert not grants("request:alias:champion", "alias:champion")


def test_a_deny_of_the_promotion_does_not_block_asking() -> None:
    # "may not promote alone" is what approval is for; a deny of asking blocks asking.
    assert not blocks("promote:production", "request:production")
    assert blocks("request:production", "request:production")
    assert blocks("request:*", "request:alias:champion")
    assert blocks("*", "request:production")


def test_approval_settings() -> None:
    settings = load_settings(
        {
            "GATEWAY_APPROVAL_REQUIRED": "Production, STAGING, alias:Champion",
            "GATEWAY_APPROVAL_TTL": "2h",
        }
    )
    assert settings.approval_required == ("promote:production", "promote:staging", "alias:champion")
    assert settings.approval_ttl == 7200
    assert load_settings({}).approval_required == ()
    assert load_settings({}).approval_ttl == 7 * 24 * 3600
    assert load_settings({"GATEWAY_APPROVAL_TTL": "4s"}).approval_ttl == 4
    assert load_settings({"GATEWAY_APPROVAL_TTL": "90"}).approval_ttl == 90


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"GATEWAY_APPROVAL_REQUIRED": "prod"}, "neither a stage"),
        ({"GATEWAY_APPROVAL_REQUIRED": "alias:"}, "alias:<name>"),
        ({"GATEWAY_APPROVAL_TTL": "soon"}, "GATEWAY_APPROVAL_TTL"),
        (
            {"GATEWAY_APPROVAL_REQUIRED": "alias:blessed"},
            "GATEWAY_PROTECTED_ALIASES does not list 'blessed'",
        ),
    ],
)
def test_approval_settings_that_cannot_work_are_refused(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert says in str(caught.value)


def test_an_approval_survives_redis_as_it_was_recorded() -> None:
    approval = Approval(
        id="0123456789abcdef",
        operation=TRANSITION_STAGE,
        model="fraud",
        version="3",
        requested_by="alice",
        requested_at=1_700_000_000.5,
        expires_at=1_700_600_000.0,
        rights=("promote:production", "promote:staging"),
        stage="Production",
        archive_existing_versions=True,
        current_stage="staging",
    )
    raw = {k.encode(): v.encode() for k, v in approval.to_hash().items()}
    assert Approval.from_hash(raw) == approval
    assert approval.describe() == (
        "move fraud version 3 to Production (archiving the others there)"
    )
    assert approval.effective_status == "expired"  # long past its time
    alias = Approval("a" * 16, SET_ALIAS, "fraud", "3", "alice", 0.0, 0.0, ("alias:champion",),
                     alias="champion")  # fmt: skip
    assert alias.describe() == "set alias 'champion' of fraud to version 3"
