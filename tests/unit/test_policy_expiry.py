"""Rules that expire, as lines: the sixth CSV field read in one spelling, what the API's schema
admits is exactly what the parser reads, and the clock of expiries each replica keeps."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.admin.policy_fields import EXPIRY, POLICY_CSV
from gateway.authz.expiry import ExpiryClock
from gateway.authz.policy import PolicyIndex
from gateway.policy_lines import (
    PROTECTED_RULE,
    PolicyError,
    Rule,
    expiry_from,
    expiry_moment,
    now_text,
    parse_expiry,
    parse_line,
    parse_lines,
)


def test_a_rule_reads_with_four_five_or_six_fields() -> None:
    assert parse_line("p, user:a, experiment:1, read") == Rule("user:a", "experiment:1", "read")
    assert parse_line("p, user:a, experiment:1, read, deny,") == Rule(
        "user:a", "experiment:1", "read", "deny"
    )
    rule = parse_line("p, user:a, experiment:1, read, allow, 2026-12-31T18:00:00+02:00")
    assert isinstance(rule, Rule) and rule.expires_at == "2026-12-31T16:00:00Z"
    assert str(rule) == "p, user:a, experiment:1, read, allow, 2026-12-31T16:00:00Z"
    assert parse_line(str(rule)) == rule and rule.key == Rule("user:a", "experiment:1", "read")
    with pytest.raises(PolicyError, match="invalid expiry 'soon'"):
        parse_line("p, user:a, experiment:1, read, allow, soon")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-31", "2026-12-31T00:00:00Z"),
        ("2026-12-31 18:00", "2026-12-31T18:00:00Z"),
        ("2026-12-31t18:00:00z", "2026-12-31T18:00:00Z"),
        ("2026-12-31T18:00:00.999+0530", "2026-12-31T12:30:00Z"),
        ("9999-12-31T23:00:00-05:00", "9999-12-31T23:59:59Z"),
        ("0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00Z"),
    ],
)
def test_expiries_are_kept_in_utc_to_the_second(text: str, expected: str) -> None:
    assert parse_expiry(text) == expected


def test_a_duration_or_a_time_or_both_the_earlier() -> None:
    assert expiry_from(None, None) == ""
    soon = expiry_from("2h", None)
    assert 7190 < expiry_moment(soon) - expiry_moment(now_text()) <= 7200
    assert expiry_from("2h", "2999-01-01") == soon
    assert expiry_from("2h", "2000-01-01") == "2000-01-01T00:00:00Z"
    with pytest.raises(PolicyError, match="invalid duration"):
        expiry_from("forever", None)


def test_the_admin_rule_cannot_expire() -> None:
    with pytest.raises(PolicyError, match="cannot expire"):
        Rule(
            *[getattr(PROTECTED_RULE, f) for f in ("subject", "object", "action", "effect")],
            expires_at="2999-01-01T00:00:00Z",
        ).validate()


@settings(max_examples=400, deadline=None)
@given(st.from_regex(re.compile(rf"^(?:{EXPIRY})\Z"), fullmatch=True))
def test_every_expiry_the_schema_admits_is_read(text: str) -> None:
    parsed = parse_expiry(text)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", parsed)
    line = f"p, user:a, experiment:1, read, allow, {text}"
    assert re.fullmatch(POLICY_CSV, line)
    assert parse_lines(line)[0] == Rule("user:a", "experiment:1", "read", "allow", parsed)


@pytest.mark.parametrize("day", ["2026-02-29", "2026-04-31", "2026-13-01", "0000-01-01"])
def test_days_no_calendar_has_are_not_admitted(day: str) -> None:
    assert not re.fullmatch(EXPIRY, day)
    assert re.fullmatch(EXPIRY, "2028-02-29") and re.fullmatch(EXPIRY, "2000-02-29")


def test_the_clock_gives_the_due_rules_in_order() -> None:
    early = Rule("user:a", "experiment:1", "read", "allow", "2000-01-01T00:00:00Z")
    later = Rule("user:a", "experiment:2", "read", "allow", "2000-01-02T00:00:00Z")
    never = Rule("user:a", "experiment:3", "read")
    clock = ExpiryClock()
    clock.reset([later, never])
    clock.track([early])
    assert len(clock) == 2 and clock.next_at == expiry_moment(early.expires_at)
    assert clock.due(expiry_moment(early.expires_at)) == [early]
    assert clock.due(expiry_moment(later.expires_at) + 1) == [later]
    assert clock.next_at == float("inf")


def test_the_index_leaves_expired_rules_out() -> None:
    past = Rule("user:a", "experiment:1", "read", "allow", "2000-01-01T00:00:00Z")
    ahead = Rule("user:a", "experiment:2", "read", "allow", parse_expiry("2999-01-01"))
    index = PolicyIndex([past, ahead], ())
    who = frozenset({"user:a"})
    assert not index.decide(who, ("experiment:1",), "read").allowed
    assert index.decide(who, ("experiment:2",), "read").rule == ahead
    assert not index.holds_any_right(who, ("experiment:1",))
