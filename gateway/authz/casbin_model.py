"""The casbin model the gateway decides with: read by pycasbin at start, checked, compared.

`GATEWAY_CASBIN_MODEL` names a casbin model file (default: the shipped `policies/model.conf`,
packaged as `gateway/policy_files/model.conf`). pycasbin reads it; then the gateway checks that it
can serve it — it asks casbin one question per resource, `(subject, object, action)`, over
stored lines `p, subject, object, action, effect` and `g, member, group` — and compares its parsed
sections with the shipped model's. Equal sections (whitespace, comments and redundant parentheses
aside) mean equal answers, so the index decides (`gateway/authz/policy.py`); any other model is
decided by pycasbin (`gateway/authz/casbin_engine.py`).

The matcher's custom functions are registered with pycasbin's `add_function`: `objMatch` is
`object_matches` over every name of the resource (an experiment is judged by `experiment:<id>` and
`experiment_name:<name>` at once), `actMatch` is the right hierarchy (`gateway/authz/actions.py`),
`notExpired` says whether a rule's expiry (its `exp` field, "" for never) is still ahead.

A rule's expiry is a fifth policy field, `exp`, for models that declare it
(`p = sub, obj, act, eft, exp`, as the shipped model does); the model's matcher decides what it
means. A model without it is given four fields and never sees expiries (the enforcer still drops
an expired rule from every path at its expiry).
"""

from __future__ import annotations

import ast
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import casbin  # type: ignore[import-untyped]
from casbin.model import FunctionMap  # type: ignore[import-untyped]

from gateway.authz.actions import matches
from gateway.policy_lines import ADMIN_ROLE, now_text, object_matches

SHIPPED_MODEL = Path(__file__).absolute().parent.parent / "policy_files" / "model.conf"

REQUEST = ("r_sub", "r_obj", "r_act")
POLICY = ("p_sub", "p_obj", "p_act", "p_eft")
EXPIRY = "p_exp"
# pycasbin's effects whose answer does not depend on the order of the rules: the gateway's policy
# is a set (every replica may hold its lines in another order), so priority effects cannot serve.
EFFECTS = {
    "some(where (p_eft == allow))": "allow-override: any matching allow allows",
    "!some(where (p_eft == deny))": "deny-override: allowed unless a matching deny",
    "some(where (p_eft == allow)) && !some(where (p_eft == deny))": (
        "some allow and no deny: a matching deny beats every allow"
    ),
}
SECTIONS = {
    "r": "request_definition",
    "p": "policy_definition",
    "g": "role_definition",
    "e": "policy_effect",
    "m": "matchers",
}


class ModelError(ValueError):
    """A model file the gateway cannot serve; the message says what is wrong and how to fix it."""


class RequestObject(str):
    """The resource a decision is about, as pycasbin's `r.obj`: its first name as the string (an
    experiment's `experiment:<id>`), every name of it in ``names`` (its id and its name), which
    `objMatch` tries one by one."""

    names: tuple[str, ...]

    def __new__(cls, names: tuple[str, ...]) -> RequestObject:
        made = super().__new__(cls, names[0])
        made.names = names
        return made


def object_match(requested: str, pattern: str) -> bool:
    """`objMatch(r.obj, p.obj)`: a rule on any of the resource's names counts."""
    names = getattr(requested, "names", None)
    if names is None:
        return object_matches(requested, pattern)
    return any(object_matches(name, pattern) for name in names)


def action_match(rule_action: str, requested: str, effect: str) -> bool:
    """`actMatch(p.act, r.act, p.eft)`: the allow rule grants the right, or the deny blocks it."""
    return matches(rule_action, requested, effect)


def not_expired(expires_at: str) -> bool:
    """`notExpired(p.exp)`: the rule has no expiry, or it is still ahead."""
    return not expires_at or expires_at > now_text()


