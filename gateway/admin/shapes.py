"""The JSON shapes of the admin API's answers (their schemas are in gateway/admin/openapi.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gateway.authz.explain import Holder, Right
from gateway.authz.policy import Decision, Grouping, Rule
from gateway.store.tokens import TokenRecord
from gateway.store.users import GroupRecord, UserRecord


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    # SQLite hands back naive datetimes; they were stored as UTC.
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.isoformat(timespec="seconds")


def user_json(user: UserRecord) -> dict[str, Any]:
    return {
        "username": user.username,
        "admin": user.is_admin,
        "disabled": user.disabled,
        "email": user.email,
        "groups": list(user.groups),
        "local_password": user.has_password,
        "created_at": iso(user.created_at),
        "last_login_at": iso(user.last_login_at),
    }


def group_json(group: GroupRecord) -> dict[str, Any]:
    return {"name": group.name, "members": list(group.members)}


def token_json(token: TokenRecord) -> dict[str, Any]:
    return {
        "id": token.id,
        "owner": token.owner,
        "name": token.name,
        "scope": token.scope.words(),
        "state": token.state(datetime.now(UTC)),
        "created_at": iso(token.created_at),
        "expires_at": iso(token.expires_at),
        "revoked_at": iso(token.revoked_at),
        "last_used_at": iso(token.last_used_at),
    }


def rule_json(rule: Rule) -> dict[str, Any]:
    return {
        "subject": rule.subject,
        "object": rule.object,
        "action": rule.action,
        "effect": rule.effect,
    }


def grouping_json(grouping: Grouping) -> dict[str, Any]:
    return {"member": grouping.member, "group": grouping.group}


def decision_json(decision: Decision, names: tuple[str, ...]) -> dict[str, Any]:
    return {
        "allowed": decision.allowed,
        "object": names[0],
        "names": list(names),
        "action": decision.action,
        "rule": rule_json(decision.rule) if decision.rule else None,
        "explanation": decision.explain(),
    }


def holder_json(holder: Holder) -> dict[str, Any]:
    return {"subject": holder.subject, "rule": rule_json(holder.rule) if holder.rule else None}


def right_json(right: Right) -> dict[str, Any]:
    return rule_json(right.rule) | {"via": right.via}
