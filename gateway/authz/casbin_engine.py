"""The casbin path: decisions by pycasbin, for a site model that is not the shipped one.

pycasbin holds every policy line and answers with the model's own matcher and effect. The
gateway's index (`PolicyIndex`) keeps the same lines and is used only as a filter, where the
matcher proves it safe: with a top-level `g(r.sub, p.sub)` conjunct, no rule of a subject the
caller does not reach can match; with `objMatch(r.obj, p.obj)`, no rule on another object. A rule
that cannot match adds nothing to any of the order-free effects the gateway accepts, so pycasbin
evaluating only the rest gives the answer it gives on the whole policy (the property test in
tests/unit/test_casbin_engine.py checks it against plain pycasbin).

The role manager pycasbin asks for `g(…)` is `GatewayRoleManager`: the `g` lines pycasbin is
given, followed at any depth with the index's own closure, plus what the principal brings with it
(IdP groups, `group:authenticated`, the admin flag) — so role semantics are the same on both
paths. Policy changes arrive as the lines each version added or removed and go to pycasbin with
its `add_policy`/`remove_policy`/`add_grouping_policy`/`remove_grouping_policy`: no reload.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

import casbin  # type: ignore[import-untyped]
from casbin.rbac import RoleManager  # type: ignore[import-untyped]
from casbin.rbac.default_role_manager import (  # type: ignore[import-untyped]
    RoleManager as StockRoleManager,
)

from gateway.authz.actions import CREATE
from gateway.authz.casbin_model import CasbinModel, RequestObject, new_enforcer
from gateway.authz.policy import Decision, PolicyIndex, closure_of
from gateway.policy_lines import ADMIN_ROLE, Grouping, PolicyDelta, Rule, now_text, object_matches

log = logging.getLogger(__name__)

# pycasbin's own role manager stops after 10 levels of `g` lines; the gateway follows them at any
# depth. Asking pycasbin directly (`policy check --engine casbin`) lifts its limit to this.
STOCK_HIERARCHY_LEVELS = 200


class RequestSubject(str):
    """The caller, as pycasbin's `r.sub`: its user (or the one subject asked about) as the string,
    and every subject it speaks for directly and through `g` lines in ``reach``."""

    reach: frozenset[str]

    def __new__(cls, name: str, reach: frozenset[str]) -> RequestSubject:
        made = super().__new__(cls, name)
        made.reach = reach
        return made


def primary_subject(subjects: frozenset[str]) -> str:
    """The name that stands for a set of subjects: its user, else the one subject asked about."""
    users = sorted(s for s in subjects if s.startswith("user:"))
    return users[0] if users else sorted(subjects)[0]


class GatewayRoleManager(RoleManager):  # type: ignore[misc]
    """pycasbin's role manager interface over `g` lines, followed with the index's closure."""

    def __init__(self) -> None:
        self._parents: defaultdict[str, set[str]] = defaultdict(set)

    def clear(self) -> None:
        self._parents.clear()

    def add_link(self, name1: str, name2: str, *domain: str) -> None:
        self._parents[name1].add(name2)

    def delete_link(self, name1: str, name2: str, *domain: str) -> None:
        parents = self._parents.get(name1)
        if parents is not None:
            parents.discard(name2)
            if not parents:
                del self._parents[name1]

    def reach(self, subjects: Iterable[str]) -> frozenset[str]:
        return closure_of(self._parents, subjects)

    def has_link(self, name1: str, name2: str, *domain: str) -> bool:
        reach = getattr(name1, "reach", None)
        if reach is None:
            reach = self.reach((name1,))
        return name2 in reach

    def get_roles(self, name: str, *domain: str) -> list[str]:
        return sorted(self._parents.get(name, ()))

    def get_users(self, name: str, *domain: str) -> list[str]:
        return sorted(member for member, groups in self._parents.items() if name in groups)

    def print_roles(self) -> None:
        return None


def _parsed_once(enforcer: casbin.Enforcer) -> None:
    """pycasbin parses the matcher anew on every enforce (a third of a decision's time). Keep the
    parsed expression: it reads its functions from the same map pycasbin refreshes on each call,
    and its names are set by each evaluation, so answers do not change."""
    parse = enforcer._get_expression
    parsed: dict[tuple[str, int], Any] = {}

    def get_expression(expr: str, functions: Any = None) -> Any:
        key = (expr, id(functions))
        found = parsed.get(key)
        if found is None:
            found = parsed[key] = parse(expr, functions)
        return found

    enforcer._get_expression = get_expression


class SortedLines(list):  # type: ignore[type-arg]
    """pycasbin's list of policy lines, kept sorted, with a set beside it: pycasbin asks
    `line in policy` before every add and remove and calls `remove` (each a scan of the whole list:
    milliseconds at 100,000 rules, per line of a delta); here they cost a set look-up and a binary
    search. `append` puts the line in its place, so the order — and so the rule a decision names —
    is the same on every replica, however it got its lines."""

    def __init__(self, lines: Iterable[list[str]] = ()) -> None:
        super().__init__(sorted(lines))
        self._members = {tuple(line) for line in self}

    def __contains__(self, line: object) -> bool:
        return isinstance(line, list | tuple) and tuple(line) in self._members

    def append(self, line: list[str]) -> None:
        key = tuple(line)
        if key not in self._members:
            self._members.add(key)
            self.insert(bisect.bisect_left(self, list(line)), list(line))

    def remove(self, line: list[str]) -> None:
        key = tuple(line)
        if key not in self._members:
            raise ValueError(f"{line} is not in the policy")
        self._members.discard(key)
        del self[bisect.bisect_left(self, list(line))]

    def clear(self) -> None:
        super().clear()
        self._members.clear()


def rule_fields(model: CasbinModel, rule: Rule) -> list[str]:
    """A rule as pycasbin's policy line: with its expiry when the model has the `exp` field."""
    fields = [rule.subject, rule.object, rule.action, rule.effect]
    return [*fields, rule.expires_at] if model.expiry else fields


def _rule(fields: list[str]) -> Rule | None:
    return Rule(*fields[:5]) if len(fields) >= 4 else None


class CasbinEngine:
    """Decisions by pycasbin on a site model; the index beside it for listing and filtering."""

    engine = "casbin"

    def __init__(self, model: CasbinModel, index: PolicyIndex) -> None:
        self.model = model
        self.index = index
        self.role_manager = GatewayRoleManager()
        self.enforcer = new_enforcer(model, self.role_manager)
        _parsed_once(self.enforcer)
        # Loaded as pycasbin's adapters load a policy (the lines into the assertions, then the
        # role links built).
        self._policy().policy = SortedLines(self._fields(rule) for rule in index.rules)
        self._grouping().policy = SortedLines([g.member, g.group] for g in index.groupings)
        self.enforcer.build_role_links()

    def _policy(self) -> Any:
        return self.enforcer.model["p"]["p"]

    def _fields(self, rule: Rule) -> list[str]:
        return rule_fields(self.model, rule)

    def _grouping(self) -> Any:
        return self.enforcer.model["g"]["g"]

    # -- the policy ------------------------------------------------------------------------------

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self.index.rules

    @property
    def groupings(self) -> tuple[Grouping, ...]:
        return self.index.groupings

    def __len__(self) -> int:
        return len(self.index)

    def apply(self, delta: PolicyDelta) -> None:
        """The changed lines, to the index and to pycasbin (each line a few list operations)."""
        self.index.apply(delta)
        for added, line in delta.changes:
            if isinstance(line, Grouping):
                if added:
                    self.enforcer.add_grouping_policy(line.member, line.group)
                else:
                    self.enforcer.remove_grouping_policy(line.member, line.group)
            elif added:
                self.enforcer.add_policy(*self._fields(line))
            else:
                self.enforcer.remove_policy(*self._fields(line))

    def dismantle(self) -> None:
        self.index.dismantle()
        for assertion in (self._policy(), self._grouping()):
            lines = assertion.policy
            lines._members.clear()
            while lines:
                lines.pop()
        self.role_manager.clear()

    # -- decisions -------------------------------------------------------------------------------

    def closure(self, subjects: Iterable[str]) -> frozenset[str]:
        return self.role_manager.reach(subjects)

    def is_admin(self, subjects: frozenset[str]) -> bool:
        return bool(self.role_manager.has_link(self._subject(subjects), ADMIN_ROLE))

    def _subject(self, subjects: frozenset[str]) -> RequestSubject:
        return RequestSubject(primary_subject(subjects), self.closure(subjects))

    def _candidates(self, reach: frozenset[str], objects: tuple[str, ...]) -> list[Rule] | None:
        """The rules that can match, sorted, expired ones left out (they leave the policy at
        their expiry whatever the model; the enforcer drops them then); None when the matcher
        proves nothing (every rule, as pycasbin holds them)."""
        if self.model.by_subject and self.model.by_object:
            return sorted(self.index.candidates(reach, objects))
        if self.model.by_subject:
            found = self.index.rules_of(reach)
        elif self.model.by_object:
            found = [
                r for r in self.index.rules if any(object_matches(o, r.object) for o in objects)
            ]
        else:
            return None
        now = now_text()
        return sorted(r for r in found if not r.expired(now))

    @contextlib.contextmanager
    def _only(self, rules: list[Rule] | None) -> Iterator[None]:
        """pycasbin evaluates ``rules`` alone for one decision (what FastEnforcer does with its
        policy filter); synchronous, so nothing else sees the swap."""
        if rules is None:
            yield
            return
        assertion = self._policy()
        everything = assertion.policy
        assertion.policy = [self._fields(rule) for rule in rules]
        try:
            yield
        finally:
            assertion.policy = everything

    def decide(self, subjects: frozenset[str], objects: tuple[str, ...], action: str) -> Decision:
        subject = self._subject(subjects)
        candidates = self._candidates(subject.reach, objects)
        if candidates == []:
            # No rule can match: the effect's answer for none (pycasbin would evaluate the matcher
            # once on empty fields, which a site's string functions may not survive).
            return Decision(self.model.allows_without_rules, None, objects[0], action)
        try:
            with self._only(candidates):
                allowed, explained = self.enforcer.enforce_ex(
                    subject, RequestObject(objects), action
                )
        except Exception as exc:  # the model's expression failed on this request: refuse
            log.error("casbin model %s failed on %s: %s", self.model.path, objects[0], exc)
            return Decision(False, None, objects[0], action)
        return Decision(bool(allowed), _rule(list(explained)), objects[0], action)

    def rules_of(self, subjects: Iterable[str]) -> list[Rule]:
        """The rules that may apply to these subjects under the model: those of the subjects
        when the matcher ties rules to `g(r.sub, p.sub)`, else every rule."""
        if self.model.by_subject:
            return self.index.rules_of(subjects)
        return list(self.index.rules)

    def holds_any_right(self, subjects: frozenset[str], objects: tuple[str, ...]) -> bool:
        """Whether pycasbin allows the caller some right on the object, among the rights allow
        rules that may apply name (`create` aside, as on the index path). False when unsure: a
        refusal then looks like MLflow's 404, which tells the caller nothing."""
        try:
            candidates = self._candidates(self.closure(subjects), objects)
            rules = candidates if candidates is not None else self.index.rules
            actions = sorted(
                {r.action for r in rules if r.effect == "allow" and r.action != CREATE}
            )
            return any(self.decide(subjects, objects, action).allowed for action in actions)
        except Exception as exc:  # the model's own functions failed: say no, and say why
            log.warning("holds_any_right on the casbin path: %s", exc)
            return False

    def subjects_with(self, objects: tuple[str, ...], action: str) -> list[Decision]:
        """Every subject named in the policy that pycasbin lets do ``action`` (who-can)."""
        results = []
        for name in sorted(self.index.all_subjects()):
            decision = self.decide(frozenset({name}), objects, action)
            if decision.allowed:
                results.append(Decision(True, decision.rule, name, action))
        return results


def plain_casbin(
    model: CasbinModel, rules: Iterable[Rule], groupings: Iterable[Grouping]
) -> casbin.Enforcer:
    """pycasbin as it comes, on the whole policy: its own role manager (depth limit lifted) and no
    index anywhere — what `policy check --engine casbin` and the tests ask."""
    enforcer = new_enforcer(model, StockRoleManager(STOCK_HIERARCHY_LEVELS))
    enforcer.model["p"]["p"].policy = [rule_fields(model, rule) for rule in sorted(rules)]
    enforcer.model["g"]["g"].policy = [[g.member, g.group] for g in sorted(groupings)]
    enforcer.build_role_links()
    return enforcer


def plain_decide(
    enforcer: casbin.Enforcer, subjects: frozenset[str], objects: tuple[str, ...], action: str
) -> Decision:
    """Ask plain pycasbin about a principal: what it brings with it (IdP groups,
    `group:authenticated`, the admin flag) becomes `g` lines of its user, as casbin would say it.
    The lines are added to ``enforcer`` (one made for the question)."""
    user = primary_subject(subjects)
    for subject in sorted(subjects - {user}):
        enforcer.add_grouping_policy(user, subject)
    allowed, explained = enforcer.enforce_ex(user, RequestObject(objects), action)
    return Decision(bool(allowed), _rule(list(explained)), objects[0], action)
