"""Policy lines: `p` rules and `g` memberships, how they are written, parsed and matched.

The ground floor of the policy: the store keeps these lines, the index and the engine decide with
them, the CLI, the API and the console read and write them. casbin's CSV form:
`p, SUBJECT, OBJECT, ACTION[, allow|deny]` and `g, MEMBER, GROUP`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from gateway.authz.actions import valid_action

ADMIN_ROLE = "role:admin"
EFFECTS = ("allow", "deny")
_SUBJECT = re.compile(r"^(user|group|role):[^\s,*]+\Z")
_OBJECT = re.compile(r"^(\*|[a-z_]+:[^\s,]*)\Z")


class PolicyError(ValueError):
    """A rule that cannot be stored; the message says how to write it."""


@dataclass(frozen=True, order=True)
class Rule:
    """One `p` line: subject, object pattern, action, effect."""

    subject: str
    object: str
    action: str
    effect: str = "allow"

    def __str__(self) -> str:
        return f"p, {self.subject}, {self.object}, {self.action}, {self.effect}"

    def validate(self) -> Rule:
        if not _SUBJECT.match(self.subject):
            raise PolicyError(
                f"invalid subject {self.subject!r}: use user:<name>, group:<name> or role:<name>"
            )
        if not _OBJECT.match(self.object):
            raise PolicyError(
                f"invalid object {self.object!r}: use e.g. experiment:12, experiment:*, "
                "experiment_name:/team-a/*, registered_model:fraud-*"
            )
        if not valid_action(self.action):
            raise PolicyError(
                f"invalid action {self.action!r}: use read, edit, manage, create, use, "
                "promote:<stage>, alias:<name> or *"
            )
        if self.effect not in EFFECTS:
            raise PolicyError(f"invalid effect {self.effect!r}: use allow or deny")
        return self


@dataclass(frozen=True, order=True)
class Grouping:
    """One `g` line: member belongs to group or role."""

    member: str
    group: str

    def __str__(self) -> str:
        return f"g, {self.member}, {self.group}"

    def validate(self) -> Grouping:
        for name in (self.member, self.group):
            if not _SUBJECT.match(name):
                raise PolicyError(
                    f"invalid subject {name!r}: use user:<name>, group:<name> or role:<name>"
                )
        return self


# The rule that makes role:admin an admin; removing it would lock every admin out.
PROTECTED_RULE = Rule("role:admin", "*", "*", "allow")


@lru_cache(maxsize=65536)
def _pattern(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + ".*".join(re.escape(part) for part in pattern.split("*")) + r"\Z", re.S)


def object_matches(requested: str, pattern: str) -> bool:
    """``*`` matches any run of characters; nothing else is special."""
    if pattern == requested or pattern == "*":
        return True
    return "*" in pattern and bool(_pattern(pattern).match(requested))


@dataclass(frozen=True)
class PolicyDelta:
    """The lines one or more policy versions changed, in the order they were made."""

    version: int
    changes: tuple[tuple[bool, Rule | Grouping], ...]  # (added?, line)


def parse_line(text: str) -> Rule | Grouping:
    """A casbin CSV line: ``p, SUBJECT, OBJECT, ACTION[, allow|deny]`` or ``g, MEMBER, GROUP``."""
    fields = [f.strip() for f in text.split(",")]
    if fields[0] == "p" and len(fields) in (4, 5):
        return Rule(*fields[1:]).validate()
    if fields[0] == "g" and len(fields) == 3:
        return Grouping(fields[1], fields[2]).validate()
    raise PolicyError(
        f"cannot read {text.strip()!r}: use 'p, SUBJECT, OBJECT, ACTION[, allow|deny]' "
        "or 'g, MEMBER, GROUP'"
    )


def parse_lines(text: str) -> list[Rule | Grouping]:
    """Every line of a policy CSV; blank lines and `#` comments are skipped."""
    lines: list[Rule | Grouping] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            lines.append(parse_line(stripped))
        except PolicyError as exc:
            raise PolicyError(f"line {number}: {exc}") from None
    return lines
