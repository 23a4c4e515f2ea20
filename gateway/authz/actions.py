"""The rights a policy can grant, and which right covers which.

read < edit < manage is a chain: granting one grants the weaker ones. `manage` also covers
`create` (in the namespace it is granted on) and the promotion rights `promote:<stage>` and
`alias:<name>`; plain `edit` does not include promotion. A deny rule blocks the right it names and
every stronger one on the chain (deny `edit` also blocks `manage`, not `read`).

`request:<stage>` and `request:alias:<name>` only allow asking for a promotion that needs approval
(GATEWAY_APPROVAL_REQUIRED, gateway/approvals/): whoever may promote may also ask, so
`promote:<stage>`, `alias:<name>` and `manage` grant them. A deny of the promotion itself does not
block asking (that is what approval is for); a deny of the `request:` right does.
"""

from __future__ import annotations

import re

CHAIN = ("read", "edit", "manage")
CREATE = "create"
USE = "use"
PROMOTE_PREFIX = "promote:"
ALIAS_PREFIX = "alias:"
REQUEST_PREFIX = "request:"
STAGES = ("staging", "production", "archived", "none")

_ACTION = re.compile(
    r"^(\*|read|edit|manage|create|use|promote:(\*|[a-z]+)|alias:[^\s,]+"
    r"|request:(\*|[a-z]+|alias:[^\s,]+))\Z"
)


def valid_action(action: str) -> bool:
    return bool(_ACTION.match(action))


def promote(stage: str) -> str:
    """The right to move a model version to ``stage`` (MLflow stage names ignore case)."""
    return PROMOTE_PREFIX + stage.strip().lower()


def alias(name: str) -> str:
    return ALIAS_PREFIX + name


def asking(action: str) -> str:
    """The right to ask for ``action`` (`promote:production` → `request:production`,
    `alias:champion` → `request:alias:champion`)."""
    return REQUEST_PREFIX + action.removeprefix(PROMOTE_PREFIX)


def asked(action: str) -> str | None:
    """The promotion a `request:` right asks for; None for any other action."""
    if not action.startswith(REQUEST_PREFIX):
        return None
    rest = action.removeprefix(REQUEST_PREFIX)
    return rest if rest.startswith(ALIAS_PREFIX) else PROMOTE_PREFIX + rest


def _covered_by_pattern(granted: str, requested: str) -> bool:
    return granted.endswith(":*") and requested.startswith(granted[:-1])


def grants(granted: str, requested: str) -> bool:
    """An allow rule for ``granted`` permits a request that needs ``requested``."""
    if granted in ("*", requested) or _covered_by_pattern(granted, requested):
        return True
    if (promotion := asked(requested)) is not None and not granted.startswith(REQUEST_PREFIX):
        # Whoever may promote may ask.
        return grants(granted, promotion)
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
