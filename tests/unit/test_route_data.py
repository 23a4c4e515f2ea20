"""The route table is data (gateway/authz/routes.toml): every name in it has a handler, and a file
the gateway cannot serve stops it at start, naming the rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.authz.filters import SEARCHES
from gateway.authz.hooks import Hooks
from gateway.authz.needs import JUDGED_WHOLE, NeedResolver
from gateway.authz.resolve import LOOKUPS
from gateway.authz.resources import MISSING_MESSAGES
from gateway.authz.routes import RULES, Hook, Kind, RouteTableError, Search, load_rules


def test_every_kind_has_a_resolver() -> None:
    resolvers = NeedResolver(None).resolvers  # type: ignore[arg-type]
    assert set(resolvers) | JUDGED_WHOLE == set(Kind)
    assert not set(resolvers) & JUDGED_WHOLE


def test_every_hook_and_search_has_a_handler() -> None:
    assert set(Hooks(None, None).handlers) == set(Hook)  # type: ignore[arg-type]
    assert set(SEARCHES) == set(Search)


def test_every_name_the_data_uses_is_known() -> None:
    lookups = {n.subject for r in RULES for n in r.needs if n.kind == Kind.LOOKUP}
    assert lookups <= set(LOOKUPS), lookups - set(LOOKUPS)
    # A refused caller with no right on a looked-up object gets MLflow's own 404 for it.
    for kind in {Kind.EXPERIMENT, Kind.RUN, Kind.TRACE, Kind.LOGGED_MODEL, Kind.DATASET}:
        assert kind in MISSING_MESSAGES
    assert {f"lookup:{s}" for s in lookups} <= set(MISSING_MESSAGES)


def test_the_shipped_table_loads_every_mlflow_route() -> None:
    assert len(RULES) == len(load_rules()) == 556


@pytest.mark.parametrize(
    ("entry", "complaint"),
    [
        ('operation = "X"\nroutes = ["GET /x"]\nhook = "nope"', "'nope' is not a valid Hook"),
        ('operation = "X"\nroutes = ["GET /x"]\nneeds = [{ kind = "nope" }]', "valid Kind"),
        ('operation = "X"\nroutes = ["GET /x"]\nfilter = "runs"', "valid Search"),
        ('operation = "X"\nroutes = ["GET /x"]\naccess = "open"', "valid Access"),
        ('operation = "X"\nroutes = ["GET /x"]\nneeds = [{ kind = "lookup" }]', "names its lookup"),
        (
            'operation = "X"\nroutes = ["GET /x"]\nneeds = [{ kind = "run", action = "own" }]',
            "action",
        ),
        ('operation = "X"\nroutes = ["FETCH /x"]', "METHOD /path"),
        ('operation = "X"\nroutes = ["GET /x"]\nadmin = true', "unknown keys"),
        ('operation = "X"\nroutes = ["GET /x", "GET /x"]', "is also X"),
    ],
)
def test_a_table_the_gateway_cannot_serve_is_refused(
    tmp_path: Path, entry: str, complaint: str
) -> None:
    table = tmp_path / "routes.toml"
    table.write_text("[[rule]]\n" + entry + "\n")
    with pytest.raises(RouteTableError, match=complaint) as refused:
        load_rules(table)
    assert "X" in str(refused.value)  # the rule is named
