"""Owner rules of new objects: in force at once, persisted in batches, never lost.

The creator of an experiment, registered model or skill becomes its owner. Writing that rule as
its own committed policy change (~12 ms) inside the request made every creation wait for it.
Instead the rule is

1. appended to a write-ahead journal in the data directory and fsync'd (a crash after the answer
   loses nothing),
2. decided on at once: by this replica, and by every other one before the answer goes out (the
   rule is announced on the auth channel, whose subscribers acknowledge it; they keep it until
   the store has it), so the creator's next request is allowed wherever it lands, and
3. persisted by a background flusher that stores whatever accumulated as one change per actor and
   announces it to the other replicas, then drops those lines from the journal.

Every other policy change on this replica waits for the flusher first (``Enforcer.before_change``),
so a rename or deletion right after a creation sees the owner rule it must move or remove. At
start, journals left by a process that died (their lock is free) are stored before the policy
is loaded. Each process holds its own journal under an exclusive lock, so replicas may share a
data directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from gateway.authn.remembered import AuthChanges
from gateway.authz.enforcer import Enforcer
from gateway.background import Background
from gateway.policy_lines import PolicyDelta, Rule

log = logging.getLogger(__name__)

JOURNAL_DIR = "owner-rules"
RETRY_SECONDS = 1.0
# How long a replica decides on another's announced grant without seeing it stored. Stored within
# milliseconds normally; a replica that died first has it in its journal, stored at its restart.
FOREIGN_SECONDS = 60.0
# After a whole-policy reload (which names no removed objects), how long such a grant is kept.
FOREIGN_AFTER_RELOAD_SECONDS = 2.0
FLUSH_WAIT_SECONDS = 10.0


OWNED_KINDS = ("experiment:", "registered_model:", "skill:")


def owner_rule_problem(rule: Rule) -> str | None:
    """Why ``rule`` is not an owner rule (a user's `manage` on one object), or None."""
    rule.validate()
    if not rule.subject.startswith("user:") or rule.action != "manage" or rule.effect != "allow":
        return "not a user's manage right"
    if not rule.object.startswith(OWNED_KINDS) or "*" in rule.object:
        return "not one experiment, registered model or skill"
    return None


@dataclass(frozen=True)
class Grant:
    rule: Rule
    actor: str

    def to_json(self) -> str:
        rule = self.rule
        fields = [rule.subject, rule.object, rule.action, rule.effect]
        return json.dumps({"rule": fields, "actor": self.actor}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Grant:
        data = json.loads(text)
        return cls(Rule(*data["rule"]), data["actor"])


def _write_durably(path: Path, grants: list[Grant]) -> None:
    """``path`` holds exactly ``grants``, or (on a crash meanwhile) what it held before."""
    staging = path.with_suffix(".tmp")
    with staging.open("w") as out:
        out.writelines(g.to_json() + "\n" for g in grants)
        out.flush()
        os.fsync(out.fileno())
    staging.replace(path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _append_durably(journal: IO[str], grant: Grant) -> None:
    journal.write(grant.to_json() + "\n")
    journal.flush()
    os.fsync(journal.fileno())


def _read(path: Path) -> list[Grant]:
    grants = []
    for line in path.read_text().splitlines():
        try:
            grants.append(Grant.from_json(line))
        except (ValueError, KeyError, TypeError):
            # A line cut short by a crash mid-append: its request was never answered.
            log.warning("owner-rule journal %s: skipped an unreadable line", path.name)
    return grants


class OwnerRules:
    def __init__(
        self, enforcer: Enforcer, data_dir: Path, changes: AuthChanges | None = None
    ) -> None:
        self.enforcer = enforcer
        self._changes = changes
        # Other replicas' announced grants -> when they arrived.
        self._foreign: dict[Rule, float] = {}
        self.directory = data_dir / JOURNAL_DIR
        self._name = uuid.uuid4().hex
        self._pending: list[Grant] = []
        self._journal: IO[str] | None = None
        self._lock_file: IO[str] | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._background = Background()
        self._write_lock = asyncio.Lock()
        # Lines decided here but not yet in the store: added back after every reload.
        enforcer.on_change.append(self._reapply)
        enforcer.before_change.append(self.flush)

    @property
    def _journal_path(self) -> Path:
        return self.directory / f"{self._name}.jsonl"

    # -- start and stop ----------------------------------------------------------------------

    async def recover(self) -> int:
        """Store the grants of journals whose process died; the number of grants stored."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob("*.tmp"):
            stale.unlink(missing_ok=True)
        stored = 0
        for journal in sorted(self.directory.glob("*.jsonl")):
            lock_path = journal.with_suffix(".lock")
            with lock_path.open("a") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live replica's journal
                grants = _read(journal)
                stored += await self._store(grants)
                journal.unlink()
                lock_path.unlink(missing_ok=True)
        if stored:
            log.info("owner rules: %s recovered from a journal and stored", stored)
        return stored

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_file = self._journal_path.with_suffix(".lock").open("a")
        fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._journal = self._journal_path.open("a")
        self._background.start(owner_rules=self._flush_forever())

    async def stop(self) -> None:
        """Persist what is pending (if the store answers in time), then let go of the journal;
        what could not be stored stays in it for the next start."""
        await self.flush(within=5.0)
        await self._background.stop()
        if self._journal is not None:
            self._journal.close()
            if not self._pending:
                self._journal_path.unlink(missing_ok=True)
        if self._lock_file is not None:
            if not self._pending:
                self._journal_path.with_suffix(".lock").unlink(missing_ok=True)
            self._lock_file.close()

    # -- granting ----------------------------------------------------------------------------

    async def grant(self, rule: Rule, actor: str) -> None:
        """Make ``rule`` hold from now on, durably; returns before it is in the store."""
        problem = owner_rule_problem(rule)
        if problem:
            raise ValueError(f"'{rule}' is {problem}")
        grant = Grant(rule, actor)
        async with self._write_lock:
            assert self._journal is not None, "OwnerRules.start() was not called"
            await asyncio.to_thread(_append_durably, self._journal, grant)
            self._pending.append(grant)
        self._idle.clear()
        # Decided on at once: answers cached before are forgotten, the grant joins the engine.
        self.enforcer.forget_answers(frozenset())
        self._wake.set()
        if self._changes is not None:
            fields = [rule.subject, rule.object, rule.action, rule.effect]
            await self._changes.announce(grant=fields)

    def foreign_grant(self, fields: list[str]) -> None:
        """Another replica's new owner rule, announced before it is stored: decided on here too."""
        try:
            rule = Rule(*fields)
            problem = owner_rule_problem(rule)
        except (TypeError, ValueError) as exc:
            problem = str(exc)
        if problem:
            # Only owner rules travel this way; anything else on the channel is not ours.
            log.warning("owner rules: ignored an announced grant (%s)", problem)
            return
        if any(g.rule == rule for g in self._pending):
            return  # our own, announced back to us
        self._foreign[rule] = time.monotonic()
        self.enforcer.forget_answers(frozenset())

    async def flush(self, within: float = FLUSH_WAIT_SECONDS) -> None:
        """Wait (up to ``within`` seconds) until every grant made so far is stored; a store that
        does not answer meanwhile fails the change that waits, not this."""
        if not self._pending or not self._background.running:
            return
        self._wake.set()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._idle.wait(), within)

    def _reapply(self, removed: frozenset[str] | None) -> None:
        """After a change reached the engine: the grants not stored yet go back in. Another
        replica's grant is dropped once a rule on its object was removed (a deletion or rename
        there, after it stored the grant) or, on a whole reload, once it had time to be stored."""
        now = time.monotonic()
        for rule, since in list(self._foreign.items()):
            stale = now - since > (
                FOREIGN_SECONDS if removed is not None else FOREIGN_AFTER_RELOAD_SECONDS
            )
            if stale or (removed and rule.object in removed):
                del self._foreign[rule]
        lines = [g.rule for g in self._pending] + list(self._foreign)
        if lines:
            changes = tuple((True, line) for line in lines)
            self.enforcer.engine.apply(PolicyDelta(self.enforcer.version, changes))

    # -- persisting --------------------------------------------------------------------------

    async def _store(self, grants: list[Grant]) -> int:
        by_actor: dict[str, list[Rule]] = {}
        for grant in grants:
            by_actor.setdefault(grant.actor, []).append(grant.rule)
        added = 0
        for actor, rules in by_actor.items():
            added += len(await self.enforcer.store.add(rules, actor))
        return added

    async def _flush_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch = list(self._pending)
            if not batch:
                self._idle.set()
                continue
            try:
                await self._store(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database may be away: the journal keeps them
                log.warning("owner rules: %s not stored yet (%s); retrying", len(batch), exc)
                await asyncio.sleep(RETRY_SECONDS)
                self._wake.set()
                continue
            del self._pending[: len(batch)]
            async with self._write_lock:
                await asyncio.to_thread(_write_durably, self._journal_path, self._pending)
                assert self._journal is not None
                self._journal.close()
                self._journal = self._journal_path.open("a")
            await self.enforcer.announce()
            if not self._pending:
                self._idle.set()
            else:
                self._wake.set()
