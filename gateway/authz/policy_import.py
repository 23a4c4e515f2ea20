"""Importing a policy file: which lines go when the file replaces the policy."""

from __future__ import annotations

from collections.abc import Iterable

from gateway.policy_lines import PROTECTED_RULE, Grouping, Rule


def stale_lines(
    current: Iterable[Rule | Grouping], wanted: Iterable[Rule | Grouping]
) -> list[Rule | Grouping]:
    """The lines a replacing import removes: those not in the file, except the admin rule."""
    keep = set(wanted)
    return [line for line in current if line not in keep and line != PROTECTED_RULE]
