"""The policy API's own request fields: rules that may expire, CSV lines with an expiry, history
queries and rollback. Built from `gateway.admin.fields`' pieces, so names read alike everywhere."""

from __future__ import annotations

import re
from functools import lru_cache

from gateway.admin import fields as f
from gateway.admin.fields import Field

# An ISO 8601 date or date-time, with or without an offset (none: UTC): exactly what
# `parse_expiry` reads — real calendar days only (29 February in leap years), so nothing the
# schema admits is refused afterwards. No look-arounds: JSON Schema generators cannot read them.
_YEAR = r"(?:[1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])"
_LEAP_YEAR = r"(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
_DATE = (
    rf"(?:{_YEAR}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)"
    rf"|(?:0[13578]|1[02])-31)|{_LEAP_YEAR}-02-29)"
)
_TIME = (
    r"[Tt ](?:[01][0-9]|2[0-3])(?::[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,9})?)?)?"
    r"(?:[Zz]|[+-](?:[01][0-9]|2[0-3])(?::?[0-5][0-9])?)?"
)
EXPIRY = rf"{_DATE}(?:{_TIME})?"
_BREAKS = r"\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029"
_GAP = r"[ \t]*"
_SEP = f"{_GAP},{_GAP}"
_SUBJECT = f.SUBJECT.replace("{1,240}", "+")
# A policy file as `parse_lines` reads it: rules (an expiry as their sixth field, or none), g
# lines, comments, blank lines; line breaks are every character str.splitlines() breaks at.
_CSV_LINE = (
    rf"{_GAP}(?:#[^{_BREAKS}]*"
    rf"|p{_SEP}{_SUBJECT}{_SEP}(?:{f.OBJECT.replace('{0,470}', '*')})"
    rf"{_SEP}(?:{f.ACTION.replace('{1,200}', '+')})"
    rf"(?:{_SEP}(?:allow|deny)(?:{_SEP}(?:{EXPIRY})?)?)?{_GAP}"
    rf"|g{_SEP}{_SUBJECT}{_SEP}{_SUBJECT}{_GAP})?"
)
POLICY_CSV = rf"(?:{_CSV_LINE}\r?\n)*{_CSV_LINE}"


@lru_cache(maxsize=1)
def _line() -> re.Pattern[str]:
    return re.compile(_CSV_LINE)


def policy_csv_problem(text: str) -> str:
    """The first line of a policy file that is not a rule, a g line, a comment or blank."""
    for number, line in enumerate(re.split(r"\r?\n", text), start=1):
        if not _line().fullmatch(line):
            return (
                f"line {number}: cannot read {line[:120]!r}: use "
                "'p, SUBJECT, OBJECT, ACTION[, allow|deny[, EXPIRES_AT]]' or 'g, MEMBER, GROUP'"
            )
    return "not a policy file"


EXPIRY_FIELDS = (
    Field(
        "expires_in",
        pattern=f.DURATION,
        description="the rule expires after this long: 4s, 90m, 2h, 30d (with expires_at: "
        "whichever comes first)",
    ),
    Field(
        "expires_at",
        pattern=EXPIRY,
        max_length=40,
        description="the rule expires at this ISO 8601 time (UTC without an offset)",
    ),
)
IMPORT_FIELDS = (
    Field(
        "csv",
        pattern=POLICY_CSV,
        explain=policy_csv_problem,
        max_length=4 * 1024 * 1024,
        required=True,
        description="policy lines as `policy export` writes them (a rule's sixth field: its "
        "expiry)",
    ),
    Field("replace", "boolean", description="remove every line not in the file"),
)
HISTORY_QUERY = (
    Field("limit", "integer", minimum=1, maximum=10_000, description="default 100"),
    Field("before", "integer", minimum=1, maximum=2**31, description="versions older than this"),
)
DIFF_QUERY = (
    Field("from", "integer", minimum=1, maximum=2**31, required=True),
    Field("to", "integer", minimum=1, maximum=2**31, required=True),
)
ROLLBACK_FIELDS = (Field("version", "integer", minimum=1, maximum=2**31, required=True),)
