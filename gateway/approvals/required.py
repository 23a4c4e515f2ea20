"""What needs approval, read from GATEWAY_APPROVAL_REQUIRED and GATEWAY_APPROVAL_TTL (pure: the
settings import it)."""

from __future__ import annotations

from gateway.authz.actions import ALIAS_PREFIX, STAGES, alias, promote
from gateway.scopes import ScopeError, parse_duration

DEFAULT_TTL = 7 * 24 * 3600


def parse_required(raw: str) -> tuple[str, ...]:
    """`production, Staging, alias:champion` → the rights whose use needs approval
    (`promote:production`, `promote:staging`, `alias:champion`). Stage names ignore case, as
    MLflow reads them; alias names are compared as protected aliases are."""
    found: list[str] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        lowered = item.lower()
        if lowered.startswith(ALIAS_PREFIX):
            name = lowered.removeprefix(ALIAS_PREFIX).strip()
            if not name or any(ch.isspace() or ch == "," for ch in name):
                raise ValueError(f"{item!r}: write an alias as alias:<name>")
            right = alias(name)
        elif lowered in STAGES:
            right = promote(lowered)
        else:
            raise ValueError(f"{item!r} is neither a stage ({', '.join(STAGES)}) nor alias:<name>")
        if right not in found:
            found.append(right)
    return tuple(found)


def parse_ttl(raw: str) -> int:
    """Seconds: `7d`, `12h`, `30m`, `4s`, or a whole number of seconds."""
    text = raw.strip()
    if text.isdigit():
        seconds = int(text)
    else:
        try:
            seconds = int(parse_duration(text).total_seconds())
        except ScopeError:
            raise ValueError("use e.g. 7d, 12h, 30m, 4s or a number of seconds") from None
    if seconds < 1:
        raise ValueError("expected at least one second")
    return seconds


def required_problems(required: tuple[str, ...], protected_aliases: tuple[str, ...]) -> list[str]:
    """An alias that needs approval must be protected: otherwise `edit` alone sets it."""
    protected = {name.lower() for name in protected_aliases}
    return [
        f"GATEWAY_APPROVAL_REQUIRED names {right} but GATEWAY_PROTECTED_ALIASES does not list "
        f"{right.removeprefix(ALIAS_PREFIX)!r} — add it there"
        for right in required
        if right.startswith(ALIAS_PREFIX) and right.removeprefix(ALIAS_PREFIX) not in protected
    ]
