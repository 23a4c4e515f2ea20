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

# The MLflow releases the route table is tested against (README: the supported range), and the
# one the package pins (pyproject.toml's dev extra, mlflow/requirements.txt).
SUPPORTED_MLFLOW = ("3.16.1", "3.17.2", "3.18.0")
PINNED_MLFLOW = "3.17.2"


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
    SKILL = "skill"  # a skill of the skill registry: `skill:<name>`, `skill:@<org>/<name>`
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
    SKILL_CREATED = "skill_created"  # the skills the request created: owners
    SKILL_DELETED = "skill_deleted"


class Search(StrEnum):
    """Searches filtered to what the caller may read; each has a spec in filters.py."""

    EXPERIMENTS = "experiments"
    REGISTERED_MODELS = "registered_models"
    MODEL_VERSIONS = "model_versions"
    SKILLS = "skills"


# Rights a need may ask for; "stage", "alias", "status" and "register" are derived from the
# request: promote:<stage>; alias:<name> for a protected alias, else edit; manage when a skill
# version's status becomes "deleted", else edit; edit on a skill that exists, else create.
ACTIONS = frozenset(
    {"read", "edit", "manage", "create", "use", "stage", "alias", "status", "register"}
)
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
    # SKILL: the field holding the skill's organization (absent or empty: no organization).
    organization: str | None = None


class MlflowVersions:
    """Which MLflow releases serve a rule's routes: comma-separated clauses such as ">=3.18" or
    ">=3.17, <4" (operators >=, >, <=, <, ==, !=; releases compared by their numbers)."""

    _CLAUSE = re.compile(r"^(>=|<=|==|!=|>|<)\s*([0-9]+(?:\.[0-9]+)*)\Z")

    def __init__(self, text: str) -> None:
        self.text = text
        clauses = []
        for part in text.split(","):
            found = self._CLAUSE.match(part.strip())
            if found is None:
                raise RouteTableError(
                    f"mlflow = {text!r}: write clauses such as '>=3.18' or '>=3.17, <4'"
                )
            clauses.append((found.group(1), release(found.group(2))))
        self.clauses = tuple(clauses)

    def __contains__(self, version: str) -> bool:
        wanted = release(version)
        for operator, bound in self.clauses:
            width = max(len(wanted), len(bound))
            a, b = wanted + (0,) * (width - len(wanted)), bound + (0,) * (width - len(bound))
            if not {">=": a >= b, "<=": a <= b, "==": a == b, "!=": a != b, ">": a > b, "<": a < b}[
                operator
            ]:
                return False
        return True

    def __repr__(self) -> str:
        return f"MlflowVersions({self.text!r})"


def release(version: str) -> tuple[int, ...]:
    """A release's numbers: "3.18.0" → (3, 18, 0) (a suffix such as "rc1" or ".dev0" is cut)."""
    found = re.match(r"^\s*([0-9]+(?:\.[0-9]+)*)", version)
    if found is None:
        raise RouteTableError(f"{version!r} is not an MLflow release number")
    return tuple(int(part) for part in found.group(1).split("."))


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
    # The MLflow releases that serve the route (None: every supported one).
    mlflow: MlflowVersions | None = field(default=None, compare=False)
    # Placeholders whose values MLflow's route refuses unless they match (FastAPI Path(pattern=)).
    path_patterns: tuple[tuple[str, str], ...] = ()
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", compile_template(self.template, dict(self.path_patterns)))

    def served_by(self, version: str) -> bool:
        """Whether MLflow ``version`` serves this route, as the table says."""
        return self.mlflow is None or version in self.mlflow


_PLACEHOLDER = re.compile(r"<(?:(\w+):)?(\w+)>|\{(\w+)(?::(\w+))?\}")


def placeholders(template: str) -> list[str]:
    return [m.group(2) or m.group(3) for m in _PLACEHOLDER.finditer(template)]


def compile_template(template: str, patterns: dict[str, str] | None = None) -> re.Pattern[str]:
    """Flask `<conv:name>` and Starlette `{name:conv}` placeholders to a regex over the path;
    ``patterns`` narrows a placeholder to what MLflow's route accepts there."""
    pattern, last = "", 0
    for match in _PLACEHOLDER.finditer(template):
        pattern += re.escape(template[last : match.start()])
        converter = match.group(1) or match.group(4)
        name = match.group(2) or match.group(3)
        if patterns and name in patterns:
            pattern += f"(?P<{name}>{patterns[name]})"
        elif converter == "path":
            pattern += f"(?P<{name}>.+)"
        else:
            pattern += f"(?P<{name}>[^/]+)"
        last = match.end()
    pattern += re.escape(template[last:])
    return re.compile("^" + pattern + r"\Z", re.S)


# -- loading ------------------------------------------------------------------------------------


class RouteTableError(ValueError):
    """routes.toml says something the gateway cannot serve; the message names the rule."""


_RULE_KEYS = frozenset(
    {
        "operation",
        "routes",
        "needs",
        "access",
        "params",
        "filter",
        "hook",
        "admin_only",
        "mlflow",
        "path_patterns",
        "note",
    }
)
_NEED_KEYS = frozenset(
    {"kind", "field", "action", "many", "optional", "organization", *SUBJECT_KEYS.values()}
)


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
    if "organization" in data and kind != Kind.SKILL:
        raise RouteTableError(f"a {kind} need has no organization")
    if action == "register" and kind != Kind.SKILL:
        raise RouteTableError("only a skill need is judged as a registration")
    return Need(
        kind,
        data.get("field"),
        action,
        bool(data.get("many", False)),
        bool(data.get("optional", False)),
        data.get(subject_key) if subject_key else None,
        data.get("organization"),
    )


def _path_patterns(entry: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    patterns = entry.get("path_patterns", {})
    if not isinstance(patterns, dict):
        raise RouteTableError("path_patterns maps placeholders to regular expressions")
    for name, regex in patterns.items():
        if not isinstance(regex, str) or "(" in regex:
            raise RouteTableError(f"path_patterns.{name}: a regular expression without groups")
        try:
            re.compile(regex)
        except re.error as exc:
            raise RouteTableError(f"path_patterns.{name}: {exc}") from None
        for route in entry["routes"]:
            if name not in placeholders(route):
                raise RouteTableError(f"path_patterns.{name}: {route!r} has no such placeholder")
    return tuple(sorted(patterns.items()))


def _rules(entry: dict[str, Any]) -> list[RouteRule]:
    if unknown := set(entry) - _RULE_KEYS:
        raise RouteTableError(f"unknown keys {sorted(unknown)}")
    needs = tuple(_need(n) for n in entry.get("needs", []))
    versions = MlflowVersions(entry["mlflow"]) if "mlflow" in entry else None
    if versions is not None and not any(v in versions for v in SUPPORTED_MLFLOW):
        raise RouteTableError(f"mlflow = {versions.text!r} leaves out every supported MLflow")
    patterns = _path_patterns(entry)
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
                versions,
                patterns,
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


def rules_served_by(version: str, rules: tuple[RouteRule, ...] = RULES) -> list[RouteRule]:
    """The rules whose routes MLflow ``version`` serves, as the table says."""
    return [rule for rule in rules if rule.served_by(version)]


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
