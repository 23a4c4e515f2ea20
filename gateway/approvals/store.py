"""Approvals in Redis: a hash per approval, an index of ids by time, and one atomic state change.

No SQL: an approval lives for its waiting time plus a retention (its outcome stays readable), and
Redis' key expiry removes it afterwards. Every replica shares the one Redis, so a request held by
one gateway can be approved through another. The only state change is `transition`, a Lua script:
it moves an approval from one status to the next only if it is still in the first one (and, from
`pending`, not expired), so two approvals of one request cannot both proceed.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import redis.asyncio as aioredis

KEY_PREFIX = "mlgw:approval:"
INDEX_KEY = "mlgw:approvals"
# How long an approval's outcome stays readable after it could last have been decided.
RETENTION_SECONDS = 30 * 24 * 3600
# The most approvals a listing reads (newest first).
MAX_LISTED = 1000

PENDING, APPROVING, APPROVED = "pending", "approving", "approved"
REJECTED, EXPIRED, FAILED = "rejected", "expired", "failed"
STATUSES = (PENDING, APPROVING, APPROVED, REJECTED, EXPIRED, FAILED)

TRANSITION_STAGE = "TransitionModelVersionStage"
SET_ALIAS = "SetRegisteredModelAlias"
DELETE_ALIAS = "DeleteRegisteredModelAlias"

# KEYS[1]: the approval. ARGV: from-status, to-status, now, then field/value pairs to set.
# Answers "ok", or the status it is in instead ("missing" when there is no such approval).
_TRANSITION = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if status ~= ARGV[1] then return status end
if status == 'pending' and tonumber(redis.call('HGET', KEYS[1], 'expires_at')) <= tonumber(ARGV[3])
then
  redis.call('HSET', KEYS[1], 'status', 'expired')
  return 'expired'
end
redis.call('HSET', KEYS[1], 'status', ARGV[2], unpack(ARGV, 4))
return 'ok'
"""


def new_id() -> str:
    return secrets.token_hex(8)


@dataclass(frozen=True)
class Approval:
    """One held request, exactly as the gateway judged it, and what became of it."""

    id: str
    operation: str  # TRANSITION_STAGE, SET_ALIAS or DELETE_ALIAS
    model: str  # the registered model's name as MLflow stores it
    version: str  # the version moved or aliased (the alias's version, for a deletion)
    requested_by: str
    requested_at: float
    expires_at: float
    # What an approver must hold on the model: the rights the request needed, undivided.
    rights: tuple[str, ...]
    stage: str = ""  # as sent ("Production")
    archive_existing_versions: bool = False
    alias: str = ""
    # What the request was judged against: the version's stage, where the alias pointed.
    current_stage: str = ""
    alias_version: str = ""
    status: str = PENDING
    decided_by: str = ""
    decided_at: float = 0.0
    comment: str = ""
    error: str = ""

    @property
    def effective_status(self) -> str:
        """The status, with a pending approval past its time shown as expired."""
        if self.status == PENDING and self.expires_at <= time.time():
            return EXPIRED
        return self.status

    def describe(self) -> str:
        """What was asked, in a line: 'move fraud version 3 to Production'."""
        if self.operation == TRANSITION_STAGE:
            archive = " (archiving the others there)" if self.archive_existing_versions else ""
            return f"move {self.model} version {self.version} to {self.stage}{archive}"
        if self.operation == SET_ALIAS:
            return f"set alias {self.alias!r} of {self.model} to version {self.version}"
        return f"delete alias {self.alias!r} of {self.model}"

    def to_hash(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in asdict(self).items():
            if isinstance(value, bool):
                out[name] = "1" if value else "0"
            elif isinstance(value, tuple):
                out[name] = ",".join(value)
            else:
                out[name] = str(value)
        return out

    @classmethod
    def from_hash(cls, raw: Mapping[Any, Any]) -> Approval:
        data = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()
        }
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                continue
            text = data[f.name]
            if f.type == "bool":
                values[f.name] = text == "1"
            elif f.type == "float":
                values[f.name] = float(text or 0)
            elif f.name == "rights":
                values[f.name] = tuple(r for r in text.split(",") if r)
            else:
                values[f.name] = text
        return cls(**values)


class ApprovalStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._transition = redis.register_script(_TRANSITION)

    @staticmethod
    def _key(approval_id: str) -> str:
        return KEY_PREFIX + approval_id

    async def create(self, approval: Approval) -> None:
        key = self._key(approval.id)
        keep = int(approval.expires_at - time.time()) + RETENTION_SECONDS
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=approval.to_hash())  # type: ignore[arg-type]
            pipe.expire(key, keep)
            pipe.zadd(INDEX_KEY, {approval.id: approval.requested_at})
            await pipe.execute()

    async def get(self, approval_id: str) -> Approval | None:
        raw = await self._redis.hgetall(self._key(approval_id))  # type: ignore[misc]
        return Approval.from_hash(raw) if raw else None

    async def newest(self, limit: int = MAX_LISTED) -> list[Approval]:
        """The approvals still kept, newest first; ids whose approval has gone leave the index."""
        ids = [
            i.decode() if isinstance(i, bytes) else str(i)
            for i in await self._redis.zrevrange(INDEX_KEY, 0, limit - 1)
        ]
        if not ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for approval_id in ids:
                pipe.hgetall(self._key(approval_id))
            found = await pipe.execute()
        gone = [i for i, raw in zip(ids, found, strict=True) if not raw]
        if gone:
            await self._redis.zrem(INDEX_KEY, *gone)
        return [Approval.from_hash(raw) for raw in found if raw]

    async def transition(self, approval_id: str, source: str, target: str, **changes: str) -> str:
        """Move the approval from ``source`` to ``target`` (setting ``changes``) if it is still in
        ``source``: "ok", or the status it is in instead ("missing": there is none)."""
        args: list[str] = [source, target, repr(time.time())]
        for name, value in changes.items():
            args += [name, value]
        outcome = await self._transition(keys=[self._key(approval_id)], args=args)
        return outcome.decode() if isinstance(outcome, bytes) else str(outcome)


def decided(approval: Approval, status: str, **changes: Any) -> Approval:
    """The approval as a transition left it (without reading it back)."""
    return replace(approval, status=status, **changes)
