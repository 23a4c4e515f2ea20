"""The route table's indexed lookup finds what a scan of every template in order would find."""

from __future__ import annotations

import re

import pytest

from gateway.authz.routes import _PLACEHOLDER, RULES, RouteRule, RouteTable, _specificity


def scan(method: str, path: str) -> tuple[RouteRule, dict[str, str]] | None:
    """The reference: every rule of the method, most specific first, the first regex that hits."""
    method = "GET" if method == "HEAD" else method
    for rule in sorted((r for r in RULES if r.method == method), key=_specificity, reverse=True):
        found = rule.regex.match(path)
        if found:
            return rule, found.groupdict()
    return None


def sample_paths(template: str) -> list[str]:
    fills = ("1", "get", "a/b", "search", "x%2Fy", "..")
    return [_PLACEHOLDER.sub(fill, template) for fill in fills] + [template, template + "/"]


PATHS = sorted({(r.method, p) for r in RULES for p in sample_paths(r.template)})


@pytest.mark.parametrize("method", sorted({r.method for r in RULES} | {"HEAD", "TRACE"}))
def test_indexed_match_equals_a_full_scan(method: str) -> None:
    table = RouteTable()
    paths = {p for _, p in PATHS} | {"/", "", "/api/2.0/mlflow/", "/static-files/x"}
    for path in sorted(paths):
        assert table.match(method, path) == scan(method, path), (method, path)


def test_literal_routes_beat_placeholders() -> None:
    table = RouteTable()
    found = table.match("GET", "/api/2.0/mlflow/experiments/get")
    assert found is not None and found[0].operation == "GetExperiment"
    assert re.search(r"[<{]", found[0].template) is None
