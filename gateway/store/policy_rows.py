"""Policy lines as rows: the rule table's and the change log's fields, and back.

Shared by the store (`policies.py`) and its history (`policy_history.py`), which both write the
change log: every version's lines, who made it, and each rule's expiry.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.policy_lines import EXPIRY_FORMAT, Grouping, Rule, expiry_text
from gateway.store.models import Meta, PolicyChange, PolicyRow
from gateway.store.users import now

VERSION_KEY = "policy_version"
# ptype, v0..v3, expires_at: a line as the rule table holds it.
RawRow = tuple[str, str, str, str, str, datetime | None]


@dataclass(frozen=True)
class PolicySnapshot:
    rules: tuple[Rule, ...]
    groupings: tuple[Grouping, ...]
    version: int


def expiry_of(value: datetime | None) -> str:
    return expiry_text(value) if value is not None else ""


def moment_of(line: Rule | Grouping) -> datetime | None:
    if isinstance(line, Rule) and line.expires_at:
        return datetime.strptime(line.expires_at, EXPIRY_FORMAT).replace(tzinfo=UTC)
    return None


def row_of(line: Rule | Grouping, actor: str | None) -> PolicyRow:
    if isinstance(line, Rule):
        return PolicyRow(
            ptype="p",
            v0=line.subject,
            v1=line.object,
            v2=line.action,
            v3=line.effect,
            created_at=now(),
            created_by=actor,
            expires_at=moment_of(line),
        )
    return PolicyRow(
        ptype="g", v0=line.member, v1=line.group, v2="", v3="", created_at=now(), created_by=actor
    )


def line_of(
    ptype: str, v0: str, v1: str, v2: str, v3: str, expires: datetime | None = None
) -> Rule | Grouping:
    return Rule(v0, v1, v2, v3, expiry_of(expires)) if ptype == "p" else Grouping(v0, v1)


def line_columns(table: type[PolicyRow] | type[PolicyChange]) -> tuple[Any, ...]:
    """The columns of a line in the rule table or the change log, in `line_of`'s order."""
    return (table.ptype, table.v0, table.v1, table.v2, table.v3, table.expires_at)


def stored_line(row: PolicyRow) -> Rule | Grouping:
    return line_of(row.ptype, row.v0, row.v1, row.v2, row.v3, row.expires_at)


_CHANGE_FIELDS = ("ptype", "v0", "v1", "v2", "v3", "created_at", "expires_at")


def change_of(version: int, added: bool, line: Rule | Grouping, actor: str | None) -> PolicyChange:
    """The change-log entry of ``line``: the row's own fields, the version, the direction and
    who made the change."""
    row = row_of(line, None)
    fields = {name: getattr(row, name) for name in _CHANGE_FIELDS}
    return PolicyChange(version=version, added=added, actor=actor, **fields)


def match(line: Rule | Grouping):  # noqa: ANN201 - a SQLAlchemy boolean clause
    """The row of ``line`` (a rule whatever its expiry: the expiry is not part of its name)."""
    if isinstance(line, Rule):
        return (
            (PolicyRow.ptype == "p")
            & (PolicyRow.v0 == line.subject)
            & (PolicyRow.v1 == line.object)
            & (PolicyRow.v2 == line.action)
            & (PolicyRow.v3 == line.effect)
        )
    return (PolicyRow.ptype == "g") & (PolicyRow.v0 == line.member) & (PolicyRow.v1 == line.group)


def snapshot_of(version: int, rows: Iterable[RawRow]) -> PolicySnapshot:
    rules: list[Rule] = []
    groupings: list[Grouping] = []
    for ptype, v0, v1, v2, v3, expires in rows:
        if ptype == "p":
            rules.append(Rule(v0, v1, v2, v3, expiry_of(expires)))
        elif ptype == "g":
            groupings.append(Grouping(v0, v1))
    return PolicySnapshot(tuple(rules), tuple(groupings), version)


async def hold_policy_lock(session: AsyncSession) -> None:
    """Every policy change's first statement: a no-op update of the version row. It takes the
    write lock at once (SQLite's, which a transaction takes at its first write; PostgreSQL's lock
    on that row), so changes wait for each other from their start and what one reads before it
    writes (a rule's row, its expiry) stays true until it commits. A rule's row read before the
    lock could be gone by the write: a sweep of its expiry deleted it meanwhile."""
    await session.execute(update(Meta).where(Meta.key == VERSION_KEY).values(value=Meta.value))


async def current_version(session: AsyncSession) -> int:
    """The policy's version (in a change: as of its `hold_policy_lock`, so versions commit in
    order and no two changes get the same number)."""
    meta = await session.scalar(select(Meta).where(Meta.key == VERSION_KEY))
    return int(meta.value) if meta else 0


async def bump(
    session: AsyncSession, changes: list[tuple[bool, Rule | Grouping]], actor: str | None
) -> int:
    """Next version, and its lines in the change log, with who made it (the same transaction,
    which holds the policy lock)."""
    version = await current_version(session) + 1
    if version == 1:
        session.add(Meta(key=VERSION_KEY, value=str(version)))
    else:
        await session.execute(
            update(Meta).where(Meta.key == VERSION_KEY).values(value=str(version))
        )
    session.add_all(change_of(version, added, line, actor) for added, line in changes)
    return version
