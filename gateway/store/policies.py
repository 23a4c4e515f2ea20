"""Policy rules in the gateway database, with a version number bumped by every change."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.authz.policy import Grouping, PolicyError, Rule
from gateway.store.models import Meta, PolicyRow
from gateway.store.users import now

_VERSION = "policy_version"
_BOOTSTRAPPED = "policy_bootstrapped"
# The rule that makes role:admin an admin; removing it would lock every admin out.
PROTECTED_RULE = Rule("role:admin", "*", "*", "allow")


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


class PolicyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    @staticmethod
    async def _bump(session: AsyncSession) -> None:
        meta = await session.get(Meta, _VERSION)
        if meta is None:
            session.add(Meta(key=_VERSION, value="1"))
        else:
            await session.execute(
                update(Meta).where(Meta.key == _VERSION).values(value=str(int(meta.value) + 1))
            )

    async def version(self) -> int:
        async with self._sessions() as session:
            meta = await session.get(Meta, _VERSION)
            return int(meta.value) if meta else 0

    async def snapshot(self) -> PolicySnapshot:
        # Plain columns, not ORM objects: at 100k rules building objects costs seconds.
        columns = select(PolicyRow.ptype, PolicyRow.v0, PolicyRow.v1, PolicyRow.v2, PolicyRow.v3)
        async with self._sessions() as session:
            meta = await session.get(Meta, _VERSION)
            rows = (await session.execute(columns)).all()
        rules = tuple(Rule(r[1], r[2], r[3], r[4]) for r in rows if r[0] == "p")
        groupings = tuple(Grouping(r[1], r[2]) for r in rows if r[0] == "g")
        return PolicySnapshot(rules, groupings, int(meta.value) if meta else 0)

    async def bootstrap(self, lines: Iterable[Rule | Grouping]) -> bool:
        """Load the shipped bootstrap policy once, into an empty installation."""
        async with self._sessions.begin() as session:
            if await session.get(Meta, _BOOTSTRAPPED) is not None:
                return False
            session.add(Meta(key=_BOOTSTRAPPED, value=now().isoformat()))
            for line in lines:
                if await session.scalar(select(PolicyRow.id).where(_match(line))) is None:
                    session.add(_row(line, "bootstrap"))
            await self._bump(session)
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
                await self._bump(session)
        return added

    async def remove(self, lines: Iterable[Rule | Grouping]) -> list[Rule | Grouping]:
        removed: list[Rule | Grouping] = []
        async with self._sessions.begin() as session:
            for line in lines:
                if line == PROTECTED_RULE:
                    raise PolicyError(f"'{line}' makes admins admins and cannot be removed")
                result = await session.execute(delete(PolicyRow).where(_match(line)))
                if result.rowcount:
                    removed.append(line)
            if removed:
                await self._bump(session)
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
            for row in rows:
                await session.delete(row)
            await session.flush()
            if new is not None:
                for row in rows:
                    moved = Rule(row.v0, new, row.v2, row.v3)
                    if await session.scalar(select(PolicyRow.id).where(_match(moved))) is None:
                        session.add(_row(moved, actor))
            if rows:
                await self._bump(session)
            return len(rows)
