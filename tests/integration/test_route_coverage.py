"""Generated from the route table, against the real MLflow: for every rule, a principal with no
rights gets no 2xx, and a principal with the right is not refused by the gateway.

"Refused by the gateway" is told apart from MLflow's own answers by the X-Gateway-Refused header.
Requests are built from each rule's needs, filled with real resources (an experiment, a run, a
logged model, a trace, a dataset, a registered model and its version; a skill, plain and of an
organization, with a version, where MLflow has skills) created for the test.

Every rule runs against each supported release that serves its route: the pinned MLflow, the
oldest and the newest supported release (tests.mlflow_versions lays those two over the
virtualenv). tests/integration/test_route_table.py checks the table against every release.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from gateway.authz.routes import PINNED_MLFLOW, RULES, Need, RouteRule
from tests.helpers import Gateway, MlflowServer, RedisServer, start_gateway
from tests.integration.test_authn import basic, bearer, request
from tests.mlflow_versions import NEWEST, OLDEST

REFUSED = "X-Gateway-Refused"


@dataclass
class World:
    experiment: str
    experiment_name: str
    run: str
    logged_model: str
    trace: str
    dataset: str
    model: str
    lookups: dict[str, str]
    skill: str = "cov-skill"  # in MLflow releases with skills: a skill, plain and of SKILL_ORG


SKILL_ORG = "cov-org"
SKILL_SOURCE = {
    "source": "https://example.com/skill.zip",
    "source_type": "zip",
    "digest": "ab" * 32,
}


def _call(gw: Gateway, method: str, path: str, auth: dict[str, str], payload: Any = None) -> Any:
    headers = {**auth, "Content-Type": "application/json"}
    status, _, body = request(
        gw, path, method, headers, json.dumps(payload).encode() if payload is not None else None
    )
    assert status == 200, (path, body)
    return json.loads(body)


def make_world(gw: Gateway, auth: dict[str, str], skills: bool = False) -> World:
    tag = secrets.token_hex(4)
    name = f"cov-{tag}"
    experiment = _call(gw, "POST", "/api/2.0/mlflow/experiments/create", auth, {"name": name})[
        "experiment_id"
    ]
    run = _call(gw, "POST", "/api/2.0/mlflow/runs/create", auth, {"experiment_id": experiment})[
        "run"
    ]["info"]["run_id"]
    logged = _call(
        gw,
        "POST",
        "/api/2.0/mlflow/logged-models",
        auth,
        {"experiment_id": experiment, "name": "lm"},
    )
    trace_id = f"tr-{secrets.token_hex(16)}"
    _call(
        gw,
        "POST",
        "/api/3.0/mlflow/traces",
        auth,
        {
            "trace": {
                "trace_info": {
                    "trace_id": trace_id,
                    "trace_location": {
                        "type": "MLFLOW_EXPERIMENT",
                        "mlflow_experiment": {"experiment_id": experiment},
                    },
                    "request_time": "2026-01-01T00:00:00Z",
                    "state": "OK",
                }
            }
        },
    )
    dataset = _call(
        gw,
        "POST",
        "/api/3.0/mlflow/datasets/create",
        auth,
        {"name": f"ds-{tag}", "experiment_ids": [experiment]},
    )
    model = f"cov-model-{tag}"
    _call(gw, "POST", "/api/2.0/mlflow/registered-models/create", auth, {"name": model})
    _call(
        gw,
        "POST",
        "/api/2.0/mlflow/model-versions/create",
        auth,
        {"name": model, "source": f"runs:/{run}/m", "run_id": run},
    )
    issue = _call(
        gw,
        "POST",
        "/api/3.0/mlflow/issues",
        auth,
        {"experiment_id": experiment, "name": "i", "description": "d"},
    )
    schema = _call(
        gw,
        "POST",
        "/api/3.0/mlflow/label-schemas/create",
        auth,
        {"experiment_id": experiment, "name": "ls", "type": "FEEDBACK", "input": {"text": {}}},
    )
    queue = _call(
        gw,
        "POST",
        "/api/3.0/mlflow/review-queues/create",
        auth,
        {"experiment_id": experiment, "name": "rq", "queue_type": "CUSTOM"},
    )
    lookups = {
        "issue": issue["issue"]["issue_id"],
        "label_schema": schema["label_schema"]["schema_id"],
        "review_queue": queue["review_queue"]["queue_id"],
    }
    skill = f"cov-skill-{tag}"
    if skills:
        for organization in ("", SKILL_ORG):
            base = "/api/3.0/mlflow/skills"
            _call(gw, "POST", base, auth, {"name": skill, "organization": organization})
            identity = f"@{organization}/{skill}" if organization else skill
            _call(gw, "POST", f"{base}/{identity}/versions", auth, SKILL_SOURCE)
    return World(
        experiment,
        name,
        run,
        logged["model"]["info"]["model_id"],
        trace_id,
        dataset["dataset"]["dataset_id"],
        model,
        lookups,
        skill,
    )


PATH_VALUES = {
    "experiment_id": lambda w: w.experiment,
    "run_id": lambda w: w.run,
    "trace_id": lambda w: w.trace,
    "request_id": lambda w: w.trace,
    "model_id": lambda w: w.logged_model,
    "dataset_id": lambda w: w.dataset,
    "artifact_path": lambda w: f"{w.experiment}/cov/file.txt",
    "version": lambda w: "1",
    "issue_id": lambda w: w.lookups["issue"],
    "organization": lambda w: SKILL_ORG,
}


def _value(need: Need, world: World) -> Any:
    kind, field = need.kind, need.field or ""
    values: dict[str, Any] = {
        "experiment": world.experiment,
        "experiment_name": f"cov-new-{secrets.token_hex(4)}",
        "experiment_by_name": world.experiment_name,
        "run": world.run,
        "trace": world.trace,
        "logged_model": world.logged_model,
        "dataset": world.dataset,
        "registered_model": f"{world.model}-renamed-{secrets.token_hex(2)}"
        if field == "new_name"
        else world.model,
        "artifact": f"{world.experiment}/cov/file.txt",
        "model_source": f"runs:/{world.run}/m",
        "prompt_uri": f"prompts:/{world.model}/1",
        "skill": world.skill,
    }
    if kind in values:
        value = values[kind]
    elif kind == "lookup":
        lookup = need.subject or ""
        value = world.lookups.get(lookup, f"{lookup}-{secrets.token_hex(4)}")
    else:
        value = "cov-object"
    return [value] if need.many else value


def _set(body: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    target = body
    for index, part in enumerate(parts[:-1]):
        key = part.removesuffix("[]")
        if part.endswith("[]"):
            item: dict[str, Any] = {}
            target.setdefault(key, []).append(item)
            rest = ".".join(parts[index + 1 :])
            _set(
                item, rest, value[0] if isinstance(value, list) and rest.count("[]") == 0 else value
            )
            return
        target = target.setdefault(key, {})
    target[parts[-1].removesuffix("[]")] = value


def build_request(rule: RouteRule, world: World) -> tuple[str, str, dict[str, str], bytes | None]:
    path_params: dict[str, str] = {}
    fields: dict[str, Any] = {}
    for need in rule.needs:
        if need.optional:
            continue
        if need.kind == "graphql":
            fields["query"] = (
                f'{{ mlflowGetExperiment(input: {{experimentId: "{world.experiment}"}}) {{ experiment {{ name }} }} }}'
            )
            continue
        if need.field and need.field in rule.regex.groupindex:
            path_params[need.field] = str(_value(need, world))
        elif need.field:
            _set(fields, need.field, _value(need, world))
        if need.action == "stage":
            fields.update(stage="Production", version="1")
        if need.action == "alias":
            fields.update(alias="champion", version="1")
    path = rule.template
    for name in rule.regex.groupindex:
        value = path_params.get(name) or PATH_VALUES.get(name, lambda w: "cov-object")(world)
        path = path.replace(f"<path:{name}>", value).replace(f"{{{name}:path}}", value)
        path = path.replace(f"<{name}>", quote(value, safe="")).replace(
            f"{{{name}}}", quote(value, safe="")
        )
    headers: dict[str, str] = {}
    if "x-mlflow-experiment-id" in fields:
        headers["X-Mlflow-Experiment-Id"] = fields.pop("x-mlflow-experiment-id")
    if any(n.kind == "otlp_traces" for n in rule.needs):
        # A minimal OTLP/JSON export: one span of a new trace.
        span = {
            "traceId": secrets.token_hex(16),
            "spanId": secrets.token_hex(8),
            "name": "coverage",
            "startTimeUnixNano": "1",
            "endTimeUnixNano": "2",
        }
        otlp = {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}
        return (
            rule.method,
            path,
            {**headers, "Content-Type": "application/json"},
            json.dumps(otlp).encode(),
        )
    body = None
    reads_query = rule.params == "query" or (rule.params == "mlflow" and rule.method == "GET")
    if fields and reads_query:
        path += "?" + urlencode(
            [(k, x) for k, v in fields.items() for x in (v if isinstance(v, list) else [v])]
        )
    elif fields or rule.params in ("mlflow", "json"):
        body = json.dumps(fields).encode()
        headers["Content-Type"] = "application/json"
    return rule.method, path, headers, body


def _destructive(rule: RouteRule) -> bool:
    return rule.method == "DELETE" or rule.operation.startswith(
        ("Delete", "Restore", "Rename", "Cancel")
    )


def _coverage_gateway(mlflow: MlflowServer, redis_server: RedisServer, data: Path) -> Gateway:
    policy = data / "policy.csv"
    # Nothing for anyone but admins: "no rights" really means none, creation included.
    policy.write_text("p, role:admin, *, *, allow\n")
    gateway = start_gateway(
        mlflow.url,
        redis_server.db_url(4),
        data,
        GATEWAY_POLICY_FILE=str(policy),
        GATEWAY_LOCKOUT_IP_THRESHOLD="100000",
    )
    gateway.add_user("nobody", "nobody-password-1")
    gateway.add_user("owner", "owner-password-12")
    gateway.cli("policy", "add", "p", "user:owner", "*", "*")
    return gateway


@pytest.fixture(scope="module")
def gateways(
    request: pytest.FixtureRequest,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, tuple[Gateway, World]]]:
    """A gateway and its world per MLflow release, started when a rule first needs it."""
    started: dict[str, tuple[Gateway, World]] = {}

    class Lazy(dict[str, tuple[Gateway, World]]):
        def __missing__(self, version: str) -> tuple[Gateway, World]:
            mlflow: MlflowServer = request.getfixturevalue(SERVER_FIXTURES[version])
            gateway = _coverage_gateway(
                mlflow, redis_server, tmp_path_factory.mktemp(f"gw-coverage-{version}")
            )
            started[version] = gateway, make_world(gateway, gateway.auth, skills=_skills(version))
            self[version] = started[version]
            return started[version]

    yield Lazy()
    for gateway, _ in started.values():
        gateway.stop()


def _skills(version: str) -> bool:
    return any(r.served_by(version) and any(n.kind == "skill" for n in r.needs) for r in RULES)


def _nonexistent_lookup(rule: RouteRule) -> bool:
    return any(n.kind == "lookup" and n.subject == "prompt_job" for n in rule.needs)


# The session fixture of each release's MLflow (tests/conftest.py).
SERVER_FIXTURES = {
    PINNED_MLFLOW: "mlflow_server",
    OLDEST: "oldest_mlflow_server",
    NEWEST: "newest_mlflow_server",
}
# (release, rule): every rule each supported release serves, against that release.
CASES = [(v, r) for v in (PINNED_MLFLOW, OLDEST, NEWEST) for r in RULES if r.served_by(v)]
# One release after the other (each gateway started once), destructive rules last in each.
_RELEASE_ORDER = {PINNED_MLFLOW: 0, OLDEST: 1, NEWEST: 2}
ORDERED = sorted(CASES, key=lambda case: (_RELEASE_ORDER[case[0]], _destructive(case[1])))


@pytest.mark.parametrize(
    ("version", "rule"), ORDERED, ids=[f"{v} {r.method} {r.template}" for v, r in ORDERED]
)
def test_rule(
    version: str,
    rule: RouteRule,
    gateways: dict[str, tuple[Gateway, World]],
    tmp_path: Path,
) -> None:
    gw, world = gateways[version]
    if _destructive(rule):
        world = make_world(gw, gw.auth, skills=_skills(version))
    nobody, owner = basic("nobody", "nobody-password-1"), basic("owner", "owner-password-12")
    method, path, headers, body = build_request(rule, world)

    status, answer_headers, answer = request(gw, path, method, {**headers, **nobody}, body)
    if rule.access == "authenticated":
        assert REFUSED not in answer_headers
    elif rule.filter:
        assert status == 200, (status, answer[:300])
        assert world.experiment_name not in answer.decode() and world.model not in answer.decode()
    else:
        assert not 200 <= status < 300, (status, answer[:300])

    try:
        status, answer_headers, answer = request(
            gw, path, method, {**headers, **owner}, body, timeout=10
        )
    except TimeoutError:
        # The gateway refuses at once; a slow answer is MLflow at work (e.g. a model catalogue
        # fetched from the internet), so the request got through.
        return
    if _nonexistent_lookup(rule) and status == 404:
        # A write to a GenAI object that does not exist: the gateway answers for MLflow.
        assert json.loads(answer)["error_code"] == "RESOURCE_DOES_NOT_EXIST"
        return
    if rule.access == "refused" or rule.admin_only:
        assert answer_headers.get(REFUSED) == "authorization"
        status, answer_headers, answer = request(
            gw, path, method, {**headers, **bearer(gw.admin_token)}, body
        )
        assert (REFUSED in answer_headers) == (rule.access == "refused"), answer[:300]
    else:
        assert REFUSED not in answer_headers, (status, answer[:300])
