"""The casbin path: site models loaded and checked as at start, decided by pycasbin (filtered
through the index where the matcher proves it safe) exactly as plain pycasbin decides on the whole
policy; policy changes applied as deltas; the enforcer's questions answered on the active path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.authn.principal import Principal
from gateway.authz.casbin_engine import CasbinEngine, plain_casbin, plain_decide
from gateway.authz.casbin_model import SHIPPED_MODEL, ModelError, load_model, model_problems
from gateway.authz.enforcer import Enforcer, engine_for
from gateway.authz.policy import PolicyIndex
from gateway.config import ConfigError, load_settings
from gateway.policy_lines import Grouping, PolicyDelta, Rule, now_text

MODELS = Path(__file__).resolve().parent / "models"
ALLOW_OVERRIDE = MODELS / "allow_override.conf"
TENANT = MODELS / "tenant.conf"
REFORMATTED = MODELS / "shipped_reformatted.conf"
SHIPPED_TEXT = SHIPPED_MODEL.read_text()

USERS = [f"user:u{i}" for i in range(4)]
GROUPS = [f"group:g{i}" for i in range(3)] + [
    "role:admin",
    "group:tenant-acme",
    "group:tenant-zeta",
]
SUBJECTS = USERS + GROUPS
NAMES = [
    ("experiment:1", "experiment_name:/team-a/x"),
    ("experiment:2", "experiment_name:/team-b/y"),
    ("experiment:12",),
    ("registered_model:acme.fraud",),
    ("registered_model:zeta.churn",),
    ("registered_model:plain",),
    ("experiment_name:/team-a/new",),
]
PATTERNS = [
    "*",
    "experiment:1",
    "experiment:2",
    "experiment:*",
    "experiment:1*",
    "experiment_name:/team-a/*",
    "experiment_name:/team-a/x",
    "registered_model:*",
    "registered_model:acme.*",
    "registered_model:acme.fraud",
    "registered_model:plain",
]
ACTIONS = ["read", "edit", "manage", "create", "promote:production", "promote:*", "alias:*", "*"]
REQUESTED = [a for a in ACTIONS if "*" not in a]

rule_strategy = st.builds(
    Rule,
    st.sampled_from(SUBJECTS),
    st.sampled_from(PATTERNS),
    st.sampled_from(ACTIONS),
    st.sampled_from(["allow", "allow", "deny"]),
    # No expiry, long expired, far ahead: the index and pycasbin's notExpired(p.exp) alike.
    st.sampled_from(["", "", "2000-01-01T00:00:00Z", "2999-01-01T00:00:00Z"]),
)
# The store holds one rule per (subject, object, action, effect), whatever its expiry: a delta
# never holds two of them, which a model without `exp` could not tell apart.
unexpiring_rule_strategy = st.builds(
    Rule,
    st.sampled_from(SUBJECTS),
    st.sampled_from(PATTERNS),
    st.sampled_from(ACTIONS),
    st.sampled_from(["allow", "allow", "deny"]),
)
grouping_strategy = st.builds(Grouping, st.sampled_from(SUBJECTS), st.sampled_from(GROUPS))
# A principal: its user plus what it brings with it (IdP groups, group:authenticated, admin flag).
principal_strategy = st.builds(
    lambda user, extra: frozenset({user, "group:authenticated", *extra}),
    st.sampled_from(USERS),
    st.sets(st.sampled_from(GROUPS), max_size=2),
)
request_strategy = st.tuples(principal_strategy, st.sampled_from(NAMES), st.sampled_from(REQUESTED))


def site_model(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.conf"
    path.write_text(text)
    return path


# -- loading and comparing -------------------------------------------------------------------------


def test_the_shipped_model_is_the_shipped_model_however_it_is_written() -> None:
    shipped = load_model(None)
    assert shipped.shipped and shipped.engine == "index" and shipped.differs_in == ()
    assert shipped.by_subject and shipped.by_object
    # Spacing, comments and redundant parentheses are not a difference: the parsed sections are
    # compared, not the bytes.
    reformatted = load_model(REFORMATTED)
    assert reformatted.shipped and reformatted.text != shipped.text
    assert engine_for(reformatted, PolicyIndex((), ())).engine == "index"


def test_a_site_model_goes_to_pycasbin_and_says_why() -> None:
    allow = load_model(ALLOW_OVERRIDE)
    assert not allow.shipped and allow.differs_in == ("policy_effect",)
    assert engine_for(allow, PolicyIndex((), ())).engine == "casbin"
    assert "allow-override" in allow.describe() and "pycasbin" in allow.describe()
    tenant = load_model(TENANT)
    assert tenant.differs_in == ("policy_definition", "matchers")
    assert tenant.by_subject and tenant.by_object and not tenant.expiry and allow.expiry
    assert "the shipped model" in load_model(None).describe()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("r = sub, obj, act", "r = sub, dom, obj, act"), "the gateway asks (subject, object"),
        (("p = sub, obj, act, eft, exp", "p = sub, obj, act"), "write p = sub, obj, act, eft"),
        (("p = sub, obj, act, eft, exp", "p = sub, obj, act, eft"), "names p.exp"),
        (("g = _, _", "g = _, _, _"), "write g = _, _"),
        (
            (
                "e = some(where (p.eft == allow)) && !some(where (p.eft == deny))",
                "e = priority(p.eft) || deny",
            ),
            "priority effects depend on the order of rules",
        ),
        (("objMatch(r.obj", "fooMatch(r.obj"), "calls fooMatch(), which the gateway does not know"),
        (("r.act, p.eft)", "r.act, p.eft, r.tenant)"), "names r.tenant"),
        (("&& actMatch", "&& && actMatch"), "[matchers] cannot be read"),
        (('p.eft == "allow"', 'p.eft.split(":")[3] == "allow"'), "[matchers] fails on a request"),
        (("[matchers]", "[matcher]"), "has no [matchers] section"),
        (('p.eft == "allow"', 'eval(p.sub) == "allow"'), "uses eval()"),
    ],
)
def test_a_model_the_gateway_cannot_serve_is_refused_with_the_fix(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    assert change[0] in SHIPPED_TEXT
    path = site_model(tmp_path, SHIPPED_TEXT.replace(*change))
    with pytest.raises(ModelError, match=re.escape(message)):
        load_model(path)


def test_a_bad_model_is_a_configuration_problem(tmp_path: Path) -> None:
    path = site_model(tmp_path, SHIPPED_TEXT.replace("r = sub, obj, act", "r = sub, dom, obj, act"))
    problems = model_problems(path)
    assert len(problems) == 1 and problems[0].startswith(
        f"GATEWAY_CASBIN_MODEL={path} cannot be served"
    )
    with pytest.raises(ConfigError) as raised:
        load_settings({"GATEWAY_CASBIN_MODEL": str(path)})
    assert any("write r = sub, obj, act" in p for p in raised.value.problems)
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings({"GATEWAY_CASBIN_MODEL": str(tmp_path / "missing.conf")})
    assert (
        load_settings({"GATEWAY_CASBIN_MODEL": str(ALLOW_OVERRIDE)}).casbin_model == ALLOW_OVERRIDE
    )
    assert load_settings({}).casbin_model is None


# -- the casbin path answers as plain pycasbin -----------------------------------------------------


@pytest.mark.parametrize("model_path", [ALLOW_OVERRIDE, TENANT, REFORMATTED])
@settings(max_examples=120, deadline=None)
@given(
    rules=st.lists(rule_strategy, max_size=25),
    groupings=st.lists(grouping_strategy, max_size=8),
    requests=st.lists(request_strategy, min_size=1, max_size=12),
)
def test_the_casbin_path_answers_as_plain_pycasbin(
    model_path: Path, rules, groupings, requests
) -> None:
    """Filtered through the index or not, with the gateway's role manager or pycasbin's own (the
    principal's groups as `g` lines of its user), the same answer and the same deciding rule."""
    model = load_model(model_path)
    engine = CasbinEngine(model, PolicyIndex(rules, groupings))
    # A model with the `exp` field sees expiries itself; one without is never given an expired
    # rule (the gateway takes each out of the policy at its expiry).
    now = now_text()
    given = rules if model.expiry else [r for r in rules if not r.expired(now)]
    for subjects, names, action in requests:
        ours = engine.decide(subjects, names, action)
        theirs = plain_decide(plain_casbin(model, given, groupings), subjects, names, action)
        assert ours == theirs, (subjects, names, action)
    # The shipped model written another way: the index decides it, with the same answers.
    if model_path == REFORMATTED:
        index = PolicyIndex(rules, groupings)
        for subjects, names, action in requests:
            assert (
                index.decide(subjects, names, action).allowed
                == engine.decide(subjects, names, action).allowed
            )


@settings(max_examples=100, deadline=None)
@given(
    start_rules=st.lists(unexpiring_rule_strategy, max_size=15),
    start_groupings=st.lists(grouping_strategy, max_size=6),
    steps=st.lists(
        st.tuples(st.booleans(), st.one_of(unexpiring_rule_strategy, grouping_strategy)),
        max_size=25,
    ),
    requests=st.lists(request_strategy, min_size=1, max_size=10),
)
def test_deltas_reach_pycasbin_as_a_rebuild_would(
    start_rules, start_groupings, steps, requests
) -> None:
    model = load_model(TENANT)
    engine = CasbinEngine(model, PolicyIndex(start_rules, start_groupings))
    lines = set(start_rules) | set(start_groupings)
    engine.apply(PolicyDelta(1, tuple(steps)))
    for added, line in steps:
        (lines.add if added else lines.discard)(line)
    rules = sorted(r for r in lines if isinstance(r, Rule))
    groupings = sorted(g for g in lines if isinstance(g, Grouping))
    rebuilt = CasbinEngine(model, PolicyIndex(rules, groupings))
    # pycasbin holds exactly the policy's lines, in the same order as after a full load.
    assert engine.enforcer.get_policy() == rebuilt.enforcer.get_policy()
    assert sorted(engine.enforcer.get_grouping_policy()) == sorted(
        rebuilt.enforcer.get_grouping_policy()
    )
    for subjects, names, action in requests:
        assert engine.decide(subjects, names, action) == rebuilt.decide(subjects, names, action)
        assert engine.closure(subjects) == rebuilt.closure(subjects)


# -- what the done-when asks, and the site models' own semantics -----------------------------------

PAIR = [
    Rule("role:admin", "*", "*"),
    Rule("user:bob", "experiment:7", "read"),
    Rule("user:bob", "experiment:7", "read", "deny"),
]


def test_allow_override_allows_an_allow_and_deny_pair_the_shipped_model_denies() -> None:
    bob = frozenset({"user:bob", "group:authenticated"})
    shipped = engine_for(load_model(None), PolicyIndex(PAIR, ()))
    site = engine_for(load_model(ALLOW_OVERRIDE), PolicyIndex(PAIR, ()))
    assert not shipped.decide(bob, ("experiment:7",), "read").allowed
    decision = site.decide(bob, ("experiment:7",), "read")
    assert decision.allowed and decision.rule == Rule("user:bob", "experiment:7", "read")
    assert decision.explain() == "allowed by rule 'p, user:bob, experiment:7, read, allow'"


def test_the_tenant_condition_confines_rules_to_their_tenant() -> None:
    rules = [Rule("role:admin", "*", "*"), Rule("group:ds", "registered_model:*", "read")]
    groupings = [Grouping("user:ann", "group:ds"), Grouping("user:ann", "group:tenant-acme")]
    engine = engine_for(load_model(TENANT), PolicyIndex(rules, groupings))
    ann = frozenset({"user:ann"})
    assert engine.decide(ann, ("registered_model:acme.fraud",), "read").allowed
    assert not engine.decide(ann, ("registered_model:zeta.churn",), "read").allowed
    assert engine.decide(ann, ("registered_model:untenanted",), "read").allowed
    # An IdP group counts like a `g` line: the same role semantics on both paths.
    zed = frozenset({"user:zed", "group:ds", "group:tenant-zeta"})
    assert engine.decide(zed, ("registered_model:zeta.churn",), "read").allowed
    admin = frozenset({"user:root", "role:admin"})
    assert engine.decide(admin, ("registered_model:zeta.churn",), "manage").allowed


def test_deny_override_allows_by_default_and_says_so(tmp_path: Path) -> None:
    path = site_model(
        tmp_path,
        SHIPPED_TEXT.replace(
            "e = some(where (p.eft == allow)) && !some(where (p.eft == deny))",
            "e = !some(where (p.eft == deny))",
        ),
    )
    engine = engine_for(
        load_model(path), PolicyIndex([Rule("user:bob", "experiment:1", "read", "deny")], ())
    )
    open_ = engine.decide(frozenset({"user:ann"}), ("experiment:1",), "read")
    assert (
        open_.allowed and open_.rule is None and "allowed by the model's effect" in open_.explain()
    )
    assert not engine.decide(frozenset({"user:bob"}), ("experiment:1",), "read").allowed


def test_a_matcher_without_filters_scans_every_rule(tmp_path: Path) -> None:
    path = site_model(
        tmp_path,
        SHIPPED_TEXT.replace(
            "m = g(r.sub, p.sub) && objMatch(r.obj, p.obj)",
            'm = (g(r.sub, p.sub) || p.sub == "group:everyone") && keyMatch(r.obj, p.obj)',
        ),
    )
    model = load_model(path)
    assert not (model.by_subject or model.by_object) and "scans every rule" in model.describe()
    rules = [Rule("group:everyone", "experiment:*", "read"), Rule("user:x", "experiment:2", "edit")]
    engine = engine_for(model, PolicyIndex(rules, ()))
    assert engine.decide(frozenset({"user:y"}), ("experiment:5",), "read").allowed
    assert not engine.decide(frozenset({"user:y"}), ("experiment:2",), "edit").allowed
    assert engine.rules_of(["user:y"]) == sorted(rules)


# -- the enforcer's questions on the casbin path ---------------------------------------------------


def casbin_enforcer(rules: list[Rule], groupings: list[Grouping]) -> Enforcer:
    enforcer = Enforcer(None, None, model=load_model(ALLOW_OVERRIDE))  # type: ignore[arg-type]
    enforcer.index = PolicyIndex(rules, groupings)
    return enforcer


def test_every_enforcer_question_takes_the_casbin_answer() -> None:
    rules = [
        *PAIR,
        Rule("group:team", "experiment:8", "edit"),
        Rule("user:bob", "experiment:9", "read", "deny"),
    ]
    enforcer = casbin_enforcer(rules, [Grouping("group:ops", "role:admin")])
    assert enforcer.engine_name == "casbin" and "pycasbin" in enforcer.decided_by
    bob = Principal(subject="bob", method="token")
    assert enforcer.decide(bob, ("experiment:7",), "read").allowed
    assert enforcer.holds_any_right(bob, ("experiment:7",))
    assert not enforcer.holds_any_right(bob, ("experiment:9",))
    # Searches are not steered on the casbin path (each result is still judged).
    assert enforcer.readable_experiment_ids(bob) is None
    assert enforcer.is_admin(Principal(subject="o", method="token", groups=frozenset({"ops"})))
    assert not enforcer.is_admin(bob)
    team = Principal(subject="t", method="token", groups=frozenset({"team"}))
    assert enforcer.decide(team, ("experiment:8",), "read").allowed
    # A change: the decision cache forgets, pycasbin gets the lines.
    enforcer._apply(PolicyDelta(5, ((False, Rule("group:team", "experiment:8", "edit")),)))
    assert not enforcer.decide(team, ("experiment:8",), "read").allowed
    assert [
        "group:team",
        "experiment:8",
        "edit",
        "allow",
    ] not in enforcer.engine.enforcer.get_policy()  # type: ignore[attr-defined]
    assert "an uncached decision took" in enforcer.log_path()


def test_the_shipped_model_keeps_the_index_and_its_steering() -> None:
    enforcer = Enforcer(None, None)  # type: ignore[arg-type]
    enforcer.index = PolicyIndex([Rule("user:bob", "experiment:3", "read")], ())
    assert enforcer.engine is enforcer.index and enforcer.engine_name == "index"
    assert enforcer.readable_experiment_ids(Principal(subject="bob", method="token")) == {"3"}
