"""The index that answers decisions over the policy lines without scanning every rule.

Semantics are casbin's, with the model in policies/model.conf: a request (subject, object, action)
is allowed when some `p` rule of the subject or of a role/group it reaches through `g` lines
matches with effect allow, and no matching rule has effect deny. `role:admin` is never denied.
A rule whose expiry has passed matches nothing (the model's `notExpired(p.exp)`).
The index finds candidate rules by subject and by exact object, then tries the pattern rules of
those subjects only; answers are identical to plain casbin's (tests/unit/test_policy_index.py).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from gateway.authz.actions import CREATE, matches
from gateway.policy_lines import ADMIN_ROLE, Grouping, PolicyDelta, Rule, now_text, object_matches


@dataclass(frozen=True)
class Decision:
    allowed: bool
    # The rule that decided: the deny that refused, or an allow that permitted; None = no rule.
    rule: Rule | None
    object: str
    action: str

    def explain(self) -> str:
        if self.rule is None and self.allowed:
            # Only a site model can allow without a rule (`!some(where (p.eft == deny))`).
            return f"no rule denies {self.action} on {self.object} (allowed by the model's effect)"
        if self.rule is None:
            return f"no rule grants {self.action} on {self.object} (denied by default)"
        verb = "allowed" if self.allowed else "denied"
        return f"{verb} by rule '{self.rule}'"


def closure_of(parents: Mapping[str, Iterable[str]], subjects: Iterable[str]) -> frozenset[str]:
    """The subjects plus every group and role they reach through `g` lines, at any depth: the role
    hierarchy of both decision paths (the index's, and the role manager pycasbin asks)."""
    seen: set[str] = set()
    todo = list(subjects)
    while todo:
        subject = todo.pop()
        if subject not in seen:
            seen.add(subject)
            todo.extend(parents.get(subject, ()))
    return frozenset(seen)


class Decider(Protocol):
    """What decisions and their explanations ask of the active path: the index for the shipped
    model (`PolicyIndex`), pycasbin for any other (`gateway.authz.casbin_engine.CasbinEngine`)."""

    engine: str  # "index" or "casbin"

    @property
    def rules(self) -> tuple[Rule, ...]: ...

    @property
    def groupings(self) -> tuple[Grouping, ...]: ...

    def __len__(self) -> int: ...

    def apply(self, delta: PolicyDelta) -> None: ...

    def dismantle(self) -> None: ...

    def closure(self, subjects: Iterable[str]) -> frozenset[str]: ...

    def rules_of(self, subjects: Iterable[str]) -> list[Rule]: ...

    def decide(
        self, subjects: frozenset[str], objects: tuple[str, ...], action: str
    ) -> Decision: ...

    def is_admin(self, subjects: frozenset[str]) -> bool: ...

    def holds_any_right(self, subjects: frozenset[str], objects: tuple[str, ...]) -> bool: ...

    def subjects_with(self, objects: tuple[str, ...], action: str) -> list[Decision]: ...


@dataclass
class _SubjectRules:
    exact: dict[str, list[Rule]] = field(default_factory=lambda: defaultdict(list))
    patterns: list[Rule] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.exact or self.patterns)


