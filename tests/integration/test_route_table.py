"""Every route of every supported MLflow has a rule, and every rule is a route the MLflow
releases its `mlflow` clause names serve: no more, no fewer (SUPPORTED_MLFLOW; the releases other
than the pinned one are laid over the virtualenv by tests.mlflow_versions)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gateway.authz.routes import RULES, SUPPORTED_MLFLOW, RouteTable, rules_served_by
from gateway.cli.routes import Installed, check_routes, enumerate_installed
from tests.mlflow_versions import REFERENCES, environment, reference_lines

# Routes per release, as measured (a new release's count is a fact to write down, not derive).
ROUTE_COUNTS = {"3.16.1": 487, "3.17.2": 489, "3.18.0": 556}


@pytest.fixture(scope="module", params=SUPPORTED_MLFLOW)
def installed(request: pytest.FixtureRequest) -> Installed:
    version: str = request.param
    overlay = environment(version, base={}).get("PYTHONPATH")
    found = enumerate_installed(sys.executable, {"PYTHONPATH": overlay} if overlay else None)
    assert found.version == version
    return found


def test_every_installed_route_has_a_rule(installed: Installed) -> None:
    report = check_routes(installed.version, installed.routes)
    missing = list(report.unjudged)
    assert missing == [], f"MLflow routes without a rule (they would be refused): {missing}"
    assert report.outside == (), "a rule's mlflow clause leaves out a release that serves it"


def test_no_rule_for_a_route_mlflow_does_not_serve(installed: Installed) -> None:
    stale = sorted(
        {(r.method, r.template) for r in rules_served_by(installed.version)} - installed.routes
    )
    assert stale == []
    assert check_routes(installed.version, installed.routes).stale == ()


def test_route_counts(installed: Installed) -> None:
    assert len(installed.routes) == ROUTE_COUNTS[installed.version]
    assert len(rules_served_by(installed.version)) == ROUTE_COUNTS[installed.version]


def test_the_route_reference_is_the_enumeration(installed: Installed) -> None:
    reference = REFERENCES / f"{installed.version}.tsv"
    expected = reference_lines(installed.version, installed.routes)
    assert reference.read_text().splitlines() == expected, (
        f"{reference.name} is not MLflow {installed.version}'s enumeration: "
        "python -m tests.mlflow_versions references"
    )


def test_every_rule_serves_a_supported_mlflow() -> None:
    served = {(r.method, r.template) for v in SUPPORTED_MLFLOW for r in rules_served_by(v)}
    assert served == {(r.method, r.template) for r in RULES}


def test_rules_are_unique() -> None:
    keys = [(r.method, r.template) for r in RULES]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize(
    ("method", "path", "operation"),
    [
        ("GET", "/api/3.0/mlflow/traces/get", "GetTrace"),
        ("GET", "/api/3.0/mlflow/traces/tr-123", "GetTraceInfoV3"),
        ("GET", "/ajax-api/3.0/mlflow/mcp-servers/org/tool/versions/2", "GetMcpServerVersion"),
        ("GET", "/ajax-api/3.0/mlflow/mcp-servers/org/tool", "GetMcpServer"),
        ("HEAD", "/api/2.0/mlflow/experiments/get", "GetExperiment"),
        ("GET", "/api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/m.pkl", "DownloadArtifact"),
        ("DELETE", "/api/2.0/mlflow-artifacts/artifacts/1/x", "DeleteArtifact"),
    ],
)
def test_requests_go_to_the_rule_mlflow_would_pick(method: str, path: str, operation: str) -> None:
    found = RouteTable().match(method, path)
    assert found is not None
    assert found[0].operation == operation


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/2.0/mlflow/experiments/get/"),  # trailing slash
        ("GET", "//api/2.0/mlflow/experiments/get"),
        ("GET", "/api/2.0/mlflow/./experiments/get"),
        ("GET", "/API/2.0/mlflow/experiments/get"),  # letter case
        ("PUT", "/api/2.0/mlflow/experiments/get"),  # method
        ("GET", "/api/2.0/mlflow/experiments/get;x"),
        ("POST", "/api/2.0/mlflow/users/create"),  # MLflow's own basic-auth app: not ours
    ],
)
def test_anything_else_matches_no_rule(method: str, path: str) -> None:
    assert RouteTable().match(method, path) is None


def test_reference_table_agrees_on_the_operations_count() -> None:
    reference = Path(__file__).resolve().parents[3] / "shared" / "reference"
    if not reference.is_dir():
        pytest.skip("../shared/reference is not beside this checkout")
    rows = (reference / "mlflow-3.17.2-routes.tsv").read_text().splitlines()[1:]
    judged = [
        r.split("\t")
        for r in rows
        if r.split("\t")[3] == "core"
        and (r.split("\t")[4] == "yes" or r.split("\t")[4].startswith("registered"))
    ]
    assert len(judged) == 485
    ruled = {(r.method, r.template) for r in RULES}
    assert {(r[0], r[1]) for r in judged} <= ruled
