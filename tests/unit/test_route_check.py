"""`mlflow-gateway routes check`: what it reports about an MLflow's routes against a route table,
and its exit status (the routes of real releases: tests/integration/test_route_table.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from gateway.authz.routes import MlflowVersions, RouteTableError, load_rules
from gateway.cli.routes import check_routes
from tests.helpers import run_cli

TABLE = """
[[rule]]
operation = "GetThing"
routes = ["GET /api/2.0/mlflow/things/get"]
needs = [{ kind = "object", object = "thing:*" }]

[[rule]]
operation = "GetNewThing"
routes = ["GET /api/3.0/mlflow/new-things/{name}"]
mlflow = ">=3.18"
needs = [{ kind = "object", object = "thing:*" }]
"""


@pytest.fixture
def rules(tmp_path: Path) -> tuple:
    table = tmp_path / "routes.toml"
    table.write_text(TABLE)
    return load_rules(table)


def test_a_release_the_table_describes_passes(rules: tuple) -> None:
    served = {("GET", "/api/2.0/mlflow/things/get"), ("GET", "/api/3.0/mlflow/new-things/{name}")}
    report = check_routes("3.18.0", served, rules)
    assert report.unjudged == () and report.stale == () and report.outside == ()
    assert report.lines()[-1].startswith("ok: MLflow 3.18.0")
    # An older release without the new route: the rule's clause says so, nothing to report.
    older = check_routes("3.17.2", {("GET", "/api/2.0/mlflow/things/get")}, rules)
    assert older.lines() == [
        "ok: MLflow 3.17.2, a tested release: 1 routes, 1 judged, 0 unjudged; "
        "0 rule(s) match no route"
    ]


def test_every_unjudged_route_and_stale_rule_is_named(rules: tuple) -> None:
    served = {("GET", "/api/3.0/mlflow/new-things/{name}"), ("POST", "/api/3.0/mlflow/x")}
    report = check_routes("3.19.0", served, rules)
    assert report.unjudged == (("POST", "/api/3.0/mlflow/x"),)
    assert [r.operation for r in report.stale] == ["GetThing"]
    lines = report.lines()
    assert lines[0] == "unjudged: POST /api/3.0/mlflow/x (no rule: the gateway refuses it)"
    assert "no route: GET /api/2.0/mlflow/things/get (GetThing)" in lines[1]
    assert lines[-1].startswith("UNJUDGED ROUTES: MLflow 3.19.0, not a tested release")
    assert "1 unjudged; 1 rule(s) match no route" in lines[-1]


def test_a_route_served_outside_its_rules_clause_is_named(rules: tuple) -> None:
    served = {("GET", "/api/2.0/mlflow/things/get"), ("GET", "/api/3.0/mlflow/new-things/{name}")}
    report = check_routes("3.17.2", served, rules)
    assert [r.operation for r in report.outside] == ["GetNewThing"]
    assert "leaves 3.17.2 out" in report.lines()[0]
    assert report.lines()[-1].startswith("ok:")  # judged all the same


@pytest.mark.parametrize(
    ("clause", "version", "expected"),
    [
        (">=3.18", "3.18.0", True),
        (">=3.18", "3.17.2", False),
        (">=3.17, <3.18", "3.17.2", True),
        (">=3.17, <3.18", "3.18.0rc1", False),
        ("==3.16.1", "3.16.1", True),
        ("!=3.16.1", "3.16.1", False),
    ],
)
def test_version_clauses(clause: str, version: str, expected: bool) -> None:
    assert (version in MlflowVersions(clause)) is expected


@pytest.mark.parametrize(
    ("entry", "complaint"),
    [
        ('mlflow = "3.18"', "write clauses"),
        ('mlflow = "<3"', "leaves out every supported MLflow"),
        ('path_patterns = { nope = "[a-z]+" }', "has no such placeholder"),
        ('path_patterns = { name = "(a)" }', "without groups"),
    ],
)
def test_a_version_or_pattern_the_gateway_cannot_use_is_refused(
    tmp_path: Path, entry: str, complaint: str
) -> None:
    table = tmp_path / "routes.toml"
    table.write_text(f'[[rule]]\noperation = "X"\nroutes = ["GET /x/{{name}}"]\n{entry}\n')
    with pytest.raises(RouteTableError, match=complaint):
        load_rules(table)


def test_the_command_exits_1_on_an_unjudged_route(tmp_path: Path) -> None:
    """An interpreter whose "MLflow" serves one route no rule judges (no MLflow release does yet:
    a script stands in for the enumerator's answer)."""
    fake = tmp_path / "python"
    answer = {
        "mlflow": "9.0.0",
        "routes": [{"method": "POST", "path": "/api/9.0/mlflow/unknown", "layer": "fastapi"}],
    }
    fake.write_text(f"#!{sys.executable}\nprint({json.dumps(json.dumps(answer))})\n")
    fake.chmod(0o755)
    result = run_cli("routes", "check", "--python", str(fake))
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "unjudged: POST /api/9.0/mlflow/unknown (no rule: the gateway refuses it)"
    assert lines[-1].startswith("UNJUDGED ROUTES: MLflow 9.0.0, not a tested release")


def test_the_command_exits_2_without_mlflow(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text(f"#!{sys.executable}\nraise SystemExit(\"No module named 'mlflow'\")\n")
    fake.chmod(0o755)
    result = run_cli("routes", "check", "--python", str(fake))
    assert result.returncode == 2
    assert "could not enumerate MLflow's routes: No module named 'mlflow'" in result.stderr
