"""Every route of the installed MLflow has a rule, and every rule is a route MLflow serves."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.authz.routes import RULES, RouteTable
from tests.integration.test_mlflow_routes import installed_mlflow_routes


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> set[tuple[str, str]]:
    routes = installed_mlflow_routes(tmp_path_factory.mktemp("routes"))
    return {(r["method"], r["path"]) for r in routes}


def test_every_installed_route_has_a_rule(installed: set[tuple[str, str]]) -> None:
    ruled = {(r.method, r.template) for r in RULES}
    missing = sorted(installed - ruled)
    assert missing == [], f"MLflow routes without a rule (they would be refused): {missing}"


def test_no_rule_for_a_route_mlflow_does_not_serve(installed: set[tuple[str, str]]) -> None:
    stale = sorted({(r.method, r.template) for r in RULES} - installed)
    assert stale == []


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
