"""Policy rules in the gateway database, with a version number bumped by every change.

Every change also writes the lines it added or removed to a change log under its version, in the
same transaction, so a replica that is a few versions behind applies those lines instead of
reading and indexing the whole policy again. The log keeps the last `KEEP_VERSIONS` versions; a
replica further behind (or a gap in the log) reloads everything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.policy_lines import PROTECTED_RULE, Grouping, PolicyDelta, PolicyError, Rule
from gateway.store.models import Meta, PolicyChange, PolicyRow
from gateway.store.users import now

_VERSION = "policy_version"
# Versions kept in the change log: far more than a replica falls behind between two checks.
KEEP_VERSIONS = 1000
SNAPSHOT_SLICE = 2000
_BOOTSTRAPPED = "policy_bootstrapped"


@dataclass(frozen=True)
class PolicySnapshot:
    rules: tuple[Rule, ...]
    groupings: tuple[Grouping, ...]
    version: int


def _row(line: Rule | Grouping, actor: str | None) -> PolicyRow:
    if isinstance(line, Rule):
        return PolicyRow(
            ptype="p",
            v0=line.subject,
            v1=line.object,
            v2=line.action,
            v3=line.effect,
            created_at=now(),
            created_by=actor,
        )
    return PolicyRow(
        ptype="g", v0=line.member, v1=line.group, v2="", v3="", created_at=now(), created_by=actor
    )


def _line(ptype: str, v0: str, v1: str, v2: str, v3: str) -> Rule | Grouping:
    return Rule(v0, v1, v2, v3) if ptype == "p" else Grouping(v0, v1)


_CHANGE_FIELDS = ("ptype", "v0", "v1", "v2", "v3", "created_at")


def _change(version: int, added: bool, line: Rule | Grouping) -> PolicyChange:
    """The change-log entry of ``line``: the row's own fields, the version and the direction."""
    row = _row(line, None)
    fields = {name: getattr(row, name) for name in _CHANGE_FIELDS}
    return PolicyChange(version=version, added=added, **fields)


def _match(line: Rule | Grouping):  # noqa: ANN202 - a SQLAlchemy boolean clause
    if isinstance(line, Rule):
        return (
            (PolicyRow.ptype == "p")
            & (PolicyRow.v0 == line.subject)
            & (PolicyRow.v1 == line.object)
            & (PolicyRow.v2 == line.action)
            & (PolicyRow.v3 == line.effect)
        )
    return (PolicyRow.ptype == "g") & (PolicyRow.v0 == line.member) & (PolicyRow.v1 == line.group)


def snapshot_of(version: int, rows: Iterable[tuple[str, str, str, str, str]]) -> PolicySnapshot:
    rules: list[Rule] = []
    groupings: list[Grouping] = []
    for ptype, v0, v1, v2, v3 in rows:
        if ptype == "p":
            rules.append(Rule(v0, v1, v2, v3))
        elif ptype == "g":
            groupings.append(Grouping(v0, v1))
    return PolicySnapshot(tuple(rules), tuple(groupings), version)


class PolicyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    @staticmethod
    async def _bump(session: AsyncSession, changes: list[tuple[bool, Rule | Grouping]]) -> int:
        """Next version, and its lines in the change log. The version row is locked until commit
        (PostgreSQL), so versions commit in order and no two changes get the same number."""
        meta = await session.scalar(select(Meta).where(Meta.key == _VERSION).with_for_update())
        version = 1 if meta is None else int(meta.value) + 1
        if meta is None:
            session.add(Meta(key=_VERSION, value=str(version)))
        else:
            await session.execute(
                update(Meta).where(Meta.key == _VERSION).values(value=str(version))
            )
        session.add_all(_change(version, added, line) for added, line in changes)
        await session.execute(
            delete(PolicyChange).where(PolicyChange.version <= version - KEEP_VERSIONS)
        )
        return version

    async def version(self) -> int:
        async with self._sessions() as session:
            meta = await session.get(Meta, _VERSION)
            return int(meta.value) if meta else 0

    async def snapshot(self) -> PolicySnapshot:
        version, rows = await self.raw_snapshot()
        return snapshot_of(version, rows)

    async def raw_snapshot(self) -> tuple[int, list[tuple[str, str, str, str, str]]]:
        """The version and every line as plain tuples (ptype, v0..v3): turning 100k rows into
        rules is left to the caller, who may do it off the event loop (`snapshot_of`)."""
        columns = select(PolicyRow.ptype, PolicyRow.v0, PolicyRow.v1, PolicyRow.v2, PolicyRow.v3)
        rows: list[tuple[str, str, str, str, str]] = []
        async with self._sessions() as session:
            meta = await session.get(Meta, _VERSION)
            # In slices, each an await: reading 100k rows must not hold the event loop.
            result = await session.stream(columns)
            async for part in result.partitions(SNAPSHOT_SLICE):
                rows.extend(cast(tuple[str, str, str, str, str], tuple(row)) for row in part)
        return (int(meta.value) if meta else 0), rows

    async def changes_since(self, version: int) -> PolicyDelta | None:
        """The lines changed after ``version`` up to the current version, or None when the log
        cannot tell (pruned, or ``version`` is not one this database had): reload everything."""
        columns = select(
            PolicyChange.version,
            PolicyChange.added,
            PolicyChange.ptype,
            PolicyChange.v0,
            PolicyChange.v1,
            PolicyChange.v2,
            PolicyChange.v3,
        )
        async with self._sessions() as session:
            meta = await session.get(Meta, _VERSION)
            current = int(meta.value) if meta else 0
            if current == version:
                return PolicyDelta(current, ())
            if current < version:
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
        return PolicyDelta(current, tuple((bool(r[1]), _line(*r[2:])) for r in rows))

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
        async with self._sessions.begin() as session:
            if await session.get(Meta, _BOOTSTRAPPED) is not None:
                return False
            session.add(Meta(key=_BOOTSTRAPPED, value=now().isoformat()))
            added: list[tuple[bool, Rule | Grouping]] = []
            for line in lines:
                if await session.scalar(select(PolicyRow.id).where(_match(line))) is None:
                    session.add(_row(line, "bootstrap"))
                    added.append((True, line))
            if added:
                await self._bump(session, added)
        return True

    async def add(
        self, lines: Iterable[Rule | Grouping], actor: str | None
    ) -> list[Rule | Grouping]:
        """Add lines that are not there yet; returns those actually added."""
        added: list[Rule | Grouping] = []
        async with self._sessions.begin() as session:
            for line in lines:
                line.validate()
                if await session.scalar(select(PolicyRow.id).where(_match(line))) is None:
                    session.add(_row(line, actor))
                    added.append(line)
            if added:
                await self._bump(session, [(True, line) for line in added])
        return added

    async def remove(self, lines: Iterable[Rule | Grouping]) -> list[Rule | Grouping]:
        removed: list[Rule | Grouping] = []
        async with self._sessions.begin() as session:
            for line in lines:
                if line == PROTECTED_RULE:
                    raise PolicyError(f"'{line}' makes admins admins and cannot be removed")
                result = cast(
                    CursorResult[Any], await session.execute(delete(PolicyRow).where(_match(line)))
                )
                if result.rowcount:
                    removed.append(line)
            if removed:
                await self._bump(session, [(False, line) for line in removed])
        return removed

    async def replace_object(self, old: str, new: str | None, actor: str | None) -> int:
        """Move every rule on object ``old`` to ``new`` (rename), or drop them (``new`` None)."""
        if "*" in old or (new is not None and "*" in new):
            # A pattern is not one object: moving or dropping it would touch other rules.
            return 0
        async with self._sessions.begin() as session:
            rows = (
                await session.scalars(
                    select(PolicyRow).where((PolicyRow.ptype == "p") & (PolicyRow.v1 == old))
                )
            ).all()
            changes: list[tuple[bool, Rule | Grouping]] = []
            for row in rows:
                await session.delete(row)
                changes.append((False, Rule(row.v0, row.v1, row.v2, row.v3)))
            await session.flush()
            if new is not None:
                for row in rows:
                    moved = Rule(row.v0, new, row.v2, row.v3)
                    if await session.scalar(select(PolicyRow.id).where(_match(moved))) is None:
                        session.add(_row(moved, actor))
                        changes.append((True, moved))
            if rows:
                await self._bump(session, changes)
            return len(rows)
