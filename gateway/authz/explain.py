"""Questions about the policy, answered the way the gateway decides: explain, who-can, my rights.

Shared by `mlflow-gateway policy check|who-can` and the admin console, so the shell and the browser
never disagree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gateway.authn.principal import Principal
from gateway.authz.enforcer import subjects_of
from gateway.authz.policy import Decision, PolicyIndex
from gateway.policy_lines import ADMIN_ROLE, Rule
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


def explain(
    index: PolicyIndex, principal: Principal, names: tuple[str, ...], action: str
) -> Decision:
    return index.decide(subjects_of(principal), names, normalise_action(action))


@dataclass(frozen=True)
class Holder:
    """Someone who may do the thing asked about, and the rule that lets them."""

    subject: str
    rule: Rule | None


def who_can(
    index: PolicyIndex, users: Iterable[UserRecord], names: tuple[str, ...], action: str
) -> list[Holder]:
    """Policy subjects (users, groups, roles) that may, then enabled local users who may through
    their local groups or admin flag without being named in the policy themselves."""
    action = normalise_action(action)
    found = [Holder(d.object, d.rule) for d in index.subjects_with(names, action)]
    named = {h.subject for h in found}
    for user in users:
        subject = f"user:{user.username}"
        if subject in named or user.disabled:
            continue
        decision = index.decide(subjects_of(principal_of(user.username, user)), names, action)
        if decision.allowed:
            found.append(Holder(subject, decision.rule))
    return sorted(found, key=lambda h: h.subject)


@dataclass(frozen=True)
class Right:
    """A rule that applies to a principal, and how it reaches them (``group:ml → role:x``)."""

    rule: Rule
    via: str


def _paths(index: PolicyIndex, start: frozenset[str]) -> dict[str, str]:
    """For every subject reachable from ``start``: the shortest chain of `g` lines to it."""
    parents: dict[str, list[str]] = {}
    for g in index.groupings:
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


def rights_of(index: PolicyIndex, principal: Principal) -> tuple[bool, list[Right]]:
    """(is admin, every rule that applies to the principal) — what "my access" shows."""
    paths = _paths(index, subjects_of(principal))
    rights = [Right(rule, paths[rule.subject]) for rule in index.rules if rule.subject in paths]
    return ADMIN_ROLE in paths, sorted(rights, key=lambda r: (r.rule.object, r.rule.action))
