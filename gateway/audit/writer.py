"""Audit events to a Redis stream: queued, pipelined in batches, spooled to disk when Redis is away.

`emit` never waits: it chains the event (sequence number and hash of the previous event of this
instance), serialises it once and queues it. A background task drains the queue in batches (it
lingers a few milliseconds so a quiet gateway still writes a handful of events per round trip);
each batch is one call of a small Lua script that adds every event to the stream, adds its stream
id to the index sets of its actor, resources and actions (gateway/audit/index.py), trims those
sets as the stream is trimmed, and records, per instance, the last sequence number stored —
atomically, and packed as one command rather than one command per event. When Redis cannot be
reached, batches go to an append-only spool file (fsync'd per batch) and every later event
follows them there, so order is kept; when Redis is back the spool is replayed in order. A
replayed event keeps its id and sequence number, and events whose number Redis already has are
skipped: a replay that crashed half way duplicates nothing when it runs again. Replayed events go
through the same script, so they are indexed like the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.audit import index
from gateway.audit.events import GENESIS, base_event, sealed
from gateway.background import Background

log = logging.getLogger(__name__)

STREAM = "mlgw:audit"
LAST_SEQ = "mlgw:audit:seq:"
BATCH = 500
# How long the writer waits for more events before writing a batch that is not full: a quiet
# gateway then wakes Redis once for several requests, not once per request. Events are in memory
# (not yet in Redis or the spool) this long at most, plus the write.
LINGER_SECONDS = 0.02
REPLAY_INTERVAL = 1.0

# KEYS: the stream, the instance's last-sequence key, the index registry, the index's first id,
# then the index sets of these events. ARGV: maxlen, last sequence, how many stale index sets
# to trim at most, the events' stored forms one per line, and per event (one line each, in the
# same order) the positions in KEYS of its index sets. Two arguments for the whole batch rather
# than several per event: packing a command costs the gateway per argument, and a batch packed
# at once is time the event loop serves no request (the audit trail's p95 tail).
_ADD_BATCH = """
local function member(id)
  local dash = string.find(id, '-', 1, true)
  local ms, seq = string.sub(id, 1, dash - 1), string.sub(id, dash + 1)
  return string.rep('0', 13 - #ms) .. ms .. string.rep('0', 10 - #seq) .. seq, tonumber(ms)
end
local events, positions = ARGV[4], ARGV[5]
local at, pos_at, added, first = 1, 1, 0, nil
local seen = {}
while at <= #events do
  local stop = string.find(events, '\\n', at, true) or (#events + 1)
  local pos_stop = string.find(positions, '\\n', pos_at, true) or (#positions + 1)
  local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e',
    string.sub(events, at, stop - 1))
  first = first or id
  local m, ms = member(id)
  for index in string.gmatch(string.sub(positions, pos_at, pos_stop - 1), '%d+') do
    local key = KEYS[tonumber(index)]
    redis.call('ZADD', key, 0, m)
    if not seen[key] then
      seen[key] = true
      redis.call('ZADD', KEYS[3], 'NX', ms, key)
    end
  end
  at, pos_at = stop + 1, pos_stop + 1
  added = added + 1
end
redis.call('SET', KEYS[2], ARGV[2])
if first then redis.call('SET', KEYS[4], first, 'NX') end
-- Trim the index as MAXLEN trimmed the stream: the sets whose oldest member is not newer than
-- the stream's oldest event (to the millisecond) lose what is older than that event, and an
-- emptied set leaves the registry.
local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
if oldest then
  local m, ms = member(oldest[1])
  local stale = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ms, 'LIMIT', 0, ARGV[3])
  for _, key in ipairs(stale) do
    redis.call('ZREMRANGEBYLEX', key, '-', '(' .. m)
    local head = redis.call('ZRANGE', key, 0, 0)[1]
    if head then
      redis.call('ZADD', KEYS[3], 'XX', tonumber(string.sub(head, 1, 13)), key)
    else
      redis.call('ZREM', KEYS[3], key)
    end
  end
end
return added
"""
# Stale index sets trimmed per batch at most (the rest at the next batches).
TRIM_SETS = 1000
# The script's KEYS before the index sets.
FIXED_KEYS = 4

# The event, its stored form, and the index sets it belongs to (found when it is queued, not
# when its batch is packed: packing a batch holds the event loop, finding an event's sets does
# not, after its request has been answered).
Queued = tuple[dict[str, Any], bytes, list[str]]


def queued(event: dict[str, Any], stored: bytes) -> Queued:
    return event, stored, index.keys(event)


def new_instance_id(kind: str = "gw") -> str:
    """This process's chain: host, pid and start time make it unique across restarts."""
    return f"{kind}-{socket.gethostname()}-{os.getpid()}-{int(time.time())}"


@dataclass
class WriterState:
    spooled_bytes: int = 0
    redis_ok: bool = True
    dropped: int = 0
    written: int = 0


class AuditWriter:
    def __init__(
        self,
        redis: aioredis.Redis,
        spool_dir: Path,
        instance: str,
        *,
        maxlen: int = 10_000_000,
        spool_max_bytes: int = 1024**3,
    ) -> None:
        self._redis = redis
        self.spool_dir = spool_dir
        self.instance = instance
        self._maxlen = maxlen
        self.spool_max_bytes = spool_max_bytes
        self._seq = 0
        self._prev = GENESIS
        self._queue: asyncio.Queue[Queued] = asyncio.Queue()
        self._add_batch = redis.register_script(_ADD_BATCH)
        self._spool_lock = asyncio.Lock()
        self._background = Background()
        self.state = WriterState()
        self._idle = asyncio.Event()
        self._idle.set()

    # -- producing ---------------------------------------------------------------------------

    def new(self, kind: str) -> dict[str, Any]:
        return base_event(kind, self.instance)

    def emit(self, event: dict[str, Any]) -> None:
        """Chain and queue; never blocks, never raises for Redis."""
        self._seq += 1
        event["seq"] = self._seq
        event["prev"] = self._prev
        stored = sealed(self._prev, event)
        self._prev = event["hash"]
        self._idle.clear()
        self._queue.put_nowait(queued(event, stored))

    @property
    def can_store(self) -> bool:
        """False when an event could land neither in Redis nor in the spool."""
        return self.state.redis_ok or self.state.spooled_bytes < self.spool_max_bytes

    @property
    def spool_near_bound(self) -> bool:
        return self.state.spooled_bytes >= 0.8 * self.spool_max_bytes

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.state.spooled_bytes = sum(p.stat().st_size for p in self._spool_files())
        self._background.start(audit_drain=self._drain(), audit_replay=self._replay_loop())

    async def stop(self, within: float = 5.0) -> None:
        """Deliver what is queued (to Redis or the spool), then stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), within)
        await self._background.stop()
        # Anything still queued is written to the spool rather than lost.
        leftovers = self._take(self._queue.qsize())
        if leftovers:
            await self._spool(leftovers)

    async def store(self, batch: list[Queued]) -> None:
        """Write ``batch`` to Redis now, as the background task would (bulk loads such as the
        benchmarks'; raises when Redis cannot be reached)."""
        await self._xadd(batch)

    async def flush(self) -> None:
        """Wait until every queued event is in Redis or in the spool."""
        await self._idle.wait()

    # -- delivering --------------------------------------------------------------------------

    def _take(self, limit: int) -> list[Queued]:
        batch: list[Queued] = []
        while len(batch) < limit:
            try:
                batch.append(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        return batch

    async def _drain(self) -> None:
        while True:
            first = await self._queue.get()
            if self._queue.qsize() < BATCH - 1:
                await asyncio.sleep(LINGER_SECONDS)
            batch = [first, *self._take(BATCH - 1)]
            await self._deliver(batch)
            if self._queue.empty():
                self._idle.set()

    async def _deliver(self, batch: list[Queued]) -> None:
        async with self._spool_lock:
            spooling = self.state.spooled_bytes > 0
        if not spooling:
            try:
                await self._xadd(batch)
                self.state.redis_ok = True
                return
            except (RedisError, OSError) as exc:
                if self.state.redis_ok:
                    log.warning(
                        "audit: Redis unreachable (%s); spooling to %s", exc, self.spool_dir
                    )
                self.state.redis_ok = False
        await self._spool(batch)

    async def _xadd(self, batch: list[Queued]) -> None:
        # One script call per run of events from the same instance (a live batch is one run).
        start = 0
        while start < len(batch):
            instance = batch[start][0]["instance"]
            end = start
            while end < len(batch) and batch[end][0]["instance"] == instance:
                end += 1
            run = batch[start:end]
            last = max(event["seq"] for event, _, _ in run)
            keys, args = index_arguments(run)
            await self._add_batch(
                keys=[STREAM, LAST_SEQ + instance, index.REGISTRY, index.FROM, *keys],
                args=[self._maxlen, last, TRIM_SETS, *args],
            )
            start = end
        self.state.written += len(batch)

    def _spool_path(self) -> Path:
        return self.spool_dir / f"{self.instance}.jsonl"

    def _spool_files(self) -> list[Path]:
        if not self.spool_dir.is_dir():
            return []
        # Oldest first: a previous process's spool is replayed before this one's.
        return sorted(self.spool_dir.glob("*.jsonl"), key=lambda p: (p.stat().st_mtime, p.name))

    async def _spool(self, batch: list[Queued]) -> None:
        data = b"".join(stored + b"\n" for _, stored, _ in batch)
        async with self._spool_lock:
            if self.state.spooled_bytes + len(data) > self.spool_max_bytes:
                self.state.dropped += len(batch)
                log.error(
                    "audit: spool full (%s bytes); %s events lost", self.spool_max_bytes, len(batch)
                )
                return
            await asyncio.to_thread(_append_durably, self._spool_path(), data)
            self.state.spooled_bytes += len(data)

    # -- replaying the spool -----------------------------------------------------------------

    async def _replay_loop(self) -> None:
        while True:
            await asyncio.sleep(REPLAY_INTERVAL)
            if not self._spool_files():
                continue
            try:
                await self.replay()
            except (RedisError, OSError) as exc:
                log.debug("audit: replay postponed: %s", exc)

    async def replay(self) -> int:
        """Move every spooled event to Redis, in order, exactly once. Returns how many were sent."""
        sent = 0
        async with self._spool_lock:
            for path in self._spool_files():
                sent += await self._replay_file(path)
                size = path.stat().st_size
                path.unlink()
                self.state.spooled_bytes = max(0, self.state.spooled_bytes - size)
            self.state.redis_ok = True
        if sent:
            log.info("audit: replayed %s spooled events", sent)
        return sent

    async def _replay_file(self, path: Path) -> int:
        stored: dict[str, int] = {}
        sent = 0
        batch: list[Queued] = []
        for event, line in _read_spool(path):
            instance = event["instance"]
            if instance not in stored:
                raw = await self._redis.get(LAST_SEQ + instance)
                stored[instance] = int(raw) if raw else 0
            if event["seq"] <= stored[instance]:
                continue  # already in Redis: a replay that stopped half way left it there
            batch.append(queued(event, line))
            if len(batch) >= BATCH:
                await self._xadd(batch)
                sent += len(batch)
                batch = []
        if batch:
            await self._xadd(batch)
            sent += len(batch)
        return sent


def index_arguments(run: list[Queued]) -> tuple[list[str], list[bytes]]:
    """The index sets of a run of events (to follow the script's fixed KEYS), and the script's
    two batch arguments: the stored forms one per line (a stored event is JSON on one line) and,
    line by line, each event's index sets as positions in the script's KEYS."""
    keys: dict[str, str] = {}  # index set → its position in KEYS, as the script reads it
    lines: list[str] = []
    for _, _, event_keys in run:
        for key in event_keys:
            if key not in keys:
                keys[key] = str(FIXED_KEYS + 1 + len(keys))
        lines.append(" ".join([keys[key] for key in event_keys]))
    return list(keys), [b"\n".join(stored for _, stored, _ in run), "\n".join(lines).encode()]


def _append_durably(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_spool(path: Path) -> Iterator[tuple[dict[str, Any], bytes]]:
    with path.open("rb") as spool:
        for line in spool:
            if not line.endswith(b"\n"):
                break  # a line cut by a crash mid-write was never acknowledged
            try:
                yield json.loads(line), line[:-1]
            except ValueError:
                log.error("audit: unreadable line in %s skipped", path)
