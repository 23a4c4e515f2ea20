"""GraphQL requests, judged field by field before MLflow executes them.

MLflow's /graphql reads `query`, `variables` and `operationName` from the JSON body. The gateway
parses the same document with graphql-core and collects every resource it reaches, nested fields
and fragments included, whatever the aliases; directives such as @skip are ignored, so a field is
judged even if it might not run. A field the gateway cannot judge refuses the whole request.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValueNode,
    parse,
    value_from_ast_untyped,
)

from gateway.authz.canonical import Ambiguous

# Fields that name no resource and return nothing of anyone's.
HARMLESS = frozenset({"test", "testMutation", "__typename", "__schema", "__type"})


@dataclass(frozen=True)
class GraphqlNeed:
    kind: str  # experiment | run | registered_model | run_model_versions
    value: str


class Unjudgeable(Exception):
    """A part of the query the gateway cannot judge: refused, say which."""


def _fragments(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    return {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}


def _fields(
    selection_set: SelectionSetNode | None,
    fragments: dict[str, FragmentDefinitionNode],
    seen: frozenset[str] = frozenset(),
) -> Iterator[FieldNode]:
    if selection_set is None:
        return
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            yield selection
        elif isinstance(selection, InlineFragmentNode):
            yield from _fields(selection.selection_set, fragments, seen)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name in seen or name not in fragments:
                raise Ambiguous(f"fragment {name!r} is missing or recursive")
            yield from _fields(fragments[name].selection_set, fragments, seen | {name})


def _argument(field: FieldNode, name: str, variables: dict[str, Any]) -> Any:
    for argument in field.arguments or ():
        if argument.name.value == name:
            node: ValueNode = argument.value
            return value_from_ast_untyped(node, variables)
    return None


def _strings(value: Any, what: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not items or any(not isinstance(i, str | int) or isinstance(i, bool) for i in items):
        raise Ambiguous(f"{what} must name ids")
    return [str(i) for i in items]


def _exact_name_filter(text: Any) -> str | None:
    """`name='x'` (or with double quotes) and nothing else: the one filter the gateway judges."""
    if not isinstance(text, str):
        return None
    key, sep, quoted = text.strip().partition("=")
    quoted = quoted.strip()
    if key.strip() != "name" or not sep or len(quoted) < 2 or quoted[0] not in "'\"":
        return None
    if quoted[-1] != quoted[0] or quoted[0] in quoted[1:-1]:
        return None
    return quoted[1:-1]


def _run_id(inputs: dict[str, Any]) -> str:
    run_id, legacy = inputs.get("runId"), inputs.get("runUuid")
    if run_id and legacy and run_id != legacy:
        raise Ambiguous("runId and runUuid name different runs")
    if not (run_id or legacy):
        raise Ambiguous("runId is required")
    return str(run_id or legacy)


def _needs_of(field: FieldNode, variables: dict[str, Any]) -> list[GraphqlNeed]:
    name = field.name.value
    if name in HARMLESS:
        return []
    inputs = _argument(field, "input", variables)
    if not isinstance(inputs, dict):
        raise Ambiguous(f"{name} needs an input object")
    if name == "mlflowGetExperiment":
        return [GraphqlNeed("experiment", s) for s in _strings(inputs.get("experimentId"), name)]
    if name in ("mlflowGetRun", "mlflowListArtifacts"):
        return [GraphqlNeed("run", _run_id(inputs))]
    if name == "mlflowGetMetricHistoryBulkInterval":
        return [GraphqlNeed("run", s) for s in _strings(inputs.get("runIds"), name)]
    if name in ("mlflowSearchRuns", "mlflowSearchDatasets"):
        return [GraphqlNeed("experiment", s) for s in _strings(inputs.get("experimentIds"), name)]
    if name == "mlflowSearchModelVersions":
        model = _exact_name_filter(inputs.get("filter"))
        if model is None:
            raise Unjudgeable("mlflowSearchModelVersions with a filter other than name='<model>'")
        return [GraphqlNeed("registered_model", model)]
    raise Unjudgeable(f"the GraphQL field {name!r}")


def _nested_model_versions(field: FieldNode, fragments: dict[str, FragmentDefinitionNode]) -> bool:
    """Does a run field ask for `modelVersions` (registered models linked to the run)?"""
    return any(
        child.name.value == "run"
        and any(c.name.value == "modelVersions" for c in _fields(child.selection_set, fragments))
        for child in _fields(field.selection_set, fragments)
    )


def _asks_model_versions(
    selection_set: SelectionSetNode | None,
    fragments: dict[str, FragmentDefinitionNode],
    under_run: bool = False,
) -> bool:
    """Is a run's `modelVersions` (the registered models linked to it) requested anywhere below?"""
    for child in _fields(selection_set, fragments):
        name = child.name.value
        if under_run and name == "modelVersions":
            return True
        if _asks_model_versions(
            child.selection_set, fragments, under_run or name in ("run", "runs")
        ):
            return True
    return False


def graphql_needs(body: dict[str, Any]) -> list[GraphqlNeed]:
    """Every resource the GraphQL request in ``body`` reaches. Raises Ambiguous / Unjudgeable."""
    query = body.get("query")
    if not isinstance(query, str):
        raise Ambiguous("'query' must be a GraphQL document")
    variables = body.get("variables") or {}
    if not isinstance(variables, dict):
        raise Ambiguous("'variables' must be an object")
    try:
        document = parse(query)
    except GraphQLError as exc:
        raise Ambiguous(f"the GraphQL document does not parse: {exc.message}") from None
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) != 1:
        raise Ambiguous("send exactly one GraphQL operation per request")
    fragments = _fragments(document)
    needs: list[GraphqlNeed] = []
    for field in _fields(operations[0].selection_set, fragments):
        field_needs = _needs_of(field, variables)
        needs.extend(field_needs)
        if field.name.value == "mlflowGetRun" and _nested_model_versions(field, fragments):
            needs.extend(GraphqlNeed("run_model_versions", n.value) for n in field_needs)
        elif field.name.value != "mlflowGetRun" and _asks_model_versions(
            field.selection_set, fragments
        ):
            # Which runs a search returns is unknown before it runs: their models cannot be judged.
            raise Unjudgeable(f"modelVersions below {field.name.value}")
    return needs
