"""A bounded in-memory cache whose entries also expire (lookups, checks worth remembering)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any


class BoundedCache:
    """LRU with a per-entry lifetime."""

    def __init__(self, max_entries: int, ttl: float) -> None:
        self._data: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._max = max_entries
        self._ttl = ttl

    def __len__(self) -> int:
        """Entries held, some perhaps expired (each is dropped when next looked up)."""
        return len(self._data)

    def get(self, key: str) -> Any:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return entry[1]

    def put(self, key: str, value: Any) -> None:
        self._data[key] = (time.monotonic() + self._ttl, value)
        self._data.move_to_end(key)
        while len(self._data) > self._max:
            self._data.popitem(last=False)

    def amend(self, key: str, change: Callable[[Any], Any]) -> None:
        """Change a remembered value, keeping its expiry; nothing when it is not remembered."""
        entry = self._data.get(key)
        if entry is not None and entry[0] >= time.monotonic():
            self._data[key] = (entry[0], change(entry[1]))

    def drop(self, key: str) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()
