"""The audit of rules that expired: one security event per rule, written by the replica whose
removal of it from the store committed (`Enforcer.on_expired`), so never twice."""

from __future__ import annotations

from gateway.audit.record import security_event
from gateway.audit.writer import AuditWriter
from gateway.authz.expiry import EXPIRY_ACTOR
from gateway.policy_lines import Rule


def audit_expired(writer: AuditWriter, rules: list[Rule]) -> None:
    """One security event per expired rule, by the replica whose removal of it committed."""

    for rule in rules:
        security_event(
            writer,
            "policy_expired",
            subject=EXPIRY_ACTOR,
            rule=str(rule),
            expires_at=rule.expires_at,
            before=str(rule),
            after=None,
        )