GATEWAY_FUNCTIONS: dict[str, Callable[..., bool]] = {
    "objMatch": object_match,
    "actMatch": action_match,
    "notExpired": not_expired,
}


@dataclass(frozen=True)
class CasbinModel:
    """A model pycasbin read and the gateway can serve."""

    path: Path
    text: str
    # Each section's assertion as pycasbin parsed it, normalised: what "the same model" compares.
    sections: tuple[tuple[str, str], ...]
    shipped: bool
    # Sections in which it differs from the shipped model (empty for the shipped model).
    differs_in: tuple[str, ...]
    effect: str
    # Top-level conjuncts of the matcher that let a decision skip rules that cannot match:
    # `g(r.sub, p.sub)` (only rules of subjects the caller reaches) and `objMatch(r.obj, p.obj)`
    # (only rules on one of the resource's names).
    by_subject: bool
    by_object: bool
    # The rules have a fifth field, `exp` (their expiry): pycasbin is given it.
    expiry: bool = False

    @property
    def allows_without_rules(self) -> bool:
        """The effect's answer when no rule matches (only deny-override allows)."""
        return self.effect == "!some(where (p_eft == deny))"

    @property
    def engine(self) -> str:
        return "index" if self.shipped else "casbin"

    @property
    def filtering(self) -> str:
        """How the casbin path narrows the rules pycasbin evaluates for one decision."""
        if self.by_subject and self.by_object:
            return "the caller's subjects' rules on the resource's names"
        if self.by_subject:
            return "the caller's subjects' rules"
        if self.by_object:
            return "the rules on the resource's names"
        return "every rule"

    def describe(self) -> str:
        """One line for the start log and `doctor`: which path decides and what it costs."""
        if self.shipped:
            return (
                f"model {self.path}: the shipped model — decisions from the policy index and "
                "the decision cache (microseconds; docs/benchmarks.md)"
            )
        cost = (
            "each decision scans every rule (about a second at 100,000 rules: give the matcher "
            "a top-level g(r.sub, p.sub) and objMatch(r.obj, p.obj))"
            if not (self.by_subject or self.by_object)
            else "a decision not in the cache costs pycasbin's evaluation of those rules "
            "(measured in docs/benchmarks.md)"
        )
        return (
            f"model {self.path}: a site model (differs from the shipped one in "
            f"{', '.join(self.differs_in)}; effect: {EFFECTS[self.effect]}) — decisions by "
            f"pycasbin on {self.filtering}, behind the decision cache; {cost}"
        )


def _normalised(value: str) -> str:
    return " ".join(value.split())


def _matcher_tree(value: str) -> ast.expr:
    """The matcher as pycasbin evaluates it (`&&`, `||`, `!` as Python's `and`, `or`, `not`)."""
    expression = value.replace("&&", " and ").replace("||", " or ")
    expression = re.sub(r"!(?!=)", " not ", expression)
    try:
        return ast.parse(expression.strip(), mode="eval").body
    except SyntaxError as exc:
        raise ModelError(f"[matchers] cannot be read: {exc.msg} in {value!r}") from None


def _conjuncts(tree: ast.expr) -> list[ast.expr]:
    if isinstance(tree, ast.BoolOp) and isinstance(tree.op, ast.And):
        return [part for value in tree.values for part in _conjuncts(value)]
    return [tree]


def _is_call(node: ast.expr, function: str, *args: str) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == function
        and not node.keywords
        and [a.id if isinstance(a, ast.Name) else None for a in node.args] == list(args)
    )


def _check_names(tree: ast.expr, known_functions: Iterable[str], policy: Iterable[str]) -> None:
    functions = set(known_functions)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id not in functions:
                raise ModelError(
                    f"[matchers] calls {node.func.id}(), which the gateway does not know — use "
                    f"g, objMatch, actMatch, notExpired or one of casbin's functions "
                    f"({', '.join(sorted(functions - {'g', *GATEWAY_FUNCTIONS}))})"
                )
        elif isinstance(node, ast.Name) and node.id not in (*REQUEST, *policy, *functions):
            raise ModelError(
                f"[matchers] names {node.id.replace('_', '.', 1)}, which the gateway's requests "
                "and rules do not have — use r.sub, r.obj, r.act, p.sub, p.obj, p.act, p.eft "
                "(and p.exp when [policy_definition] declares it)"
            )


