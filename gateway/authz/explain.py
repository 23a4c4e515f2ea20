"""Questions about the policy, answered the way the gateway decides: explain, who-can, my rights.

Shared by `mlflow-gateway policy check|who-can` and the admin console, so the shell and the browser
never disagree; each takes the active decision path (the index for the shipped model, pycasbin for
a site model: `gateway.authz.policy.Decider`), so neither disagrees with the gateway.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gateway.authn.principal import Principal
from gateway.authz.enforcer import subjects_of
from gateway.authz.policy import Decider, Decision
from gateway.policy_lines import Rule
from gateway.store.users import UserRecord


def principal_of(name: str, user: UserRecord | None, extra_groups: Iterable[str] = ()) -> Principal:
    """How the gateway would see ``name``: its local record, or (unknown locally, e.g. an IdP
    user who never signed in) the name alone. ``extra_groups`` stand for groups an IdP sends."""
    if user is None:
        return Principal(subject=name, method="password", groups=frozenset(extra_groups))
    return Principal(
        subject=user.username,
        method="password",
        groups=frozenset(user.groups) | frozenset(extra_groups),
        is_admin=user.is_admin,
    )


def normalise_action(action: str) -> str:
    # As the gateway does: MLflow stage names (and so promotion rights) ignore case.
    return action.lower() if action.startswith(("promote:", "alias:")) else action


def explain(engine: Decider, principal: Principal, names: tuple[str, ...], action: str) -> Decision:
    return engine.decide(subjects_of(principal), names, normalise_action(action))


@dataclass(frozen=True)
class Holder:
    """Someone who may do the thing asked about, and the rule that lets them."""

    subject: str
    rule: Rule | None


def who_can(
    engine: Decider, users: Iterable[UserRecord], names: tuple[str, ...], action: str
) -> list[Holder]:
    """Policy subjects (users, groups, roles) that may, then enabled local users who may through
    their local groups or admin flag without being named in the policy themselves."""
    action = normalise_action(action)
    found = [Holder(d.object, d.rule) for d in engine.subjects_with(names, action)]
    named = {h.subject for h in found}
    for user in users:
        subject = f"user:{user.username}"
        if subject in named or user.disabled:
            continue
        decision = engine.decide(subjects_of(principal_of(user.username, user)), names, action)
        if decision.allowed:
            found.append(Holder(subject, decision.rule))
    return sorted(found, key=lambda h: h.subject)


@dataclass(frozen=True)
class Right:
    """A rule that applies to a principal, and how it reaches them (``group:ml → role:x``)."""

    rule: Rule
    via: str


def _paths(engine: Decider, start: frozenset[str]) -> dict[str, str]:
    """For every subject reachable from ``start``: the shortest chain of `g` lines to it."""
    parents: dict[str, list[str]] = {}
    for g in engine.groupings:
        parents.setdefault(g.member, []).append(g.group)
    paths = {subject: subject for subject in start}
    todo = sorted(start)
    while todo:
        subject = todo.pop(0)
        for parent in sorted(parents.get(subject, ())):
            if parent not in paths:
                paths[parent] = f"{paths[subject]} → {parent}"
                todo.append(parent)
    return paths


def rights_of(engine: Decider, principal: Principal) -> tuple[bool, list[Right]]:
    """(is admin, every rule that applies to the principal) — what "my access" shows. On the
    casbin path with a matcher that does not tie rules to `g(r.sub, p.sub)`, every rule may
    apply; those of other subjects show their own subject as the way."""
    subjects = subjects_of(principal)
    paths = _paths(engine, subjects)
    rights = [Right(rule, paths.get(rule.subject, rule.subject)) for rule in engine.rules_of(paths)]
    return engine.is_admin(subjects), sorted(
        rights, key=lambda r: (r.rule.object, r.rule.action, r.rule.subject, r.rule.effect)
    )
