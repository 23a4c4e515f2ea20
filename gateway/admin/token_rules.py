"""What a gateway token may do with tokens: the rules behind every door that creates or lists them.

A request made with a token is limited by that token, on the gateway's own routes as on MLflow's:
a token creates only tokens at most as wide (read-only stays read-only, experiments and models
within its own) and at most as long-lived as itself, and a token with a scope sees and revokes
only itself. Without these, a narrow, short-lived token could mint a wide, long-lived one.
"""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.policy_lines import object_matches
from gateway.store.tokens import TokenRecord, TokenScope

NARROWER = "A token can create only tokens at most as wide and as long-lived as itself"


def expiry_of(token: TokenRecord) -> datetime | None:
    """The token's expiry, timezone-aware (SQLite hands back naive UTC datetimes)."""
    value = token.expires_at
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _covered(pattern: str, allowed: tuple[str, ...]) -> bool:
    # The new pattern read as a literal name: a `*` in it can only be matched by a `*` of an
    # allowed pattern, so a match means everything the new pattern reaches, an allowed one does.
    return any(object_matches(pattern, wider) for wider in allowed)


def _objects(scope: TokenScope) -> str:
    return ", ".join(word for word in scope.words() if word != "read-only")


def scope_problem(minting: TokenScope, wanted: TokenScope) -> str | None:
    """What ``wanted`` reaches that ``minting`` does not; None when it stays within."""
    if minting.read_only and not wanted.read_only:
        return "this token is read-only: make the new token read-only too"
    if not (minting.experiments or minting.registered_models):
        return None
    if not (wanted.experiments or wanted.registered_models):
        return (
            f"this token is limited to {_objects(minting)}: "
            "name the experiments or registered models the new token may reach, within those"
        )
    for kind, asked, allowed in (
        ("experiment", wanted.experiments, minting.experiments),
        ("registered_model", wanted.registered_models, minting.registered_models),
    ):
        for pattern in asked:
            if not _covered(pattern, allowed):
                return (
                    f"{kind}:{pattern} is outside this token's {_objects(minting)}: "
                    "leave it out or narrow it"
                )
    return None


def expiry_problem(minting: TokenRecord, expires_at: datetime | None) -> str | None:
    """Why a token expiring at ``expires_at`` (None: never) outlives ``minting``; None if not."""
    limit = expiry_of(minting)
    if limit is None or (expires_at is not None and expires_at <= limit):
        return None
    when = limit.isoformat(timespec="seconds")
    return (
        f"this token expires at {when}: ask for a shorter expires_in, "
        "or leave it out and the new token expires with this one"
    )


def mint_refusal(
    minting: TokenRecord, owner: str, wanted: TokenScope, expires_at: datetime | None
) -> str | None:
    """Why the token ``minting`` may not create this token; None when it may."""
    if owner != minting.owner:
        return "a token creates tokens for its own owner only"
    problem = scope_problem(minting.scope, wanted) or expiry_problem(minting, expires_at)
    return f"{NARROWER}: {problem}." if problem else None