def _parse(path: Path) -> tuple[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelError(f"{path} cannot be read ({exc.strerror or exc})") from None
    try:
        return text, casbin.Enforcer.new_model(text=text)
    except Exception as exc:  # pycasbin's config reader raises whatever it meets
        raise ModelError(f"pycasbin cannot read {path}: {exc}") from None


def _sections(model: Any) -> dict[str, dict[str, Any]]:
    # pycasbin's Model is no mapping: `in` needs its keys().
    return {sec: dict(model[sec]) for sec in SECTIONS if sec in model.keys()}  # noqa: SIM118


def _check(path: Path, model: Any) -> tuple[str, ast.expr]:
    """What makes a model servable; returns its effect and matcher. Raises ModelError."""
    found = _sections(model)
    for sec, name in SECTIONS.items():
        if sec not in found:
            raise ModelError(f"{path} has no [{name}] section — every casbin model needs one")
        extra = sorted(set(found[sec]) - {sec})
        if extra:
            raise ModelError(
                f"[{name}] defines {', '.join(extra)}: the gateway asks one kind of request "
                f"of one kind of rule and one role hierarchy — keep only {sec} = …"
            )
    request = found["r"]["r"].tokens
    if request != list(REQUEST):
        raise ModelError(
            f"[request_definition] is r = {found['r']['r'].value}: the gateway asks "
            "(subject, object, action) — write r = sub, obj, act"
        )
    policy = found["p"]["p"].tokens
    if policy not in (list(POLICY), [*POLICY, EXPIRY]):
        raise ModelError(
            f"[policy_definition] is p = {found['p']['p'].value}: the gateway's rules are "
            "`p, subject, object, action, effect[, expiry]` — write p = sub, obj, act, eft "
            "(or p = sub, obj, act, eft, exp to see expiries)"
        )
    role = _normalised(found["g"]["g"].value)
    if role.replace(" ", "") != "_,_":
        raise ModelError(
            f"[role_definition] is g = {role}: the gateway's `g` lines are "
            "`g, member, group` (no domains, no conditions) — write g = _, _"
        )
    effect = _normalised(found["e"]["e"].value)
    if effect not in EFFECTS:
        raise ModelError(
            f"[policy_effect] e = {effect.replace('p_', 'p.')} cannot be served — use "
            + " or ".join(f"`{e.replace('p_', 'p.')}`" for e in EFFECTS)
            + " (priority effects depend on the order of rules; the gateway's policy has none)"
        )
    matcher = found["m"]["m"].value
    if re.search(r"\beval\(", matcher):
        raise ModelError(
            "[matchers] uses eval(): the gateway's rules hold subjects, objects and actions, "
            "not expressions — write the condition in the matcher"
        )
    tree = _matcher_tree(matcher)
    functions = [*FunctionMap.load_function_map().get_functions(), *GATEWAY_FUNCTIONS, "g"]
    _check_names(tree, functions, policy)
    return effect, tree


def _comparable(model: Any, tree: ast.expr) -> dict[str, str]:
    found = _sections(model)
    return {
        "request_definition": ", ".join(found["r"]["r"].tokens),
        "policy_definition": ", ".join(found["p"]["p"].tokens),
        "role_definition": _normalised(found["g"]["g"].value).replace(" ", ""),
        "policy_effect": _normalised(found["e"]["e"].value),
        "matchers": ast.dump(tree, annotate_fields=False),
    }


def _read(path: Path) -> tuple[str, dict[str, str], str, ast.expr]:
    text, model = _parse(path)
    effect, tree = _check(path, model)
    return text, _comparable(model, tree), effect, tree


@lru_cache(maxsize=1)
def _shipped_sections() -> dict[str, str]:
    return _read(SHIPPED_MODEL)[1]


@lru_cache(maxsize=8)
def _load(path: Path, text_key: str) -> CasbinModel:
    text, sections, effect, tree = _read(path)
    shipped = _shipped_sections()
    differs = tuple(
        SECTIONS[key] for key in SECTIONS if sections[SECTIONS[key]] != shipped[SECTIONS[key]]
    )
    conjuncts = _conjuncts(tree)
    loaded = CasbinModel(
        path=path,
        text=text,
        sections=tuple(sections.items()),
        shipped=not differs,
        differs_in=differs,
        effect=effect,
        by_subject=any(_is_call(c, "g", "r_sub", "p_sub") for c in conjuncts),
        by_object=any(_is_call(c, "objMatch", "r_obj", "p_obj") for c in conjuncts),
        expiry=EXPIRY in dict(sections)["policy_definition"].split(", "),
    )
    _try(loaded)
    return loaded


def load_model(path: Path | None) -> CasbinModel:
    """Read and check the model at ``path`` (None: the shipped one). Raises ModelError."""
    path = (path or SHIPPED_MODEL).expanduser().absolute()
    try:
        key = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelError(f"{path} cannot be read ({exc.strerror or exc})") from None
    return _load(path, key)


def model_problems(path: Path | None) -> list[str]:
    """Configuration problems of `GATEWAY_CASBIN_MODEL`, phrased like every other setting's."""
    try:
        load_model(path)
    except ModelError as exc:
        shown = str(path) if path else "the shipped model"
        return [
            f"GATEWAY_CASBIN_MODEL={shown} cannot be served: {exc} "
            "(see docs/authorization.md#the-casbin-model)"
        ]
    return []


def new_enforcer(model: CasbinModel, role_manager: Any | None = None) -> casbin.Enforcer:
    """A pycasbin enforcer on ``model`` with the gateway's functions (and role manager)."""
    logging.getLogger("casbin").setLevel(logging.ERROR)
    enforcer = casbin.Enforcer(casbin.Enforcer.new_model(text=model.text))
    for name, function in GATEWAY_FUNCTIONS.items():
        enforcer.add_function(name, function)
    if role_manager is not None:
        enforcer.set_role_manager(role_manager)
    enforcer.build_role_links()  # the `g` assertion now answers through that role manager
    return enforcer


# A small policy every servable model must evaluate without an error, with requests on it.
_TRIAL_RULES = (
    ("role:admin", "*", "*", "allow"),
    ("group:authenticated", "experiment_name:*", "create", "allow"),
    ("user:trial", "experiment:1", "read", "deny"),
)
_TRIAL_REQUESTS = (
    ("user:trial", ("experiment:1", "experiment_name:/trial/x"), "read"),
    ("user:trial", ("registered_model:trial.model",), "promote:production"),
    (ADMIN_ROLE, ("experiment:1",), "manage"),
)


def _try(model: CasbinModel) -> None:
    """Evaluate the matcher once per trial request: a matcher that fails (a function called with
    the wrong arguments, a string method on a rule's field) fails here, at start, not on a
    request."""
    enforcer = new_enforcer(model)
    for rule in _TRIAL_RULES:
        enforcer.add_policy(*rule, *(("",) if model.expiry else ()))
    enforcer.add_grouping_policy("user:trial", "group:authenticated")
    for subject, names, action in _TRIAL_REQUESTS:
        try:
            enforcer.enforce(subject, RequestObject(names), action)
        except Exception as exc:  # whatever the expression raised: the model is the problem
            raise ModelError(
                f"[matchers] fails on a request ({subject}, {names[0]}, {action}): "
                f"{type(exc).__name__}: {exc}"
            ) from None
