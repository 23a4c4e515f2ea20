"""Policy rules in the gateway database, with a version number bumped by every change.

Every change also writes the lines it added or removed to a change log under its version, with
who made it, in the same transaction. A replica a few versions behind applies those lines instead
of reading and indexing the whole policy again; one more than `KEEP_VERSIONS` behind (or facing a
gap in the log) reloads everything. The log is never pruned: it is the policy's history, which
`policy history` shows and `policy rollback` reads (`gateway/store/policy_history.py`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.policy_lines import (
    PROTECTED_RULE,
    Grouping,
    PolicyDelta,
    PolicyError,
    Rule,
    now_text,
)
from gateway.store import policy_history
from gateway.store.models import Meta, PolicyChange, PolicyRow
from gateway.store.policy_history import HistoryEntry, Rollback, VersionDiff
from gateway.store.policy_rows import (
    PolicySnapshot,
    RawRow,
    bump,
    current_version,
    hold_policy_lock,
    line_columns,
    line_of,
    match,
    row_of,
    snapshot_of,
    stored_line,
)
from gateway.store.users import now

__all__ = ["KEEP_VERSIONS", "PolicySnapshot", "PolicyStore", "snapshot_of"]

# How far behind a replica may be and still catch up from the log rather than reload everything.
KEEP_VERSIONS = 1000
SNAPSHOT_SLICE = 2000
_BOOTSTRAPPED = "policy_bootstrapped"


class PolicyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    @asynccontextmanager
    async def _changing(self) -> AsyncIterator[AsyncSession]:
        """The transaction of a change, holding the policy's write lock from its first
        statement (`hold_policy_lock`): concurrent changes on any replica run one after the
        other instead of acting on rows another one is changing."""
        async with self._sessions.begin() as session:
            await hold_policy_lock(session)
            yield session

    async def version(self) -> int:
        async with self._sessions() as session:
            return await current_version(session)

    async def snapshot(self) -> PolicySnapshot:
        version, rows = await self.raw_snapshot()
        return snapshot_of(version, rows)

    async def raw_snapshot(self) -> tuple[int, list[RawRow]]:
        """The version and every line as plain tuples (ptype, v0..v3, expires_at): turning 100k
        rows into rules is left to the caller, who may do it off the event loop (`snapshot_of`)."""
        columns = select(*line_columns(PolicyRow))
        rows: list[RawRow] = []
        async with self._sessions() as session:
            version = await current_version(session)
            # In slices, each an await: reading 100k rows must not hold the event loop.
            result = await session.stream(columns)
            async for part in result.partitions(SNAPSHOT_SLICE):
                rows.extend(cast(RawRow, tuple(row)) for row in part)
        return version, rows

    async def changes_since(self, version: int) -> PolicyDelta | None:
        """The lines changed after ``version`` up to the current version, or None when the log
        should not tell (too far behind, a gap, or ``version`` is not one this database had):
        reload everything."""
        columns = select(PolicyChange.version, PolicyChange.added, *line_columns(PolicyChange))
        async with self._sessions() as session:
            current = await current_version(session)
            if current == version:
                return PolicyDelta(current, ())
            if current < version or current - version > KEEP_VERSIONS:
                return None
            rows = (
                await session.execute(
                    columns.where(
                        (PolicyChange.version > version) & (PolicyChange.version <= current)
                    ).order_by(PolicyChange.id)
                )
            ).all()
        if {r[0] for r in rows} != set(range(version + 1, current + 1)):
            return None
        return PolicyDelta(current, tuple((bool(r[1]), line_of(*r[2:])) for r in rows))

    async def bootstrap(self, lines: Iterable[Rule | Grouping]) -> bool:
        """Load the shipped bootstrap policy once, into an empty installation."""
        try:
            return await self._bootstrap(lines)
        except IntegrityError:
            # Replicas starting together: another one bootstrapped first (its marker row won).
            if await self._bootstrapped():
                return False
            raise

    async def _bootstrapped(self) -> bool:
        async with self._sessions() as session:
            return await session.get(Meta, _BOOTSTRAPPED) is not None

    async def _bootstrap(self, lines: Iterable[Rule | Grouping]) -> bool:
        async with self._changing() as session:
            if await session.get(Meta, _BOOTSTRAPPED) is not None:
                return False
            session.add(Meta(key=_BOOTSTRAPPED, value=now().isoformat()))
            added: list[tuple[bool, Rule | Grouping]] = []
            for line in lines:
                if await session.scalar(select(PolicyRow.id).where(match(line))) is None:
                    session.add(row_of(line, "bootstrap"))
                    added.append((True, line))
            if added:
                await bump(session, added, "bootstrap")
        return True

    @staticmethod
    async def _put(
        session: AsyncSession, line: Rule | Grouping, actor: str | None
    ) -> list[tuple[bool, Rule | Grouping]]:
        """Store ``line``: nothing when it is there as it is; a rule there with another expiry
        gets this one (the log says: the old line removed, the new one added)."""
        row = await session.scalar(select(PolicyRow).where(match(line)))
        if row is None:
            session.add(row_of(line, actor))
            return [(True, line)]
        old = stored_line(row)
        if old == line:
            return []
        row.expires_at = row_of(line, actor).expires_at
        return [(False, old), (True, line)]

    @staticmethod
    async def _delete(session: AsyncSession, row_id: int) -> bool:
        """Delete one row; False when another transaction deleted it first (so only one change,
        and one audit event, names its removal)."""
        result = await session.execute(delete(PolicyRow).where(PolicyRow.id == row_id))
        return bool(cast(CursorResult[Any], result).rowcount)

    async def add(
        self, lines: Iterable[Rule | Grouping], actor: str | None, author: str | None = None
    ) -> list[Rule | Grouping]:
        """Add lines that are not there yet (or change a rule's expiry); returns those actually
        added. ``author``: what the rows record as their creator, when not ``actor``."""
        changes: list[tuple[bool, Rule | Grouping]] = []
        async with self._changing() as session:
            for line in lines:
                line.validate()
                changes += await self._put(session, line, author or actor)
            if changes:
                await bump(session, changes, actor)
        return [line for added, line in changes if added]

    async def remove(
        self, lines: Iterable[Rule | Grouping], actor: str | None = None
    ) -> list[Rule | Grouping]:
        """Remove lines (a rule whatever its expiry); returns them as they were stored."""
        removed: list[Rule | Grouping] = []
        async with self._changing() as session:
            for line in lines:
                if isinstance(line, Rule) and line.key == PROTECTED_RULE:
                    raise PolicyError(f"'{line}' makes admins admins and cannot be removed")
                row = await session.scalar(select(PolicyRow).where(match(line)))
                if row is not None and await self._delete(session, row.id):
                    removed.append(stored_line(row))
            if removed:
                await bump(session, [(False, line) for line in removed], actor)
        return removed

    async def expire(self, rules: Iterable[Rule], actor: str) -> list[Rule]:
        """Remove these rules if they are stored with this expiry and it has passed: returns
        those removed here. Replicas expiring the same rule at once remove it once (the second
        waits on the policy lock and finds the row gone)."""
        moment = now_text()
        expired: list[Rule] = []
        async with self._changing() as session:
            for rule in sorted(rules):
                row = await session.scalar(select(PolicyRow).where(match(rule)))
                if row is None or stored_line(row) != rule or not rule.expired(moment):
                    continue
                if await self._delete(session, row.id):
                    expired.append(rule)
            if expired:
                await bump(session, [(False, rule) for rule in expired], actor)
        return expired

    async def replace_object(self, old: str, new: str | None, actor: str | None) -> int:
        """Move every rule on object ``old`` to ``new`` (rename), or drop them (``new`` None)."""
        if "*" in old or (new is not None and "*" in new):
            # A pattern is not one object: moving or dropping it would touch other rules.
            return 0
        async with self._changing() as session:
            rows = (
                await session.scalars(
                    select(PolicyRow).where((PolicyRow.ptype == "p") & (PolicyRow.v1 == old))
                )
            ).all()
            changes: list[tuple[bool, Rule | Grouping]] = []
            for row in rows:
                await session.delete(row)
                changes.append((False, stored_line(row)))
            await session.flush()
            for _, line in changes[:] if new is not None else ():
                rule = cast(Rule, line)
                moved = Rule(rule.subject, new or "", rule.action, rule.effect, rule.expires_at)
                if await session.scalar(select(PolicyRow.id).where(match(moved))) is None:
                    session.add(row_of(moved, actor))
                    changes.append((True, moved))
            if rows:
                await bump(session, changes, actor)
            return len(rows)

    # -- history ---------------------------------------------------------------------------------

    async def history(self, limit: int = 100, before: int | None = None) -> list[HistoryEntry]:
        """Changed lines, newest first; ``before``: only versions older than it."""
        async with self._sessions() as session:
            return await policy_history.entries(session, limit, before)

    async def diff(self, old: int, new: int) -> VersionDiff:
        """The lines the policy gained and lost between versions ``old`` and ``new``."""
        async with self._sessions() as session:
            return await policy_history.diff(session, old, new)

    async def rollback(self, version: int, actor: str | None) -> Rollback:
        """The policy as it was at ``version``, as one new change (the admin rule stays)."""
        async with self._changing() as session:
            return await policy_history.rollback(session, version, actor)
