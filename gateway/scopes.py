"""What a gateway token may be used for, and how long it lives: words every layer reads alike.

The ground floor: authentication carries a token's scope in its principal, authorization narrows
requests by it, the store keeps it as JSON, and the CLI, the console and the API read it from
words (``read-only``, ``experiment:<id>``, ``registered_model:<name>``) and durations (``30d``).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from datetime import timedelta

MAX_TOKEN_DAYS = 366


class ScopeError(ValueError):
    """A scope word or a duration that cannot be read; the message says how to write it."""


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``45s`` or a plain number of days."""
    text = text.strip().lower()
    units = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
    try:
        if text and text[-1] in units:
            amount = int(text[:-1])
            delta = timedelta(**{units[text[-1]]: amount})
        else:
            amount = int(text)
            delta = timedelta(days=amount)
    except ValueError:
        raise ScopeError(f"invalid duration {text!r}: use e.g. 30d, 12h, 90m or 45s") from None
    if amount <= 0 or delta > timedelta(days=MAX_TOKEN_DAYS):
        raise ScopeError(f"a duration must be positive and at most {MAX_TOKEN_DAYS} days")
    return delta


@dataclass(frozen=True)
class TokenScope:
    """What a token may be used for. Empty lists mean 'not limited by this dimension'."""

    read_only: bool = False
    experiments: tuple[str, ...] = field(default=())
    registered_models: tuple[str, ...] = field(default=())

    @property
    def unrestricted(self) -> bool:
        return not (self.read_only or self.experiments or self.registered_models)

    @classmethod
    def parse(cls, items: list[str] | tuple[str, ...]) -> TokenScope:
        """From CLI/API words: ``read-only``, ``experiment:<id>``, ``registered_model:<name>``."""
        read_only = False
        experiments: list[str] = []
        models: list[str] = []
        for item in items:
            if item == "read-only":
                read_only = True
            elif item.startswith("experiment:") and item[len("experiment:") :]:
                experiments.append(item[len("experiment:") :])
            elif item.startswith("registered_model:") and item[len("registered_model:") :]:
                models.append(item[len("registered_model:") :])
            else:
                raise ScopeError(
                    f"invalid scope {item!r}: use read-only, experiment:<id> or "
                    "registered_model:<name> (patterns with * allowed)"
                )
        return cls(read_only, tuple(experiments), tuple(models))

    def words(self) -> list[str]:
        return (
            (["read-only"] if self.read_only else [])
            + [f"experiment:{e}" for e in self.experiments]
            + [f"registered_model:{m}" for m in self.registered_models]
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "read_only": self.read_only,
                "experiments": list(self.experiments),
                "registered_models": list(self.registered_models),
            }
        )

    @classmethod
    @functools.lru_cache(maxsize=1024)  # the same few scopes, parsed on every request
    def from_json(cls, raw: str) -> TokenScope:
        data = json.loads(raw or "{}")
        return cls(
            bool(data.get("read_only", False)),
            tuple(data.get("experiments", ())),
            tuple(data.get("registered_models", ())),
        )