class PolicyIndex:
    """The policy, indexed for decisions.

    Built whole from a snapshot, then kept current by applying the lines each change adds or
    removes (``apply``): a one-line change costs microseconds instead of a rebuild. Changes are
    applied synchronously on the event loop, so a decision sees the policy before or after a
    change, never half of it.
    """

    engine = "index"

    def __init__(self, rules: Iterable[Rule], groupings: Iterable[Grouping]) -> None:
        self._rules: set[Rule] = set()
        self._groupings: set[Grouping] = set()
        self._sorted_rules: tuple[Rule, ...] | None = None
        self._sorted_groupings: tuple[Grouping, ...] | None = None
        self._parents: dict[str, set[str]] = defaultdict(set)
        self._by_subject: dict[str, _SubjectRules] = defaultdict(_SubjectRules)
        for rule in rules:
            self.add(rule)
        for grouping in groupings:
            self.add(grouping)

    @property
    def rules(self) -> tuple[Rule, ...]:
        """Every `p` line, sorted (computed when asked: sorting 100k rules takes a while)."""
        if self._sorted_rules is None:
            self._sorted_rules = tuple(sorted(self._rules))
        return self._sorted_rules

    @property
    def groupings(self) -> tuple[Grouping, ...]:
        if self._sorted_groupings is None:
            self._sorted_groupings = tuple(sorted(self._groupings))
        return self._sorted_groupings

    def __len__(self) -> int:
        return len(self._rules) + len(self._groupings)

    def __contains__(self, line: object) -> bool:
        return line in self._rules or line in self._groupings

    def add(self, line: Rule | Grouping) -> bool:
        """Index one line; False when it was there already."""
        if isinstance(line, Grouping):
            if line in self._groupings:
                return False
            self._groupings.add(line)
            self._sorted_groupings = None
            self._parents[line.member].add(line.group)
            return True
        if line in self._rules:
            return False
        self._rules.add(line)
        self._sorted_rules = None
        self._bucket(line).append(line)
        return True

    def _bucket(self, rule: Rule) -> list[Rule]:
        """Where ``rule`` is indexed: its subject's patterns, or its rules on the object."""
        entry = self._by_subject[rule.subject]
        return entry.patterns if "*" in rule.object else entry.exact[rule.object]

    def remove(self, line: Rule | Grouping) -> bool:
        """Forget one line; False when it was not there."""
        if isinstance(line, Grouping):
            if line not in self._groupings:
                return False
            self._groupings.discard(line)
            self._sorted_groupings = None
            parents = self._parents.get(line.member)
            if parents is not None:
                parents.discard(line.group)
                if not parents:
                    del self._parents[line.member]
            return True
        if line not in self._rules:
            return False
        self._rules.discard(line)
        self._sorted_rules = None
        bucket = self._bucket(line)
        bucket.remove(line)
        entry = self._by_subject[line.subject]
        if not bucket and "*" not in line.object:
            del entry.exact[line.object]
        if not entry:
            del self._by_subject[line.subject]
        return True

    def dismantle(self) -> None:
        """Empty the index piece by piece. Dropping a large index at once frees its objects in one
        go, holding the interpreter (and so every other thread) until the last is freed; a loop
        lets other threads run in between."""
        while self._by_subject:
            self._by_subject.popitem()
        while self._parents:
            self._parents.popitem()
        while self._rules:
            self._rules.pop()
        self._groupings.clear()
        self._sorted_rules = self._sorted_groupings = None

    def apply(self, delta: PolicyDelta) -> None:
        for added, line in delta.changes:
            if added:
                self.add(line)
            else:
                self.remove(line)

    def closure(self, subjects: Iterable[str]) -> frozenset[str]:
        """The subjects plus every group and role they reach through `g` lines."""
        return closure_of(self._parents, subjects)

    def is_admin(self, subjects: frozenset[str]) -> bool:
        return ADMIN_ROLE in self.closure(subjects)

    def some_rules(self, count: int) -> list[Rule]:
        """Up to ``count`` rules, in no particular order (without sorting them all)."""
        return list(itertools.islice(self._rules, count))

    def all_subjects(self) -> set[str]:
        """Every subject the policy names: rules' subjects and `g` lines' members."""
        return set(self._by_subject) | set(self._parents)

    def candidates(self, subjects: frozenset[str], objects: tuple[str, ...]) -> list[Rule]:
        """The rules of these subjects on these objects that have not expired."""
        found = self._candidates(subjects, objects)
        if any(rule.expires_at for rule in found):
            now = now_text()
            return [rule for rule in found if not rule.expired(now)]
        return found

    def _candidates(self, subjects: frozenset[str], objects: tuple[str, ...]) -> list[Rule]:
        found: list[Rule] = []
        for subject in subjects:
            entry = self._by_subject.get(subject)
            if entry is None:
                continue
            for obj in objects:
                found.extend(entry.exact.get(obj, ()))
            found.extend(
                r for r in entry.patterns if any(object_matches(obj, r.object) for obj in objects)
            )
        return found

    def rules_of(self, subjects: Iterable[str]) -> list[Rule]:
        """Every rule whose subject is one of ``subjects`` (no `g` lines followed)."""
        found: list[Rule] = []
        for subject in subjects:
            entry = self._by_subject.get(subject)
            if entry is not None:
                found.extend(rule for rules in entry.exact.values() for rule in rules)
                found.extend(entry.patterns)
        return found

    def decide(self, subjects: frozenset[str], objects: tuple[str, ...], action: str) -> Decision:
        """``objects`` name one resource (its id, its name): a rule on any of them counts."""
        reach = self.closure(subjects)
        admin = ADMIN_ROLE in reach
        allow: Rule | None = None
        for rule in sorted(self.candidates(reach, objects)):
            if not matches(rule.action, action, rule.effect):
                continue
            if rule.effect == "deny" and not admin:
                return Decision(False, rule, objects[0], action)
            if rule.effect == "allow" and allow is None:
                allow = rule
        return Decision(allow is not None, allow, objects[0], action)

    def holds_any_right(self, subjects: frozenset[str], objects: tuple[str, ...]) -> bool:
        """Some allow rule reaches the object for these subjects and is not itself denied:
        the object is, in part, their business. `create` does not count: it is a right in a
        namespace (new names), not on an object that exists."""
        reach = self.closure(subjects)
        actions = {
            r.action
            for r in self.candidates(reach, objects)
            if r.effect == "allow" and r.action != CREATE
        }
        return any(self.decide(subjects, objects, action).allowed for action in actions)

    def subjects_with(self, objects: tuple[str, ...], action: str) -> list[Decision]:
        """Every subject named in the policy that may do ``action`` on the object (who-can)."""
        names = self.all_subjects()
        results = []
        for name in sorted(names):
            decision = self.decide(frozenset({name}), objects, action)
            if decision.allowed:
                results.append(Decision(True, decision.rule, name, action))
        return results
