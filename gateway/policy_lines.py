"""Policy lines: `p` rules and `g` memberships, how they are written, parsed and matched.

The ground floor of the policy: the store keeps these lines, the index and the engine decide with
them, the CLI, the API and the console read and write them. casbin's CSV form:
`p, SUBJECT, OBJECT, ACTION[, allow|deny[, EXPIRES_AT]]` and `g, MEMBER, GROUP`.

A rule may expire: its sixth field is a UTC instant written `2026-12-03T18:00:00Z` (one spelling,
so that instants compare as text). A rule is known by its first five fields: adding it again with
another expiry changes its expiry, removing it removes it whatever its expiry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from gateway.authz.actions import valid_action
from gateway.scopes import parse_duration

ADMIN_ROLE = "role:admin"
EFFECTS = ("allow", "deny")
_SUBJECT = re.compile(r"^(user|group|role):[^\s,*]+\Z")
_OBJECT = re.compile(r"^(\*|[a-z_]+:[^\s,]*)\Z")
_EXPIRY = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z")
EXPIRY_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
LATEST_EXPIRY = "9999-12-31T23:59:59Z"
EARLIEST_EXPIRY = "0001-01-01T00:00:00Z"


class PolicyError(ValueError):
    """A rule that cannot be stored; the message says how to write it."""


def expiry_text(moment: datetime) -> str:
    """An instant as rules store it (UTC, whole seconds; a naive time is taken as UTC)."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    utc = aware.astimezone(UTC)
    # By hand: strftime's %Y does not pad years before 1000 to four digits everywhere.
    return f"{utc.year:04d}-{utc:%m-%dT%H:%M:%S}Z"


def now_text() -> str:
    return expiry_text(datetime.now(UTC))


def parse_expiry(text: str) -> str:
    """An ISO 8601 instant (``2026-12-31``, ``2026-12-31T18:00+02:00``, ``…Z``) in the one
    spelling rules use; a time without an offset is UTC."""
    try:
        moment = datetime.fromisoformat(text.strip().upper())  # 't' and 'z' as 'T' and 'Z'
    except ValueError:
        raise PolicyError(
            f"invalid expiry {text!r}: use an ISO 8601 time, e.g. 2026-12-31T18:00:00Z"
        ) from None
    try:
        return expiry_text(moment)
    except OverflowError:  # an offset past either end of the calendar: its end
        return LATEST_EXPIRY if moment.year > 1 else EARLIEST_EXPIRY


def expiry_in(delta: timedelta) -> str:
    return expiry_text(datetime.now(UTC) + delta)


def expiry_from(expires_in: str | None, expires_at: str | None) -> str:
    """A rule's expiry from what people write: a duration (``4s``, ``2h``, ``30d``) or an ISO 8601
    time (both: the earlier); "" for neither."""
    found = []
    if expires_in:
        try:
            found.append(expiry_in(parse_duration(expires_in)))
        except ValueError as exc:
            raise PolicyError(str(exc)) from None
    if expires_at:
        found.append(parse_expiry(expires_at))
    # Both: whichever comes first (instants in one spelling compare as text).
    return min(found, default="")


def expiry_moment(text: str) -> float:
    """The POSIX time of a stored expiry."""
    return datetime.strptime(text, EXPIRY_FORMAT).replace(tzinfo=UTC).timestamp()


@dataclass(frozen=True, order=True)
class Rule:
    """One `p` line: subject, object pattern, action, effect, and when it expires ("" never)."""

    subject: str
    object: str
    action: str
    effect: str = "allow"
    expires_at: str = ""

    def __str__(self) -> str:
        line = f"p, {self.subject}, {self.object}, {self.action}, {self.effect}"
        return f"{line}, {self.expires_at}" if self.expires_at else line

    @property
    def key(self) -> Rule:
        """The rule whatever its expiry: what names it in the store."""
        if not self.expires_at:
            return self
        return Rule(self.subject, self.object, self.action, self.effect)

    def expired(self, now: str) -> bool:
        """Expired at ``now`` (an instant as `now_text` writes it)?"""
        return bool(self.expires_at) and self.expires_at <= now

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
                "promote:<stage>, alias:<name>, request:<stage>, request:alias:<name> or *"
            )
        if self.effect not in EFFECTS:
            raise PolicyError(f"invalid effect {self.effect!r}: use allow or deny")
        if self.expires_at and not _EXPIRY.match(self.expires_at):
            raise PolicyError(
                f"invalid expiry {self.expires_at!r}: use a UTC time like 2026-12-31T18:00:00Z"
            )
        if self.expires_at and self.key == PROTECTED_RULE:
            raise PolicyError(f"'{self.key}' makes admins admins and cannot expire")
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
    """A casbin CSV line: ``p, SUBJECT, OBJECT, ACTION[, allow|deny[, EXPIRES_AT]]`` or
    ``g, MEMBER, GROUP``. An empty sixth field is no expiry."""
    fields = [f.strip() for f in text.split(",")]
    if fields[0] == "p" and len(fields) in (4, 5, 6):
        if len(fields) == 6 and fields[5]:
            fields[5] = parse_expiry(fields[5])
        return Rule(*fields[1:]).validate()
    if fields[0] == "g" and len(fields) == 3:
        return Grouping(fields[1], fields[2]).validate()
    raise PolicyError(
        f"cannot read {text.strip()!r}: use 'p, SUBJECT, OBJECT, ACTION[, allow|deny[, EXPIRES]]' "
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
