"""Request fields of the admin API: one description drives both validation and the OpenAPI document.

A field says what it accepts (type, pattern, length, choices). `read_body` and `read_query` check a
request against those descriptions and refuse anything else — unknown fields, wrong types, values
outside a pattern — so the API accepts exactly what its published schema says, nothing looser.
Patterns are written without anchors and checked whole (`re.fullmatch`); the schema gets them
anchored, so a JSON Schema validator and Python agree on what matches.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from multidict import MultiMapping

Kind = Literal["string", "boolean", "integer", "array"]

# Characters allowed in policy names: no control characters, spaces, commas (CSV) or stars.
_NAME_CHARS = r"[^\x00-\x20\x7f,*]"
NAME = r"[A-Za-z0-9][A-Za-z0-9._@+\-]{0,199}"
SUBJECT = rf"(user|group|role):{_NAME_CHARS}{{1,240}}"
OBJECT = r"\*|[a-z_]{1,40}:[^\x00-\x20\x7f,]{0,470}"
ACTION = r"\*|read|edit|manage|create|use|promote:(\*|[a-z]{1,20})|alias:[^\x00-\x20\x7f,]{1,200}"
TOKEN_ID = r"[0-9a-f]{12}"  # noqa: S105 - the shape of a token id, not a secret
DURATION = r"[1-9][0-9]{0,5}[dhms]?"
SCOPE_ITEM = r"[^\x00-\x20\x7f,]{1,500}"


class BadInput(ValueError):
    """The request does not fit the schema; the message says which field and why."""


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind = "string"
    required: bool = False
    description: str = ""
    pattern: str | None = None
    max_length: int = 200
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    # For arrays: the description of one item, and the most items accepted.
    item: Field | None = None
    max_items: int = 100

    def schema(self) -> dict[str, Any]:
        if self.kind == "array":
            assert self.item is not None
            out: dict[str, Any] = {
                "type": "array",
                "items": self.item.schema(),
                "maxItems": self.max_items,
            }
        elif self.kind == "string":
            out = {"type": "string", "maxLength": self.max_length}
            if self.pattern:
                out["pattern"] = f"^(?:{self.pattern})$"
            if self.choices:
                out = {"type": "string", "enum": list(self.choices)}
        elif self.kind == "integer":
            out = {"type": "integer"}
            if self.minimum is not None:
                out["minimum"] = self.minimum
            if self.maximum is not None:
                out["maximum"] = self.maximum
        else:
            out = {"type": self.kind}
        if self.description:
            out["description"] = self.description
        return out

    def check(self, value: Any, where: str) -> Any:
        """The value, if it fits; otherwise BadInput naming the field."""
        label = f"{where} {self.name!r}"
        if self.kind == "boolean":
            if not isinstance(value, bool):
                raise BadInput(f"{label} must be true or false")
            return value
        if self.kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int):
                raise BadInput(f"{label} must be a whole number")
            if (self.minimum is not None and value < self.minimum) or (
                self.maximum is not None and value > self.maximum
            ):
                raise BadInput(f"{label} must be between {self.minimum} and {self.maximum}")
            return value
        if self.kind == "array":
            assert self.item is not None
            if not isinstance(value, list):
                raise BadInput(f"{label} must be a list")
            if len(value) > self.max_items:
                raise BadInput(f"{label} takes at most {self.max_items} items")
            return [self.item.check(v, f"an item of {label}") for v in value]
        if not isinstance(value, str):
            raise BadInput(f"{label} must be a string")
        if self.choices:
            if value not in self.choices:
                raise BadInput(f"{label} must be one of {', '.join(self.choices)}")
            return value
        if len(value) > self.max_length:
            raise BadInput(f"{label} is longer than {self.max_length} characters")
        if self.pattern and not _compiled(self.pattern).fullmatch(value):
            raise BadInput(f"{label} has an invalid value {value[:80]!r}")
        return value


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def read_body(raw: bytes, fields: Sequence[Field]) -> dict[str, Any]:
    """A JSON object holding only the given fields, each valid, the required ones present."""
    try:
        data = json.loads(raw.decode("utf-8")) if raw else None
    except (UnicodeDecodeError, ValueError):
        raise BadInput("the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadInput("the request body must be a JSON object")
    known = {f.name: f for f in fields}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise BadInput(f"unknown field {unknown[0]!r}; accepted: {', '.join(known) or 'none'}")
    out: dict[str, Any] = {}
    for field in fields:
        if field.name in data:
            out[field.name] = field.check(data[field.name], "field")
        elif field.required:
            raise BadInput(f"field {field.name!r} is required")
    return out


def read_query(query: MultiMapping[str], fields: Sequence[Field]) -> dict[str, Any]:
    """Query parameters: known names only, each at most once (arrays repeat), typed and valid."""
    known = {f.name: f for f in fields}
    unknown = sorted(set(query) - set(known))
    if unknown:
        raise BadInput(f"unknown parameter {unknown[0]!r}")
    out: dict[str, Any] = {}
    for field in fields:
        values: list[str] = list(query.getall(field.name, []))
        if not values:
            if field.required:
                raise BadInput(f"parameter {field.name!r} is required")
            continue
        if field.kind == "array":
            out[field.name] = field.check(values, "parameter")
            continue
        if len(values) > 1:
            raise BadInput(f"parameter {field.name!r} is given more than once")
        value: Any = values[0]
        if field.kind == "integer":
            if not re.fullmatch(r"-?[0-9]{1,18}", value):
                raise BadInput(f"parameter {field.name!r} must be a whole number")
            value = int(value)
        elif field.kind == "boolean":
            if value not in ("true", "false"):
                raise BadInput(f"parameter {field.name!r} must be true or false")
            value = value == "true"
        out[field.name] = field.check(value, "parameter")
    return out


def object_schema(fields: Sequence[Field]) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {f.name: f.schema() for f in fields},
        "additionalProperties": False,
    }
    required = [f.name for f in fields if f.required]
    if required:
        schema["required"] = required
    return schema
