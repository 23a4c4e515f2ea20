"""Read a request's parameters exactly as MLflow's handler will, once, and refuse ambiguity.

MLflow's Flask handlers read a GET's query string when it has one, otherwise the JSON body; every
other method parses the JSON body whatever the Content-Type and ignores the query string. Protobuf
parsing accepts lowerCamel twins of snake_case fields, and MLflow decodes a JSON string body a
second time (legacy clients). The gateway parses the same way and refuses what two readers could
read differently: a field in both query and body, duplicate JSON keys, both spellings of a field, a
non-JSON body where MLflow parses JSON, a repeated query parameter where one value is expected.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.authz.routes import RouteRule

MAX_JUDGED_BODY = 32 * 1024 * 1024


class Ambiguous(ValueError):
    """The request could be read two ways; the message says how to make it unambiguous."""


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise Ambiguous(f"the JSON body repeats the key {key!r}")
        seen.add(key)
    return dict(pairs)


def parse_json_body(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        data = json.loads(body, object_pairs_hook=_no_duplicate_keys)
        if isinstance(data, str):  # MLflow decodes a double-encoded body once more
            data = json.loads(data, object_pairs_hook=_no_duplicate_keys)
    except (ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, Ambiguous):
            raise
        raise Ambiguous("the body must be JSON (MLflow parses it as JSON)") from None
    if not isinstance(data, dict):
        raise Ambiguous("the JSON body must be an object")
    return data


def _scalar(value: Any) -> str | None:
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        return None
    return str(value)


def _get_member(obj: Any, key: str) -> Any:
    """``obj[key]``, also under its lowerCamel spelling; both present is ambiguous."""
    if not isinstance(obj, dict):
        return None
    twin = camel(key)
    if twin != key and key in obj and twin in obj:
        raise Ambiguous(f"the body spells {key!r} both as {key!r} and {twin!r}")
    return obj.get(key, obj.get(twin))


def _walk(obj: Any, parts: list[str]) -> Iterator[Any]:
    if not parts:
        yield obj
        return
    head, rest = parts[0], parts[1:]
    many = head.endswith("[]")
    value = _get_member(obj, head.removesuffix("[]"))
    if value is None:
        return
    if many:
        if not isinstance(value, list):
            raise Ambiguous(f"{head.removesuffix('[]')!r} must be a list")
        for item in value:
            yield from _walk(item, rest)
    else:
        yield from _walk(value, rest)


@dataclass(frozen=True)
class Params:
    """The parameters MLflow will act on: path values, and either query or JSON values."""

    path: Mapping[str, str]
    query: Mapping[str, list[str]] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def values(self, name: str) -> list[str]:
        """Every value of ``name`` (dots nest, ``[]`` marks lists; path parameters win)."""
        if name in self.path:
            return [self.path[name]]
        if name.startswith("x-"):
            value = self.headers.get(name)
            return [value] if value is not None else []
        if self.body is not None:
            found: list[str] = []
            for value in _walk(self.body, name.split(".")):
                items = value if isinstance(value, list) else [value]
                for item in items:
                    scalar = _scalar(item)
                    if scalar is None:
                        raise Ambiguous(f"{name!r} must be a string or a number")
                    found.append(scalar)
            return found
        return list(self.query.get(name, []))


def parse_query(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    for key, value in pairs:
        parsed.setdefault(key, []).append(value)
    return parsed


def _single_valued_repeats(rule: RouteRule, query: Mapping[str, list[str]]) -> str | None:
    singles = {n.field for n in rule.needs if n.field and not n.many}
    for name in singles:
        if len(query.get(name, [])) > 1:
            return name
    return None


def canonical_params(
    rule: RouteRule,
    method: str,
    path_params: Mapping[str, str],
    query_pairs: Iterable[tuple[str, str]],
    body: bytes,
    headers: Mapping[str, str],
) -> Params:
    query = parse_query(query_pairs)
    header_values: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        if key.startswith("x-mlflow"):
            if key in header_values:
                raise Ambiguous(f"the header {name} is repeated")
            header_values[key] = value
    if rule.params == "none":
        return Params(path_params, headers=header_values)
    if rule.params == "query":
        if body.strip():
            raise Ambiguous("this operation reads the query string; send no body")
        if repeated := _single_valued_repeats(rule, query):
            raise Ambiguous(f"the query string repeats {repeated!r}")
        return Params(path_params, query=query)
    reads_query = rule.params == "mlflow" and method in ("GET", "HEAD") and bool(query)
    if reads_query:
        if body.strip():
            raise Ambiguous("a GET with a query string must not carry a body (MLflow ignores it)")
        if repeated := _single_valued_repeats(rule, query):
            raise Ambiguous(f"the query string repeats {repeated!r}")
        return Params(path_params, query=query)
    # MLflow reads the JSON body and ignores the query string: a governing field in the query
    # would be judged by one reader and ignored by the other.
    governing = {n.field.split(".")[0].removesuffix("[]") for n in rule.needs if n.field}
    confusing = sorted(governing & (set(query) | {camel(g) for g in governing} & set(query)))
    if confusing:
        raise Ambiguous(
            f"{', '.join(confusing)} must be in the JSON body, not the query string "
            "(MLflow reads the body for this operation)"
        )
    return Params(path_params, body=parse_json_body(body))
