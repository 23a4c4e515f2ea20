"""The policy's history: the change log read back, the policy as it was at a version, rollback.

Every version's lines are in the change log (`policy_changes`, never pruned), with who made the
change and when. The policy at version V is today's policy with every later change undone, newest
first; a rollback to V writes the difference as one new version, like any change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.policy_lines import PROTECTED_RULE, Grouping, PolicyError, Rule, now_text
from gateway.store.models import PolicyChange, PolicyRow
from gateway.store.policy_rows import (
    bump,
    current_version,
    line_columns,
    line_of,
    row_of,
    stored_line,
)

Line = Rule | Grouping


class UnknownVersion(PolicyError):
    """A version the history does not have; the message says which it has."""


@dataclass(frozen=True)
class HistoryEntry:
    """One line one version added or removed."""

    version: int
    time: datetime
    actor: str | None
    added: bool
    line: Line

    @property
    def op(self) -> str:
        return "add" if self.added else "remove"


@dataclass(frozen=True)
class VersionDiff:
    """The lines the policy gained and lost from version ``old`` to version ``new``."""

    old: int
    new: int
    added: tuple[Line, ...]
    removed: tuple[Line, ...]

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)


@dataclass(frozen=True)
class Rollback(VersionDiff):
    """A rollback to ``target``: the change from the version before it (``old``) to the one it
    made (``new``; unchanged, nothing to do: ``old``)."""

    target: int

    @property
    def version(self) -> int:
        """The policy's version after the rollback."""
        return self.new


# version, time, actor, added, then the line (`line_of`'s fields: r[4:]).
_COLUMNS = (
    PolicyChange.version,
    PolicyChange.created_at,
    PolicyChange.actor,
    PolicyChange.added,
    *line_columns(PolicyChange),
)


async def entries(session: AsyncSession, limit: int, before: int | None) -> list[HistoryEntry]:
    query = select(*_COLUMNS)
    if before is not None:
        query = query.where(PolicyChange.version < before)
    rows = (
        await session.execute(
            query.order_by(PolicyChange.version.desc(), PolicyChange.id.desc()).limit(limit)
        )
    ).all()
    return [HistoryEntry(r[0], r[1], r[2], bool(r[3]), line_of(*r[4:])) for r in rows]


async def _oldest(session: AsyncSession) -> int | None:
    return await session.scalar(
        select(PolicyChange.version).order_by(PolicyChange.version).limit(1)
    )


async def lines_at(session: AsyncSession, version: int) -> set[Line]:
    """Every line of the policy as it was at ``version``. Raises UnknownVersion."""
    current = await current_version(session)
    oldest = await _oldest(session)
    known = f"versions {oldest} to {current}" if oldest else "no versions yet"
    if version < 1 or version > current:
        raise UnknownVersion(f"unknown policy version {version}: the history has {known}")
    later = (
        await session.execute(
            select(*_COLUMNS).where(PolicyChange.version > version).order_by(PolicyChange.id.desc())
        )
    ).all()
    if {r[0] for r in later} != set(range(version + 1, current + 1)) or (
        oldest is not None and version < oldest
    ):
        raise UnknownVersion(
            f"policy version {version} is older than the history reaches: it has {known}"
        )
    rows = (await session.scalars(select(PolicyRow))).all()
    state = {stored_line(row) for row in rows}
    for r in later:  # newest first: undo each change
        line = line_of(*r[4:])
        if r[3]:
            state.discard(line)
        else:
            state.add(line)
    return state


async def diff(session: AsyncSession, old: int, new: int) -> VersionDiff:
    before, after = await lines_at(session, old), await lines_at(session, new)
    return VersionDiff(
        old, new, tuple(sorted(after - before, key=str)), tuple(sorted(before - after, key=str))
    )


async def rollback(session: AsyncSession, version: int, actor: str | None) -> Rollback:
    current = await current_version(session)  # the change holds the policy lock: none slips in
    target = await lines_at(session, version)
    moment = now_text()
    # The admin rule stays whatever the old version had; a rule that has expired since stays out.
    target = {line for line in target if not (isinstance(line, Rule) and line.expired(moment))} | {
        PROTECTED_RULE
    }
    rows = (await session.scalars(select(PolicyRow))).all()
    present = {stored_line(row): row for row in rows}
    changes: list[tuple[bool, Line]] = []
    for line, row in present.items():
        if line not in target:
            await session.delete(row)
            changes.append((False, line))
    await session.flush()
    for line in sorted(target - set(present), key=str):
        session.add(row_of(line, actor))
        changes.append((True, line))
    if not changes:
        return Rollback(current, current, (), (), target=version)
    new_version = await bump(session, changes, actor)
    return Rollback(
        current,
        new_version,
        tuple(line for added, line in changes if added),
        tuple(line for added, line in changes if not added),
        target=version,
    )
