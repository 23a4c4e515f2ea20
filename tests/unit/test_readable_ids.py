"""Which rules let the gateway narrow an experiment search to a list of ids, and which do not."""

from __future__ import annotations

import pytest

from gateway.authn.principal import Principal
from gateway.authz.enforcer import Enforcer
from gateway.policy_lines import Grouping, PolicyDelta, Rule, parse_line

ANN = Principal(subject="ann", method="token", groups=frozenset({"idp-team"}))


def enforcer_with(*lines: str) -> Enforcer:
    enforcer = Enforcer(store=None, redis=None)  # type: ignore[arg-type]  # neither is used here
    parsed: list[Rule | Grouping] = [parse_line(line) for line in lines]
    enforcer.index.apply(PolicyDelta(1, tuple((True, line) for line in parsed)))
    return enforcer


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["p, user:ann, experiment:3, read", "p, group:idp-team, experiment:7, edit"], {"3", "7"}),
        (["g, user:ann, group:t", "p, group:t, experiment:4, manage"], {"4"}),
        # Rights that do not grant read, denies, and other kinds of objects add nothing.
        (["p, user:ann, experiment:5, create", "p, user:ann, experiment:6, read, deny"], set()),
        (["p, user:ann, registered_model:*, read", "p, user:ann, experiment:8, *"], {"8"}),
        # Patterns that could name an experiment, names, and admins: no list.
        (["p, user:ann, experiment:1*, read"], None),
        (["p, user:ann, experiment_name:/a/*, read"], None),
        (["p, user:ann, experiment_name:/a/x, read"], None),
        (["p, user:ann, *, read"], None),
        (["p, user:ann, experiment:*, read"], None),
        (["g, user:ann, role:admin"], None),
    ],
)
def test_readable_experiment_ids(lines: list[str], expected: set[str] | None) -> None:
    found = enforcer_with(*lines).readable_experiment_ids(ANN)
    assert found == (None if expected is None else frozenset(expected))


def test_a_policy_change_forgets_the_list() -> None:
    enforcer = enforcer_with("p, user:ann, experiment:3, read")
    assert enforcer.readable_experiment_ids(ANN) == {"3"}
    enforcer._apply(PolicyDelta(2, ((True, Rule("user:ann", "experiment:9", "read")),)))
    assert enforcer.readable_experiment_ids(ANN) == {"3", "9"}
