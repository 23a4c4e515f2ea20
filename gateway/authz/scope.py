"""A token's scope narrows what its owner may do: read-only, listed experiments and models."""

from __future__ import annotations

from gateway.authz.resources import Resource
from gateway.policy_lines import object_matches
from gateway.scopes import TokenScope


def scope_refusal(scope: TokenScope, resource: Resource, action: str) -> str | None:
    """Why ``scope`` does not cover ``action`` on ``resource``; None when it does."""
    if scope.read_only and action != "read":
        return f"read-only token, {action} needed"
    if not (scope.experiments or scope.registered_models):
        return None
    allowed = {
        "experiment": [f"experiment:{e}" for e in scope.experiments],
        "registered_model": [f"registered_model:{m}" for m in scope.registered_models],
    }.get(resource.kind, [])
    if any(object_matches(resource.names[0], pattern) for pattern in allowed):
        return None
    return f"{resource.names[0]} is outside the token's experiments and models"
