"""The MLflow route table: the data in routes.toml, loaded and validated, and its matcher.

Each rule names the governing resources a request touches (where MLflow reads their keys) and the
right needed on each; routes.toml's header explains the fields. Every name in the data is one of
the enums below, so a kind, hook or filter without a handler cannot be written (a test checks that
each member has one). A request that matches no rule is refused, admins included.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

ROUTES_FILE = Path(__file__).with_name("routes.toml")


class Access(StrEnum):
    POLICY = "policy"  # judged on the rule's needs
    AUTHENTICATED = "authenticated"  # any signed-in caller
    REFUSED = "refused"  # nobody, admins included


class ParamSource(StrEnum):
    """Where MLflow reads the parameters."""

    MLFLOW = "mlflow"  # Flask: a GET's query string (else the JSON body); others: the JSON body
    JSON = "json"  # always the JSON body
    QUERY = "query"  # the query string only
    NONE = "none"  # the path only


class Kind(StrEnum):
    """What a need names; each has a resolver in gateway/authz/authorize.py."""

    EXPERIMENT = "experiment"
    EXPERIMENT_NAME = "experiment_name"  # a name for a new experiment
    EXPERIMENT_BY_NAME = "experiment_by_name"
    RUN = "run"
    TRACE = "trace"
    EXISTING_TRACE = "existing_trace"  # a trace a write may merge into, if it exists
    LOGGED_MODEL = "logged_model"
    DATASET = "dataset"
    REGISTERED_MODEL = "registered_model"
    ARTIFACT = "artifact"  # a path of MLflow's artifact store
    MODEL_SOURCE = "model_source"  # a new model version's source URI
    PROMPT_URI = "prompt_uri"
    ARTIFACT_LOCATION = "artifact_location"
    GRAPHQL = "graphql"
    OTLP_TRACES = "otlp_traces"
    LOOKUP = "lookup"  # a GenAI object whose experiment MLflow is asked
    OBJECT = "object"  # a fixed policy object
    NAMED = "named"  # a policy object: prefix + the field's value


class Hook(StrEnum):
    """After-success bookkeeping; each has a handler in gateway/authz/hooks.py."""

    EXPERIMENT_CREATED = "experiment_created"
    EXPERIMENT_RENAMED = "experiment_renamed"
    RUN_CREATED = "run_created"
    LOGGED_MODEL_CREATED = "logged_model_created"
    TRACE_STARTED = "trace_started"
    MODEL_CREATED = "model_created"
    MODEL_RENAMED = "model_renamed"
    MODEL_DELETED = "model_deleted"
    VERSION_CREATED = "version_created"
    VERSION_DELETED = "version_deleted"
    DATASET_CHANGED = "dataset_changed"


class Search(StrEnum):
    """Searches filtered to what the caller may read; each has a spec in filters.py."""

    EXPERIMENTS = "experiments"
    REGISTERED_MODELS = "registered_models"
    MODEL_VERSIONS = "model_versions"


# Rights a need may ask for; "stage" and "alias" are derived from the request's own fields.
ACTIONS = frozenset({"read", "edit", "manage", "create", "use", "stage", "alias"})
# Kinds whose need names its subject in the data: the lookup's kind, the object, the prefix.
SUBJECT_KEYS = {Kind.LOOKUP: "lookup", Kind.OBJECT: "object", Kind.NAMED: "prefix"}


@dataclass(frozen=True)
class Need:
    """A resource the request names, how to find it, and the right needed on it."""

    kind: Kind
    field: str | None = None
    action: str = "read"
    many: bool = False
    optional: bool = False
    # LOOKUP: the object kind (issue, label_schema, …); OBJECT: the policy object; NAMED: the
    # prefix its value is appended to.
    subject: str | None = None


@dataclass(frozen=True)
class RouteRule:
    method: str
    template: str
    operation: str
    needs: tuple[Need, ...] = ()
    access: Access = Access.POLICY
    params: ParamSource = ParamSource.MLFLOW
    filter: Search | None = None
    hook: Hook | None = None
    admin_only: bool = False
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", compile_template(self.template))


_PLACEHOLDER = re.compile(r"<(?:(\w+):)?(\w+)>|\{(\w+)(?::(\w+))?\}")


def compile_template(template: str) -> re.Pattern[str]:
    """Flask `<conv:name>` and Starlette `{name:conv}` placeholders to a regex over the path."""
    pattern, last = "", 0
    for match in _PLACEHOLDER.finditer(template):
        pattern += re.escape(template[last : match.start()])
        converter = match.group(1) or match.group(4)
        name = match.group(2) or match.group(3)
        pattern += f"(?P<{name}>.+)" if converter == "path" else f"(?P<{name}>[^/]+)"
        last = match.end()
    pattern += re.escape(template[last:])
    return re.compile("^" + pattern + r"\Z", re.S)


# -- loading ------------------------------------------------------------------------------------


class RouteTableError(ValueError):
    """routes.toml says something the gateway cannot serve; the message names the rule."""


_RULE_KEYS = frozenset(
    {"operation", "routes", "needs", "access", "params", "filter", "hook", "admin_only", "note"}
)
_NEED_KEYS = frozenset({"kind", "field", "action", "many", "optional", *SUBJECT_KEYS.values()})


def _need(data: dict[str, Any]) -> Need:
    if unknown := set(data) - _NEED_KEYS:
        raise RouteTableError(f"unknown need keys {sorted(unknown)}")
    kind = Kind(data["kind"])
    subject_key = SUBJECT_KEYS.get(kind)
    if subject_key and not isinstance(data.get(subject_key), str):
        raise RouteTableError(f"a {kind} need names its {subject_key}")
    extra = set(SUBJECT_KEYS.values()) & set(data) - {subject_key}
    if extra:
        raise RouteTableError(f"a {kind} need has no {sorted(extra)}")
    action = data.get("action", "read")
    if action not in ACTIONS:
        raise RouteTableError(f"unknown action {action!r}")
    return Need(
        kind,
        data.get("field"),
        action,
        bool(data.get("many", False)),
        bool(data.get("optional", False)),
        data.get(subject_key) if subject_key else None,
    )


def _rules(entry: dict[str, Any]) -> list[RouteRule]:
    if unknown := set(entry) - _RULE_KEYS:
        raise RouteTableError(f"unknown keys {sorted(unknown)}")
    needs = tuple(_need(n) for n in entry.get("needs", []))
    rules = []
    for route in entry["routes"]:
        method, _, template = route.partition(" ")
        if method not in ("GET", "POST", "PUT", "PATCH", "DELETE") or not template.startswith("/"):
            raise RouteTableError(f"a route is 'METHOD /path', not {route!r}")
        rules.append(
            RouteRule(
                method,
                template,
                entry["operation"],
                needs,
                Access(entry.get("access", "policy")),
                ParamSource(entry.get("params", "mlflow")),
                Search(entry["filter"]) if "filter" in entry else None,
                Hook(entry["hook"]) if "hook" in entry else None,
                bool(entry.get("admin_only", False)),
            )
        )
    return rules


def load_rules(path: Path = ROUTES_FILE) -> tuple[RouteRule, ...]:
    """Every rule of the file, or RouteTableError naming the first one it cannot serve."""
    with path.open("rb") as file:
        data = tomllib.load(file)
    rules: list[RouteRule] = []
    seen: dict[tuple[str, str], str] = {}
    for index, entry in enumerate(data.get("rule", []), start=1):
        name = entry.get("operation", f"rule #{index}")
        try:
            for rule in _rules(entry):
                key = (rule.method, rule.template)
                if key in seen:
                    raise RouteTableError(f"{rule.method} {rule.template} is also {seen[key]}")
                seen[key] = name
                rules.append(rule)
        except (KeyError, ValueError) as exc:
            raise RouteTableError(f"{path.name}, {name}: {exc}") from None
    return tuple(rules)


RULES: tuple[RouteRule, ...] = load_rules()


# -- matching -----------------------------------------------------------------------------------


def _specificity(rule: RouteRule) -> tuple[int, int]:
    # Like Werkzeug: literal text beats placeholders (/traces/get over /traces/<trace_id>, and
    # /mcp-servers/{name:path}/versions/... over /mcp-servers/{name:path}).
    literal = _PLACEHOLDER.sub("", rule.template)
    return len(literal), -len(_PLACEHOLDER.findall(rule.template))


class RouteTable:
    """Finds the rule MLflow would route a request to: the most specific template that matches."""

    def __init__(self, rules: tuple[RouteRule, ...] = RULES) -> None:
        self._by_method: dict[str, list[RouteRule]] = {}
        for rule in rules:
            self._by_method.setdefault(rule.method, []).append(rule)
        # A template without placeholders matches one path only, and beats every template with
        # placeholders that matches it too (they capture at least a character, so they have less
        # literal text): those are a dict lookup. The others are tried in order of specificity,
        # only when the path starts with their literal text.
        self._exact: dict[str, dict[str, RouteRule]] = {}
        self._patterns: dict[str, list[tuple[str, RouteRule]]] = {}
        for method, candidates in self._by_method.items():
            candidates.sort(key=_specificity, reverse=True)
            exact = self._exact.setdefault(method, {})
            patterns = self._patterns.setdefault(method, [])
            for rule in candidates:
                placeholder = _PLACEHOLDER.search(rule.template)
                if placeholder is None:
                    exact.setdefault(rule.template, rule)
                else:
                    patterns.append((rule.template[: placeholder.start()], rule))

    def match(self, method: str, path: str) -> tuple[RouteRule, dict[str, str]] | None:
        lookup_method = "GET" if method == "HEAD" else method
        exact = self._exact.get(lookup_method, {}).get(path)
        if exact is not None:
            return exact, {}
        for prefix, rule in self._patterns.get(lookup_method, ()):
            if path.startswith(prefix):
                found = rule.regex.match(path)
                if found:
                    return rule, found.groupdict()
        return None

    def rules(self) -> list[RouteRule]:
        return [rule for rules in self._by_method.values() for rule in rules]
