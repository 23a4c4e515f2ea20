"""What the gateway reads from a GraphQL request: every resource, however the query is dressed."""

from __future__ import annotations

import pytest

from gateway.authz.canonical import Ambiguous
from gateway.authz.graphql import GraphqlNeed, Unjudgeable, graphql_needs

RUN = "0123456789abcdef0123456789abcdef"


def needs(query: str, variables: dict | None = None) -> set[GraphqlNeed]:
    return set(graphql_needs({"query": query, "variables": variables}))


def test_plain_fields() -> None:
    assert needs('{ mlflowGetExperiment(input: {experimentId: "7"}) { experiment { name } } }') == {
        GraphqlNeed("experiment", "7")
    }
    assert needs(
        f'query {{ mlflowGetRun(input: {{runId: "{RUN}"}}) {{ run {{ info {{ runId }} }} }} }}'
    ) == {GraphqlNeed("run", RUN)}


def test_aliases_fragments_and_variables_do_not_hide_anything() -> None:
    query = """
    query Q($e: String, $input: MlflowSearchRunsInput) {
      a: mlflowGetExperiment(input: {experimentId: $e}) { experiment { name } }
      ...More
      ... on Query { b: mlflowSearchRuns(input: $input) { runs { info { runId } } } }
    }
    fragment More on Query { c: mlflowGetExperiment(input: {experimentId: "9"}) { apiError { code } } }
    """
    found = needs(query, {"e": "3", "input": {"experimentIds": ["4", "5"]}})
    assert found == {
        GraphqlNeed("experiment", "3"),
        GraphqlNeed("experiment", "9"),
        GraphqlNeed("experiment", "4"),
        GraphqlNeed("experiment", "5"),
    }


def test_nested_model_versions_of_a_run_are_judged_too() -> None:
    query = (
        f'{{ mlflowGetRun(input: {{runId: "{RUN}"}}) {{ run {{ modelVersions {{ name }} }} }} }}'
    )
    assert GraphqlNeed("run_model_versions", RUN) in needs(query)


@pytest.mark.parametrize(
    ("query", "variables", "error"),
    [
        (
            "{ mlflowSearchModelVersions(input: {filter: \"run_id='x'\"}) { modelVersions { name } } }",
            None,
            Unjudgeable,
        ),
        ("{ somethingNew(input: {}) { x } }", None, Unjudgeable),
        (
            "{ mlflowSearchRuns(input: {experimentIds: []}) { runs { info { runId } } } }",
            None,
            Ambiguous,
        ),
        (
            'query A { test(inputString: "x") { output } } query B { test(inputString: "y") { output } }',
            None,
            Ambiguous,
        ),
        ("{ ...Loop } fragment Loop on Query { ...Loop }", None, Ambiguous),
        ("{ mlflowGetExperiment(input: $missing) { experiment { name } } }", None, Ambiguous),
        ("not graphql", None, Ambiguous),
        (
            f'{{ mlflowGetRun(input: {{runId: "{RUN}", runUuid: "other"}}) {{ run {{ info {{ runId }} }} }} }}',
            None,
            Ambiguous,
        ),
    ],
)
def test_what_cannot_be_judged_is_refused(query: str, variables: dict | None, error: type) -> None:
    with pytest.raises(error):
        graphql_needs({"query": query, "variables": variables})


def test_exact_model_name_filter_is_judged() -> None:
    query = "{ mlflowSearchModelVersions(input: {filter: \"name='fraud'\"}) { modelVersions { version } } }"
    assert needs(query) == {GraphqlNeed("registered_model", "fraud")}
    harmless = '{ test(inputString: "hi") { output } __typename }'
    assert needs(harmless) == set()


def test_model_versions_below_searched_runs_cannot_be_judged() -> None:
    query = (
        '{ mlflowSearchRuns(input: {experimentIds: ["1"]}) { runs { modelVersions { name } } } }'
    )
    with pytest.raises(Unjudgeable):
        graphql_needs({"query": query})
