"""The rights a policy can grant, and which right covers which.

read < edit < manage is a chain: granting one grants the weaker ones. `manage` also covers
`create` (in the namespace it is granted on) and the promotion rights `promote:<stage>` and
`alias:<name>`; plain `edit` does not include promotion. A deny rule blocks the right it names and
every stronger one on the chain (deny `edit` also blocks `manage`, not `read`).
"""

from __future__ import annotations

import re

CHAIN = ("read", "edit", "manage")
CREATE = "create"
USE = "use"
PROMOTE_PREFIX = "promote:"
ALIAS_PREFIX = "alias:"
STAGES = ("staging", "production", "archived", "none")

_ACTION = re.compile(r"^(\*|read|edit|manage|create|use|promote:(\*|[a-z]+)|alias:[^\s,]+)\Z")


def valid_action(action: str) -> bool:
    return bool(_ACTION.match(action))


def promote(stage: str) -> str:
    """The right to move a model version to ``stage`` (MLflow stage names ignore case)."""
    return PROMOTE_PREFIX + stage.strip().lower()


def alias(name: str) -> str:
    return ALIAS_PREFIX + name


def _covered_by_pattern(granted: str, requested: str) -> bool:
    return granted.endswith(":*") and requested.startswith(granted[:-1])


def grants(granted: str, requested: str) -> bool:
    """An allow rule for ``granted`` permits a request that needs ``requested``."""
    if granted in ("*", requested) or _covered_by_pattern(granted, requested):
        return True
    if granted in CHAIN and requested in CHAIN:
        return CHAIN.index(granted) >= CHAIN.index(requested)
    if granted == "manage":
        return requested in (CREATE,) or requested.startswith((PROMOTE_PREFIX, ALIAS_PREFIX))
    return False


def blocks(denied: str, requested: str) -> bool:
    """A deny rule for ``denied`` refuses a request that needs ``requested``."""
    if denied in ("*", requested) or _covered_by_pattern(denied, requested):
        return True
    if denied in CHAIN and requested in CHAIN:
        return CHAIN.index(requested) >= CHAIN.index(denied)
    return False


def matches(rule_action: str, requested: str, effect: str) -> bool:
    return grants(rule_action, requested) if effect == "allow" else blocks(rule_action, requested)
