"""The audit index: per actor, per resource and per action, the stream ids of their events.

The writer's Lua script adds each event's stream id to the index sets of its terms in the same
atomic call that adds the event to the stream, and trims the sets as the stream's MAXLEN trims
the stream. `audit search --actor/--resource/--action` reads these sets instead of the stream.

Each set is a sorted set whose members all score 0 and are the stream ids written at a fixed
width (milliseconds to 13 digits, then the sequence to 10): in such a set lexical order is the
stream's order, so a page below a cursor, a time bound and a trim are exact lexical ranges
(ZREVRANGEBYLEX, ZREMRANGEBYLEX).
"""

from __future__ import annotations

from typing import Any

PREFIX = "mlgw:audit:ix:"
ACTOR = PREFIX + "actor:"
RESOURCE = PREFIX + "resource:"
ACTION = PREFIX + "action:"
# Every index set, scored by the milliseconds of its oldest member: the script finds there the
# sets whose oldest events the stream has trimmed, and a resource pattern its sets.
REGISTRY = PREFIX + "sets"
# The stream id of the first event indexed: older events (written before the index existed) are
# searched by reading the stream.
FROM = PREFIX + "from"

MS_DIGITS = 13
SEQ_DIGITS = 10


def member(stream_id: str) -> str:
    """The index member of a stream id: "1700000000000-7" → "17000000000000000000007"."""
    ms, _, seq = stream_id.partition("-")
    return ms.zfill(MS_DIGITS) + (seq or "0").zfill(SEQ_DIGITS)


def stream_id(indexed: str | bytes) -> str:
    text = indexed.decode() if isinstance(indexed, bytes) else indexed
    return f"{int(text[:MS_DIGITS])}-{int(text[MS_DIGITS:])}"


def ms_member(ms: int, last: bool = False) -> str:
    """The first (or last) possible member of a millisecond."""
    return str(max(0, ms)).zfill(MS_DIGITS) + ("9" if last else "0") * SEQ_DIGITS


def resources(event: dict[str, Any]) -> list[str]:
    names = [d.get("resource", "") for d in event.get("decisions") or []]
    return names + list(event.get("resources") or [])


def actions(event: dict[str, Any]) -> list[str]:
    return [d.get("action", "") for d in event.get("decisions") or []] + [event.get("action") or ""]


def keys(event: dict[str, Any]) -> list[str]:
    """The index sets an event belongs to: exactly the actor, resources and actions that
    AuditQuery.matches tests, so that the index finds what reading the stream would."""
    found: list[str] = []
    subject = (event.get("actor") or {}).get("subject")
    if subject:
        found.append(ACTOR + str(subject))
    found += [RESOURCE + name for name in sorted(set(resources(event))) if name]
    found += [ACTION + name for name in sorted(set(actions(event))) if name]
    return found
