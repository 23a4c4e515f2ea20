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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from multidict import MultiMapping

# "time": an RFC 3339 date-time or a relative time ("2h" ago), for audit filters.
Kind = Literal["string", "boolean", "integer", "array", "time"]

# What Python's `\s` matches, spelt out: JSON Schema validators (ECMA regexes) and Python must
# agree on which names are valid, and their `\s` classes differ.
_SPACE = r"\x09-\x0d\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# Policy names: no control characters, white space, commas (CSV) or (in subjects) stars.
_NAME_CHARS = rf"[^\x00-\x08\x0e-\x1b\x7f{_SPACE},*]"
_OBJECT_CHARS = rf"[^\x00-\x08\x0e-\x1b\x7f{_SPACE},]"
NAME = r"[A-Za-z0-9][A-Za-z0-9._@+\-]{0,199}"
SUBJECT = rf"(?:user|group|role):{_NAME_CHARS}{{1,240}}"
OBJECT = rf"\*|[a-z_]{{1,40}}:{_OBJECT_CHARS}{{0,470}}"
ACTION = (
    rf"\*|read|edit|manage|create|use|promote:(?:\*|[a-z]{{1,20}})|alias:{_OBJECT_CHARS}{{1,200}}"
    rf"|request:(?:\*|[a-z]{{1,20}}|alias:{_OBJECT_CHARS}{{1,200}})"
)
TOKEN_ID = r"[0-9a-f]{12}"  # noqa: S105 - the shape of a token id, not a secret
# At most 366 days, as parse_duration (gateway/scopes.py) allows: days, hours, or short spans in
# minutes and seconds.
DURATION = (
    r"(?:[1-9]|[1-9][0-9]|[12][0-9]{2}|3[0-5][0-9]|36[0-6])d?"
    r"|(?:[1-9][0-9]{0,2}|[1-7][0-9]{3}|8[0-6][0-9]{2}|87[0-7][0-9]|878[0-4])h"
    r"|[1-9][0-9]{0,4}m|[1-9][0-9]{0,5}s"
)
SCOPE_ITEM = rf"{_OBJECT_CHARS}{{1,500}}"
RELATIVE_TIME = r"[0-9]{1,5}[smhd]"
DATE_TIME = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)
# A policy file as `parse_lines` reads it: rules, g lines, comments, blank lines. Line breaks are
# every character str.splitlines() breaks at, so a comment cannot smuggle in a second line.
_BREAKS = r"\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029"
_GAP = r"[ \t]*"
_SEP = f"{_GAP},{_GAP}"
_CSV_LINE = (
    rf"{_GAP}(?:#[^{_BREAKS}]*"
    rf"|p{_SEP}{SUBJECT.replace('{1,240}', '+')}{_SEP}(?:{OBJECT.replace('{0,470}', '*')})"
    rf"{_SEP}(?:{ACTION.replace('{1,200}', '+')})(?:{_SEP}(?:allow|deny))?{_GAP}"
    rf"|g{_SEP}{SUBJECT.replace('{1,240}', '+')}{_SEP}{SUBJECT.replace('{1,240}', '+')}{_GAP})?"
)
POLICY_CSV = rf"(?:{_CSV_LINE}\r?\n)*{_CSV_LINE}"


def policy_csv_problem(text: str) -> str:
    """The first line of a policy file that is not a rule, a g line, a comment or blank."""
    for number, line in enumerate(re.split(r"\r?\n", text), start=1):
        if not _compiled(_CSV_LINE).fullmatch(line):
            return (
                f"line {number}: cannot read {line[:120]!r}: use "
                "'p, SUBJECT, OBJECT, ACTION[, allow|deny]' or 'g, MEMBER, GROUP'"
            )
    return "not a policy file"


STREAM_ID = r"[0-9]{1,19}-[0-9]{1,19}"


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
    min_length: int = 0
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    # For arrays: the description of one item, and the most items accepted.
    item: Field | None = None
    max_items: int = 100
    # Says what is wrong with a value that does not match the pattern, better than "invalid".
    explain: Callable[[str], str] | None = None

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
            if self.min_length:
                out["minLength"] = self.min_length
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
        elif self.kind == "time":
            out = {
                "anyOf": [
                    {"type": "string", "format": "date-time"},
                    {"type": "string", "pattern": f"^(?:{RELATIVE_TIME})$"},
                ]
            }
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
        if self.kind == "time":
            if not (
                _compiled(DATE_TIME).fullmatch(value) or _compiled(RELATIVE_TIME).fullmatch(value)
            ):
                raise BadInput(f"{label} must be an RFC 3339 date-time or 15m, 2h, 7d")
            return value
        if self.choices:
            if value not in self.choices:
                raise BadInput(f"{label} must be one of {', '.join(self.choices)}")
            return value
        if len(value) > self.max_length:
            raise BadInput(f"{label} is longer than {self.max_length} characters")
        if len(value) < self.min_length:
            raise BadInput(f"{label} needs at least {self.min_length} characters")
        if self.pattern and not _compiled(self.pattern).fullmatch(value):
            if self.explain is not None:
                raise BadInput(f"{label}: {self.explain(value)}")
            raise BadInput(f"{label} has an invalid value {value[:80]!r}")
        return value


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _unknown(given: Iterable[str], fields: Sequence[Field]) -> str | None:
    """The first (in sort order) of the ``given`` names no field has; None if every one has."""
    unknown = sorted(set(given) - {f.name for f in fields})
    return unknown[0] if unknown else None


def read_body(raw: bytes, fields: Sequence[Field]) -> dict[str, Any]:
    """A JSON object holding only the given fields, each valid, the required ones present."""
    try:
        data = json.loads(raw.decode("utf-8")) if raw else None
    except (UnicodeDecodeError, ValueError):
        raise BadInput("the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadInput("the request body must be a JSON object")
    if unknown := _unknown(data, fields):
        accepted = ", ".join(f.name for f in fields) or "none"
        raise BadInput(f"unknown field {unknown!r}; accepted: {accepted}")
    out: dict[str, Any] = {}
    for field in fields:
        if field.name in data:
            out[field.name] = field.check(data[field.name], "field")
        elif field.required:
            raise BadInput(f"field {field.name!r} is required")
    return out


def read_query(query: MultiMapping[str], fields: Sequence[Field]) -> dict[str, Any]:
    """Query parameters: known names only, each at most once (arrays repeat), typed and valid."""
    if unknown := _unknown(query, fields):
        raise BadInput(f"unknown parameter {unknown!r}")
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
