"""The indexed evaluator answers exactly as plain pycasbin does on the shipped model, loaded the
way the gateway loads it at start (`load_model`: pycasbin reads the model file, the gateway's
functions registered with `add_function`)."""

from __future__ import annotations

import casbin
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.authz.actions import blocks, grants
from gateway.authz.casbin_engine import plain_casbin as runtime_plain_casbin
from gateway.authz.casbin_model import load_model
from gateway.authz.policy import PolicyIndex
from gateway.policy_lines import Grouping, PolicyDelta, Rule, object_matches

# What GATEWAY_CASBIN_MODEL defaults to: the packaged copy of policies/model.conf.
MODEL = load_model(None)

USERS = [f"user:u{i}" for i in range(4)]
GROUPS = [f"group:g{i}" for i in range(3)] + ["role:admin", "role:release"]
SUBJECTS = USERS + GROUPS
OBJECTS = [
    "experiment:1",
    "experiment:2",
    "experiment:12",
    "registered_model:fraud-a",
    "registered_model:churn",
    "experiment_name:/team-a/x",
]
PATTERNS = [
    *OBJECTS,
    "*",
    "experiment:*",
    "experiment:1*",
    "registered_model:fraud-*",
    "experiment_name:/team-a/*",
]
ACTIONS = [
    "read",
    "edit",
    "manage",
    "create",
    "promote:production",
    "promote:staging",
    "promote:*",
    "alias:champion",
    "alias:*",
    "*",
]
REQUESTED = [a for a in ACTIONS if "*" not in a]


def plain_casbin(rules: list[Rule], groupings: list[Grouping]) -> casbin.Enforcer:
    """pycasbin on the model as loaded at start, with its own role manager, the whole policy."""
    assert MODEL.shipped  # so the gateway decides this model with the index
    return runtime_plain_casbin(MODEL, rules, groupings)


rule_strategy = st.builds(
    Rule,
    st.sampled_from(SUBJECTS),
    st.sampled_from(PATTERNS),
    st.sampled_from(ACTIONS),
    st.sampled_from(["allow", "allow", "deny"]),
    # No expiry, long expired, far ahead: the index and pycasbin's notExpired(p.exp) alike.
    st.sampled_from(["", "", "2000-01-01T00:00:00Z", "2999-01-01T00:00:00Z"]),
)
grouping_strategy = st.builds(Grouping, st.sampled_from(SUBJECTS), st.sampled_from(GROUPS))


@settings(max_examples=300, deadline=None)
@given(
    rules=st.lists(rule_strategy, max_size=25),
    groupings=st.lists(grouping_strategy, max_size=8),
    requests=st.lists(
        st.tuples(st.sampled_from(SUBJECTS), st.sampled_from(OBJECTS), st.sampled_from(REQUESTED)),
        min_size=1,
        max_size=20,
    ),
)
def test_index_agrees_with_plain_casbin(rules, groupings, requests) -> None:
    index = PolicyIndex(rules, groupings)
    reference = plain_casbin(rules, groupings)
    for subject, obj, action in requests:
        expected = reference.enforce(subject, obj, action)
        decision = index.decide(frozenset({subject}), (obj,), action)
        assert decision.allowed == expected, (subject, obj, action)
        if decision.rule is not None:
            assert decision.rule in rules


def test_action_hierarchy() -> None:
    assert grants("manage", "read") and grants("manage", "edit") and grants("edit", "read")
    assert not grants("read", "edit") and not grants("edit", "manage")
    assert grants("manage", "promote:production") and grants("manage", "alias:champion")
    assert not grants("edit", "promote:staging")
    assert grants("promote:*", "promote:archived") and not grants("promote:*", "edit")
    assert grants("manage", "create") and not grants("edit", "create")
    assert blocks("edit", "manage") and blocks("edit", "edit") and not blocks("edit", "read")
    assert blocks("promote:*", "promote:production") and not blocks("promote:production", "manage")


def test_deny_overrides_allow_except_for_admins() -> None:
    rules = [
        Rule("group:team-a", "experiment:*", "edit"),
        Rule("user:bob", "experiment:7", "read", "deny"),
        Rule("role:admin", "*", "*"),
        Rule("role:admin", "experiment:7", "*", "deny"),
    ]
    groupings = [Grouping("user:bob", "group:team-a"), Grouping("user:root", "role:admin")]
    index = PolicyIndex(rules, groupings)
    denied = index.decide(frozenset({"user:bob"}), ("experiment:7",), "read")
    assert not denied.allowed
    assert denied.rule == Rule("user:bob", "experiment:7", "read", "deny")
    assert denied.explain() == "denied by rule 'p, user:bob, experiment:7, read, deny'"
    assert index.decide(frozenset({"user:bob"}), ("experiment:8",), "edit").allowed
    assert index.decide(frozenset({"user:root"}), ("experiment:7",), "manage").allowed
    nothing = index.decide(frozenset({"user:carol"}), ("experiment:8",), "read")
    assert not nothing.allowed and nothing.rule is None
    assert "denied by default" in nothing.explain()


@pytest.mark.parametrize(
    ("requested", "pattern", "expected"),
    [
        ("registered_model:fraud-a", "registered_model:fraud-*", True),
        ("registered_model:fraud", "registered_model:fraud-*", False),
        ("experiment_name:/team-a/x/y", "experiment_name:/team-a/*", True),
        ("experiment:12", "experiment:1", False),
        ("experiment_name:x", "experiment:*", False),
        ("registered_model:a.b", "registered_model:a?b", False),
    ],
)
def test_object_patterns(requested: str, pattern: str, expected: bool) -> None:
    assert object_matches(requested, pattern) is expected


@settings(max_examples=200, deadline=None)
@given(
    start_rules=st.lists(rule_strategy, max_size=20),
    start_groupings=st.lists(grouping_strategy, max_size=6),
    steps=st.lists(
        st.tuples(st.booleans(), st.one_of(rule_strategy, grouping_strategy)), max_size=30
    ),
)
def test_applied_changes_answer_like_a_rebuilt_index(start_rules, start_groupings, steps) -> None:
    """Replicas apply changed lines instead of rebuilding: both must give the same answers."""
    index = PolicyIndex(start_rules, start_groupings)
    lines = set(start_rules) | set(start_groupings)
    index.apply(PolicyDelta(1, tuple(steps)))
    for added, line in steps:
        if added:
            lines.add(line)
        else:
            lines.discard(line)
    rebuilt = PolicyIndex(
        [r for r in lines if isinstance(r, Rule)], [g for g in lines if isinstance(g, Grouping)]
    )
    assert index.rules == rebuilt.rules and index.groupings == rebuilt.groupings
    for subject in SUBJECTS:
        assert index.closure({subject}) == rebuilt.closure({subject})
        for obj in OBJECTS:
            for action in REQUESTED:
                request = (frozenset({subject}), (obj,), action)
                assert index.decide(*request) == rebuilt.decide(*request), request


def test_removing_the_last_rule_of_a_subject_forgets_it() -> None:
    rule = Rule("user:ann", "experiment:1", "read")
    index = PolicyIndex([rule], [Grouping("user:ann", "group:g")])
    assert index.remove(rule) and not index.remove(rule)
    assert index.remove(Grouping("user:ann", "group:g"))
    assert not index.decide(frozenset({"user:ann"}), ("experiment:1",), "read").allowed
    assert index.closure({"user:ann"}) == {"user:ann"} and len(index) == 0
