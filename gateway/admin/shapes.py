"""The JSON shapes of the admin API's answers (their schemas are in gateway/admin/openapi.py), and
the states an admin change records before and after (parts of the same shapes)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from gateway.authz.explain import Holder, Right
from gateway.authz.policy import Decision
from gateway.policy_lines import Grouping, Rule
from gateway.store.policy_history import HistoryEntry
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


def user_state(user: UserRecord) -> dict[str, Any]:
    """What an audit event records of a user before and after a change."""
    shown = user_json(user)
    return {
        key: shown[key] for key in ("username", "admin", "disabled", "groups", "local_password")
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


def token_state(token: TokenRecord) -> dict[str, Any]:
    """What an audit event records of a token before and after a change."""
    shown = token_json(token)
    return {key: shown[key] for key in ("id", "owner", "name", "scope")} | {
        "revoked": token.revoked_at is not None
    }


def rule_json(rule: Rule) -> dict[str, Any]:
    """subject, object, action, effect, expires_at (null: never)."""
    return {
        "subject": rule.subject,
        "object": rule.object,
        "action": rule.action,
        "effect": rule.effect,
        "expires_at": rule.expires_at or None,
    }


def grouping_json(grouping: Grouping) -> dict[str, Any]:
    """member, group."""
    return asdict(grouping)


def line_json(line: Rule | Grouping) -> dict[str, Any]:
    """A rule or a g line, with its CSV form."""
    shown = rule_json(line) if isinstance(line, Rule) else grouping_json(line)
    return {"line": str(line), "kind": "p" if isinstance(line, Rule) else "g", **shown}


def history_json(entry: HistoryEntry) -> dict[str, Any]:
    """One changed line: version, time, actor, op (add or remove), line (its CSV form)."""
    return {
        "version": entry.version,
        "time": iso(entry.time),
        "actor": entry.actor,
        "op": entry.op,
        "line": str(entry.line),
    }


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
