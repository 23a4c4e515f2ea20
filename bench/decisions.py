"""Authorization decisions at scale: the policy index against plain pycasbin, and policy reloads.

Part of `bench/run.py` (`--only decisions` runs it alone). Generates realistic random policies
(10,000 rules; 100,000 rules with 10,000 users and 1,000 groups), draws distinct requests for each
(10,000 in a full run) and measures:

- warm decisions: `Enforcer.decide` answering from its decision cache (every request seen before);
- cold decisions: `PolicyIndex.decide` on requests it has never seen, the regex cache of object
  patterns emptied first (what a cache miss costs);
- plain pycasbin (`casbin.Enforcer` on policies/model.conf with `objMatch` and `actMatch`, as in
  tests/unit/test_policy_index.py): on the whole policy for as long as its time budget lasts (its
  own time per decision), and on every request of the sample with the policy cut to the rules of
  the requester and of the roles pycasbin's own role manager finds for it — every answer must be
  the index's;
- reloads: `Enforcer.load()` from a SQLite policy table after one change on another replica (the
  changed line applied from the change log) and of the whole policy (what a replica does when it
  starts or missed too much), each with the longest pause of the event loop meanwhile;
- the casbin path: the same requests decided by pycasbin on a site model (`GATEWAY_CASBIN_MODEL`
  other than the shipped one: `SITE_MODEL` below, the shipped matcher plus one condition that
  never holds here, so every answer must equal the index's), cold (`CasbinEngine.decide`) and warm
  (`Enforcer.decide` from its cache), loading the whole policy into pycasbin, one changed line
  applied to pycasbin, and the same two-replica reloads as above on that path.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import casbin  # type: ignore[import-untyped]
import redis.asyncio as aioredis
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.profile import Profile
from bench.summary import Target, table
from gateway.authn.principal import Principal
from gateway.authz.actions import matches
from gateway.authz.casbin_engine import CasbinEngine, rule_fields
from gateway.authz.casbin_model import CasbinModel, load_model, not_expired
from gateway.authz.enforcer import Enforcer, subjects_of
from gateway.authz.policy import Decider, Decision, PolicyIndex
from gateway.policy_lines import (
    ADMIN_ROLE,
    Grouping,
    PolicyDelta,
    Rule,
    _pattern,
    object_matches,
    parse_lines,
)
from gateway.store.db import create_engine
from gateway.store.migrate import upgrade_database
from gateway.store.models import Meta, PolicyRow
from gateway.store.policies import PolicyStore

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / "policies" / "model.conf"
BOOTSTRAP = REPO / "policies" / "bootstrap.csv"
SEED = 20261126
BUILD_REPEATS = 3
WARM_PASSES = 3
# The request's names travel to pycasbin as one string (see casbin_object_match).
NAME_SEPARATOR = "\x1f"


@dataclass(frozen=True)
class Workload:
    name: str
    rules: int
    users: int
    groups: int
    # Targets from the issue, in microseconds (None: no target at this size).
    warm_p99_target_us: float | None
    cold_p99_target_us: float | None
    reload_target_s: float | None


WORKLOADS = {
    "10k rules": Workload("10k rules", 10_000, 1_000, 100, None, None, None),
    "100k rules": Workload("100k rules", 100_000, 10_000, 1_000, 50.0, 2000.0, 1.0),
    # Smoke runs: the same code paths on a policy that builds in a moment.
    "2k rules": Workload("2k rules", 2_000, 200, 20, None, None, None),
}
# The size: the replica benchmark stores this policy in PostgreSQL.
LARGE = WORKLOADS["100k rules"]


@dataclass(frozen=True)
class Request:
    principal: Principal
    names: tuple[str, ...]
    action: str


@dataclass
class GeneratedPolicy:
    rules: list[Rule]
    groupings: list[Grouping]
    principals: list[Principal]
    requests: list[Request]
    stats: dict[str, int] = field(default_factory=dict)


# -- a realistic random policy --------------------------------------------------------------------


def generate(workload: Workload, seed: int, n_requests: int = 10_000) -> GeneratedPolicy:
    """Teams (groups) own experiments by name prefix and models by prefix; creators own what they
    created (the owner rule the gateway adds); departments read their teams' work; some cross-team
    shares, some per-user grants and patterns, some denies, a release-manager group, a few admins.
    Half of the memberships are `g` lines, half arrive with the principal (IdP groups)."""
    rng = random.Random(seed)
    n_groups, n_users = workload.groups, workload.users
    departments = max(1, n_groups // 10)
    rules: set[Rule] = set(r for r in parse_lines(BOOTSTRAP.read_text()) if isinstance(r, Rule))
    groupings: set[Grouping] = set()

    # People and their teams.
    teams_of: list[list[int]] = []
    idp_groups: list[set[str]] = []
    members: list[list[int]] = [[] for _ in range(n_groups)]
    admins: set[int] = set(rng.sample(range(n_users), max(1, n_users // 1000)))
    for user in range(n_users):
        teams = [user % n_groups, *rng.sample(range(n_groups), rng.choice((0, 0, 1, 2)))]
        teams = list(dict.fromkeys(teams))
        teams_of.append(teams)
        idp: set[str] = set()
        for team in teams:
            members[team].append(user)
            if rng.random() < 0.5:
                groupings.add(Grouping(f"user:u{user}", f"group:g{team}"))
            else:
                idp.add(f"g{team}")
        idp_groups.append(idp)
        if user in admins and rng.random() < 0.5:
            groupings.add(Grouping(f"user:u{user}", ADMIN_ROLE))
            admins.discard(user)  # an admin through a `g` line, not through the principal
    for team in range(n_groups):
        groupings.add(Grouping(f"group:g{team}", f"group:dept{team % departments}"))
    release_managers = rng.sample(range(n_users), max(2, n_users // 200))
    for user in release_managers:
        groupings.add(Grouping(f"user:u{user}", "group:release-managers"))

    # What exists: experiments (id, name, team) and registered models (name, team).
    n_experiments, n_models = workload.rules * 3 // 10, workload.rules // 10
    experiments = [(e, rng.randrange(n_groups)) for e in range(1, n_experiments + 1)]
    models = [
        (f"team-{t}-model-{m}", t)
        for m, t in ((m, rng.randrange(n_groups)) for m in range(n_models))
    ]
    endpoints = [f"ep-{i}" for i in range(max(10, n_groups // 5))]
    experiments_of: list[list[int]] = [[] for _ in range(n_groups)]
    for e, team in experiments:
        experiments_of[team].append(e)
    models_of: list[list[str]] = [[] for _ in range(n_groups)]
    for name, team in models:
        models_of[team].append(name)

    def exp_name(e: int, team: int) -> str:
        return f"/team-{team}/exp-{e}"

    def member(team: int) -> int:
        return rng.choice(members[team]) if members[team] else rng.randrange(n_users)

    # Creators own what they created.
    for e, team in experiments:
        rules.add(Rule(f"user:u{member(team)}", f"experiment:{e}", "manage"))
    for name, team in models:
        rules.add(Rule(f"user:u{member(team)}", f"registered_model:{name}", "manage"))
    # Teams manage their prefixes; departments read them; Staging is the teams', Production the
    # release managers' (and some teams are denied Production even on models they own).
    for team in range(n_groups):
        g = f"group:g{team}"
        rules.add(Rule(g, f"experiment_name:/team-{team}/*", "manage"))
        rules.add(Rule(g, f"registered_model:team-{team}-*", "edit"))
        rules.add(Rule(g, "registered_model:*", "promote:staging"))
        rules.add(
            Rule(f"group:dept{team % departments}", f"experiment_name:/team-{team}/*", "read")
        )
        if rng.random() < 0.2:
            rules.add(Rule(g, "registered_model:*", "promote:production", "deny"))
    rules.add(Rule("group:release-managers", "registered_model:*", "promote:*"))
    rules.add(Rule("group:release-managers", "registered_model:*", "alias:*"))
    for ep in endpoints:
        for team in rng.sample(range(n_groups), min(n_groups, 5)):
            rules.add(Rule(f"group:g{team}", f"ai_gateway_endpoint:{ep}", "use"))

    # Denies: about 3 % of the policy.
    for _ in range(workload.rules * 3 // 100):
        person = f"user:u{rng.randrange(n_users)}"
        kind = rng.random()
        if kind < 0.45:
            e, _team = rng.choice(experiments)
            rules.add(Rule(person, f"experiment:{e}", rng.choice(("read", "edit")), "deny"))
        elif kind < 0.8:
            name, _team = rng.choice(models)
            rules.add(
                Rule(person, f"registered_model:{name}", rng.choice(("edit", "manage")), "deny")
            )
        elif kind < 0.95:
            team = rng.randrange(n_groups)
            rules.add(Rule(person, f"experiment_name:/team-{team}/*", "edit", "deny"))
        else:
            g = f"group:g{rng.randrange(n_groups)}"
            rules.add(Rule(g, f"experiment_name:/team-{rng.randrange(n_groups)}/*", "read", "deny"))

    # Shares up to the size: cross-team grants on experiments and models, per-user grants, and
    # some per-user patterns.
    while len(rules) < workload.rules:
        roll = rng.random()
        if roll < 0.45:
            e, _team = rng.choice(experiments)
            subject = f"group:g{rng.randrange(n_groups)}"
            rules.add(Rule(subject, f"experiment:{e}", rng.choice(("read", "read", "edit"))))
        elif roll < 0.75:
            e, _team = rng.choice(experiments)
            subject = f"user:u{rng.randrange(n_users)}"
            rules.add(Rule(subject, f"experiment:{e}", rng.choice(("read", "edit", "manage"))))
        elif roll < 0.95:
            name, _team = rng.choice(models)
            subject = rng.choice(
                (f"user:u{rng.randrange(n_users)}", f"group:g{rng.randrange(n_groups)}")
            )
            rules.add(Rule(subject, f"registered_model:{name}", rng.choice(("read", "edit"))))
        else:
            subject = f"user:u{rng.randrange(n_users)}"
            team = rng.randrange(n_groups)
            obj = rng.choice((f"registered_model:team-{team}-*", f"experiment_name:/team-{team}/*"))
            rules.add(Rule(subject, obj, "read"))

    principals = [
        Principal(
            subject=f"u{user}",
            method="token",
            groups=frozenset(idp_groups[user]),
            is_admin=user in admins,
        )
        for user in range(n_users)
    ]

    denies = sorted(r for r in rules if r.effect == "deny")
    stronger = {"read": ("read", "edit", "manage"), "edit": ("edit", "manage")}

    def experiment_names(e: int) -> tuple[str, ...]:
        return (f"experiment:{e}", f"experiment_name:{exp_name(e, experiments[e - 1][1])}")

    def toward(deny: Rule) -> tuple[int, tuple[str, ...], str]:
        """Someone running into a deny rule: its subject (or a member), an object it covers, the
        right it names or a stronger one."""
        kind, _, who = deny.subject.partition(":")
        user = int(who[1:]) if kind == "user" else member(int(who[1:]))
        kind, _, what = deny.object.partition(":")
        names: tuple[str, ...]
        if kind == "experiment":
            names = experiment_names(int(what))
        elif kind == "experiment_name":
            team = int(what.split("/")[1].removeprefix("team-"))
            mine = experiments_of[team] or [1]
            names = experiment_names(rng.choice(mine))
        elif what == "*":
            names = (f"registered_model:{rng.choice(models)[0]}",)
        else:
            names = (deny.object,)
        return user, names, rng.choice(stronger.get(deny.action, (deny.action,)))

    # Requests: mostly reads, on the user's own teams' things half of the time; 5 % run into a
    # deny rule.
    requests: dict[tuple[int, tuple[str, ...], str], None] = {}
    while len(requests) < n_requests:
        user = rng.randrange(n_users)
        own = rng.random() < 0.5
        roll = rng.random()
        names: tuple[str, ...]
        if roll < 0.05:
            user, names, action = toward(rng.choice(denies))
        elif roll < 0.5:
            team = rng.choice(teams_of[user])
            mine = experiments_of[team]
            e = rng.choice(mine) if own and mine else rng.randrange(n_experiments) + 1
            names = experiment_names(e)
            action = rng.choices(("read", "edit", "manage"), (70, 25, 5))[0]
        elif roll < 0.85:
            team = rng.choice(teams_of[user])
            theirs = models_of[team]
            name = rng.choice(theirs) if own and theirs else rng.choice(models)[0]
            names = (f"registered_model:{name}",)
            action = rng.choices(
                (
                    "read",
                    "edit",
                    "promote:staging",
                    "promote:production",
                    "alias:champion",
                    "manage",
                ),
                (55, 25, 6, 6, 5, 3),
            )[0]
        elif roll < 0.95:
            team = rng.choice(teams_of[user]) if own else rng.randrange(n_groups)
            names = rng.choice(
                (
                    (f"experiment_name:/team-{team}/new-{rng.randrange(10**6)}",),
                    (f"registered_model:team-{team}-new-{rng.randrange(10**6)}",),
                )
            )
            action = "create"
        else:
            names = (f"ai_gateway_endpoint:{rng.choice(endpoints)}",)
            action = "use"
        requests[(user, names, action)] = None
    request_list = [Request(principals[u], names, action) for u, names, action in requests]
    rng.shuffle(request_list)
    patterns = sum("*" in r.object for r in rules)
    return GeneratedPolicy(
        rules=sorted(rules),
        groupings=sorted(groupings),
        principals=principals,
        requests=request_list,
        stats={
            "rules": len(rules),
            "pattern_rules": patterns,
            "deny_rules": sum(r.effect == "deny" for r in rules),
            "groupings": len(groupings),
            "users": n_users,
            "groups": n_groups + departments + 1,
            "experiments": n_experiments,
            "registered_models": n_models,
        },
    )


# -- measurements ----------------------------------------------------------------------------------


def percentiles(samples_ns: Sequence[int]) -> dict[str, float]:
    """p50 / p99 / max in microseconds."""
    ordered = sorted(samples_ns)
    if len(ordered) < 2:
        ordered = ordered * 2 or [0, 0]
    cut = statistics.quantiles(ordered, n=100, method="inclusive")
    return {
        "p50_us": cut[49] / 1000,
        "p99_us": cut[98] / 1000,
        "max_us": ordered[-1] / 1000,
        "mean_us": statistics.fmean(ordered) / 1000,
        "n": len(ordered),
    }


def time_cold(index: Decider, requests: Sequence[Request]) -> tuple[list[int], list[bool]]:
    """What a cache miss costs: the principal's subjects, then the index's decision."""
    items = [(r.principal, r.names, r.action) for r in requests]
    samples: list[int] = []
    answers: list[bool] = []
    clock = time.perf_counter_ns
    decide = index.decide
    gc.collect()
    for principal, names, action in items:
        start = clock()
        allowed = decide(subjects_of(principal), names, action).allowed
        samples.append(clock() - start)
        answers.append(allowed)
    return samples, answers


def time_warm(enforcer: Enforcer, requests: Sequence[Request]) -> tuple[list[int], list[bool]]:
    """`Enforcer.decide` as the gateway calls it; answered from the decision cache when warm."""
    items = [(r.principal, r.names, r.action) for r in requests]
    samples: list[int] = []
    answers: list[bool] = []
    clock = time.perf_counter_ns
    decide = enforcer.decide
    gc.collect()
    for principal, names, action in items:
        start = clock()
        allowed = decide(principal, names, action).allowed
        samples.append(clock() - start)
        answers.append(allowed)
    return samples, answers


def build_seconds(policy: GeneratedPolicy) -> tuple[float, PolicyIndex]:
    times = []
    index = PolicyIndex((), ())
    for _ in range(BUILD_REPEATS):
        gc.collect()
        start = time.perf_counter()
        index = PolicyIndex(policy.rules, policy.groupings)
        times.append(time.perf_counter() - start)
    return statistics.median(times), index


def policy_rows(rules: Sequence[Rule], groupings: Sequence[Grouping]) -> list[dict[str, Any]]:
    """Rows of the gateway's policy table, for a bulk insert."""
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = [
        {"ptype": "p", "v0": r.subject, "v1": r.object, "v2": r.action, "v3": r.effect}
        for r in rules
    ] + [{"ptype": "g", "v0": g.member, "v1": g.group, "v2": "", "v3": ""} for g in groupings]
    for row in rows:
        row.update(created_at=now, created_by="bench")
    return rows


async def store_policy(engine: AsyncEngine, policy: GeneratedPolicy) -> None:
    """The generated policy as version 1 of a fresh gateway database."""
    await upgrade_database(engine)
    async with engine.begin() as connection:
        await connection.execute(insert(PolicyRow), policy_rows(policy.rules, policy.groupings))
        await connection.execute(insert(Meta), [{"key": "policy_version", "value": "1"}])


class LoopWatch:
    """The longest pause of the event loop while it runs: what a request waiting to be served
    would have waited at most."""

    def __init__(self, tick: float = 0.001) -> None:
        self.tick = tick
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(self.tick)
            now = time.perf_counter()
            self.longest = max(self.longest, now - last - self.tick)
            last = now

    async def __aenter__(self) -> LoopWatch:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.sleep(self.tick * 2)
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def reloads(
    policy: GeneratedPolicy, folder: Path, repeats: int, model: CasbinModel | None = None
) -> dict[str, Any]:
    """Two replicas on one SQLite database: B loads everything, A changes one line, B catches up
    from the change log; then B reloads everything. Times and event-loop pauses of both."""
    url = f"sqlite:///{folder / 'gateway.db'}"
    engine_a, engine_b = create_engine(url), create_engine(url)
    await store_policy(engine_a, policy)
    # The Redis clients only announce changes, which is not what is timed here.
    unused = aioredis.Redis.from_url("redis://127.0.0.1:1/0")
    replica_a = Enforcer(PolicyStore(engine_a), unused, model=model)
    replica_b = Enforcer(PolicyStore(engine_b), unused, model=model)
    full, full_pause, delta, delta_pause, snapshot = [], [], [], [], []

    async def timed_load(seconds: list[float], pauses: list[float]) -> None:
        async with LoopWatch() as watch:
            start = time.perf_counter()
            await replica_b.load()
            seconds.append(time.perf_counter() - start)
        pauses.append(watch.longest)

    for attempt in range(repeats):
        replica_b.version = -1
        gc.collect()
        await timed_load(full, full_pause)
        assert replica_b.last_load == "full"
        start = time.perf_counter()
        await replica_b.store.snapshot()
        snapshot.append(time.perf_counter() - start)
        for change in range(5):
            line = Rule(f"user:bench-{attempt}-{change}", f"experiment:{attempt}{change}", "read")
            await replica_a.store.add([line], actor="bench")
            await timed_load(delta, delta_pause)
            assert replica_b.last_load == "delta"
            assert replica_b.decide(
                Principal(subject=f"bench-{attempt}-{change}", method="token"),
                (line.object,),
                "read",
            ).allowed
    await engine_a.dispose()
    await engine_b.dispose()
    await unused.aclose()
    return {
        "full_reload_s": statistics.median(full),
        "full_reload_pause_s": max(full_pause),
        "snapshot_s": statistics.median(snapshot),
        "delta_reload_s": statistics.median(delta),
        "delta_reload_max_s": max(delta),
        "delta_reload_pause_s": max(delta_pause),
        "delta_reloads": len(delta),
    }


def casbin_object_match(requested: str, pattern: str) -> bool:
    """`object_matches` on each of the request's names: the gateway judges one resource by all its
    names at once (an experiment by `experiment:<id>` and `experiment_name:<name>`)."""
    return any(object_matches(name, pattern) for name in requested.split(NAME_SEPARATOR))


def principal_groupings(policy: GeneratedPolicy) -> list[Grouping]:
    """What a principal brings with it (its IdP groups, group:authenticated, the admin flag) as
    `g` lines of its user: casbin's way to say it."""
    return [
        Grouping(f"user:{p.subject}", subject)
        for p in policy.principals
        for subject in sorted(subjects_of(p) - {f"user:{p.subject}"})
    ]


def new_casbin(path: Path | None = None) -> casbin.Enforcer:
    logging.getLogger("casbin").setLevel(logging.ERROR)
    enforcer = casbin.Enforcer(str(MODEL), str(path)) if path else casbin.Enforcer(str(MODEL))
    enforcer.add_function("objMatch", casbin_object_match)
    enforcer.add_function("actMatch", matches)
    enforcer.add_function("notExpired", not_expired)
    return enforcer


def casbin_line(line: Rule | Grouping) -> str:
    """A policy line as pycasbin reads it with the shipped model: a rule has its fifth field,
    the expiry, even when empty (never)."""
    return f"{line}, " if isinstance(line, Rule) and not line.expires_at else str(line)


def casbin_enforcer(policy: GeneratedPolicy, folder: Path) -> tuple[casbin.Enforcer, float]:
    """Plain pycasbin on the shipped model with the whole policy. Loaded from a CSV file:
    `add_policy` checks for duplicates by a list scan, O(n²) at 100k."""
    path = folder / "policy.csv"
    with path.open("w") as out:
        for line in (*policy.rules, *policy.groupings, *principal_groupings(policy)):
            out.write(casbin_line(line) + "\n")
    gc.collect()
    start = time.perf_counter()
    enforcer = new_casbin(path)
    return enforcer, time.perf_counter() - start


class SlicedCasbin:
    """pycasbin answering each request on the slice of the policy that can decide it.

    The matcher starts with `g(r.sub, p.sub)`: a rule whose subject is neither the requester nor
    one of the roles pycasbin's role manager finds for it never matches. So for each requester,
    pycasbin itself names those roles (`get_implicit_roles_for_user` over every `g` line); an
    enforcer is then given their rules and `g` lines only, and asked. Same model, same functions,
    same answers as on the whole policy, at a cost that allows every request of the sample."""

    def __init__(self, policy: GeneratedPolicy, folder: Path) -> None:
        path = folder / "groupings.csv"
        groupings = [*policy.groupings, *principal_groupings(policy)]
        path.write_text("".join(f"{g}\n" for g in groupings))
        self._roles = new_casbin(path)
        self._rules: dict[str, list[list[str]]] = {}
        for rule in policy.rules:
            self._rules.setdefault(rule.subject, []).append(
                [rule.subject, rule.object, rule.action, rule.effect, rule.expires_at]
            )
        self._edges: dict[str, list[list[str]]] = {}
        for grouping in groupings:
            self._edges.setdefault(grouping.member, []).append([grouping.member, grouping.group])
        self._slice = new_casbin()
        self._user = ""

    def enforce(self, user: str, obj: str, action: str) -> bool:
        if user != self._user:
            subjects = [user, *self._roles.get_implicit_roles_for_user(user)]
            self._slice.clear_policy()
            rules = [r for s in subjects for r in self._rules.get(s, ())]
            if rules:
                self._slice.add_policies(rules)
            edges = [e for s in subjects for e in self._edges.get(s, ())]
            if edges:
                self._slice.add_grouping_policies(edges)
            self._user = user
        return bool(self._slice.enforce(user, obj, action))


def measure(workload: Workload, profile: Profile) -> dict[str, Any]:
    n = profile.decision_requests
    print(f"[{workload.name}] generating the policy and {n:,} requests", flush=True)
    policy = generate(workload, SEED + workload.rules, n)
    result: dict[str, Any] = {"workload": asdict(workload), "policy": policy.stats, "requests": n}

    print(f"[{workload.name}] building the index ({BUILD_REPEATS} times)", flush=True)
    result["index_build_s"], index = build_seconds(policy)

    with tempfile.TemporaryDirectory(prefix="mlgw-decisions-") as tmp:
        folder = Path(tmp)
        print(f"[{workload.name}] reloads: one change, everything", flush=True)
        result["reload"] = asyncio.run(reloads(policy, folder, profile.reload_repeats))

        requests = policy.requests
        print(f"[{workload.name}] cold decisions: PolicyIndex.decide, no cache", flush=True)
        _pattern.cache_clear()
        cold_ns, cold = time_cold(index, requests)
        result["cold"] = percentiles(cold_ns)
        # Once more: the patterns are compiled now (the regex cache outlives policy reloads, so
        # this is the usual cache miss of a running gateway).
        compiled_ns, compiled = time_cold(index, requests)
        result["cold_compiled"] = percentiles(compiled_ns)
        result["cold_answers_stable"] = compiled == cold
        decisions = [index.decide(subjects_of(r.principal), r.names, r.action) for r in requests]
        for outcome in OUTCOMES:
            result[outcome] = sum(outcome_of(d) == outcome for d in decisions)

        print(f"[{workload.name}] warm decisions: Enforcer.decide from its cache", flush=True)
        enforcer = Enforcer(None, None)  # type: ignore[arg-type]  # in memory only: no store
        enforcer.index = index
        for r in requests:  # fill the decision cache
            enforcer.decide(r.principal, r.names, r.action)
        warm_ns: list[int] = []
        warm_same = True
        order = list(requests)
        expected = {id(r): a for r, a in zip(requests, cold, strict=True)}
        for _ in range(WARM_PASSES):
            random.Random(len(warm_ns)).shuffle(order)
            samples, answers = time_warm(enforcer, order)
            warm_ns += samples
            warm_same &= all(expected[id(r)] == a for r, a in zip(order, answers, strict=True))
        result["warm"] = percentiles(warm_ns)
        result["warm_equals_cold"] = warm_same

        budget = profile.casbin_full_seconds
        print(f"[{workload.name}] plain pycasbin, whole policy, {budget:.0f} s budget", flush=True)
        reference, result["casbin_load_s"] = casbin_enforcer(policy, folder)
        result["casbin"], result["casbin_checked"] = check_casbin(
            reference.enforce, requests, decisions, cold, deadline=time.perf_counter() + budget
        )
        del reference
        print(f"[{workload.name}] plain pycasbin, each request on its slice", flush=True)
        sliced = SlicedCasbin(policy, folder)
        by_user = sorted(range(len(requests)), key=lambda i: requests[i].principal.subject)
        _, result["casbin_sliced_checked"] = check_casbin(
            sliced.enforce, requests, decisions, cold, order=by_user
        )
        del sliced
        print(f"[{workload.name}] the casbin path: a site model decided by pycasbin", flush=True)
        result["casbin_path"] = casbin_path(policy, index, requests, cold, folder, profile)
    return result


# A site model: the shipped one with one more condition in the matcher (nothing in quarantine,
# whatever the rules say). No object of the benchmark is in quarantine, so every answer must be the
# index's — but the model is not the shipped one, so pycasbin decides.
SITE_MODEL = """[request_definition]
r = sub, obj, act

[policy_definition]
p = sub, obj, act, eft

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = g(r.sub, p.sub) && objMatch(r.obj, p.obj) && actMatch(p.act, r.act, p.eft) \\
    && (p.eft == "allow" || !g(r.sub, "role:admin")) && !regexMatch(r.obj, "^quarantine:")
"""
DELTA_LINES = 20


def casbin_path(
    policy: GeneratedPolicy,
    index: PolicyIndex,
    requests: Sequence[Request],
    answers: Sequence[bool],
    folder: Path,
    profile: Profile,
) -> dict[str, Any]:
    """The requests on the casbin path: cold, warm, loading, one change, replicas' reloads."""
    path = folder / "site-model.conf"
    path.write_text(SITE_MODEL)
    model = load_model(path)
    assert not model.shipped
    out: dict[str, Any] = {"model": model.describe(), "filtering": model.filtering}
    loads = []
    engine = CasbinEngine(model, index)
    for _ in range(BUILD_REPEATS):
        gc.collect()
        start = time.perf_counter()
        engine = CasbinEngine(model, index)
        loads.append(time.perf_counter() - start)
    out["load_s"] = statistics.median(loads)

    _pattern.cache_clear()
    cold_ns, cold = time_cold(engine, requests)
    out["cold"] = percentiles(cold_ns)
    mismatches = [
        f"{requests[i]} casbin path={c} index={a}"
        for i, (c, a) in enumerate(zip(cold, answers, strict=True))
        if c != a
    ]
    out["answers"] = {
        "requests": len(requests),
        "mismatch_count": len(mismatches),
        "mismatches": mismatches[:20],
    }

    enforcer = Enforcer(None, None, model=model)  # type: ignore[arg-type]  # in memory only
    enforcer.engine = engine
    for r in requests:
        enforcer.decide(r.principal, r.names, r.action)
    warm_ns: list[int] = []
    warm_same = True
    order = list(requests)
    expected = {id(r): a for r, a in zip(requests, cold, strict=True)}
    for _ in range(WARM_PASSES):
        random.Random(len(warm_ns)).shuffle(order)
        samples, got = time_warm(enforcer, order)
        warm_ns += samples
        warm_same &= all(expected[id(r)] == a for r, a in zip(order, got, strict=True))
    out["warm"] = percentiles(warm_ns)
    out["warm_equals_cold"] = warm_same

    # One changed line, straight into pycasbin (and the index beside it): what a replica does
    # with each line of a delta. Added, then removed again, so the policy is left as it was.
    added: list[int] = []
    removed: list[int] = []
    lines = [
        Rule(f"user:bench-delta-{k}", f"experiment:{k + 1}", "read") for k in range(DELTA_LINES)
    ]
    for k, line in enumerate(lines):
        start = time.perf_counter_ns()
        engine.apply(PolicyDelta(k, ((True, line),)))
        added.append(time.perf_counter_ns() - start)
    for k, line in enumerate(lines):
        start = time.perf_counter_ns()
        engine.apply(PolicyDelta(k, ((False, line),)))
        removed.append(time.perf_counter_ns() - start)
    out["delta_add"] = percentiles(added)
    out["delta_remove"] = percentiles(removed)
    assert engine.enforcer.get_policy() == [rule_fields(model, r) for r in index.rules]
    del enforcer, engine
    replicas = folder / "casbin-replicas"
    replicas.mkdir()
    out["reload"] = asyncio.run(reloads(policy, replicas, profile.reload_repeats, model=model))
    return out


def check_casbin(
    enforce: Callable[[str, str, str], bool],
    requests: Sequence[Request],
    decisions: Sequence[Decision],
    answers: Sequence[bool],
    *,
    deadline: float | None = None,
    order: Sequence[int] | None = None,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Ask pycasbin (until ``deadline``, if any): its time per decision, and its answers compared
    with the index's."""
    samples: list[int] = []
    mismatches: list[str] = []
    checked: list[int] = []
    gc.collect()
    for i in order if order is not None else balanced_order(decisions):
        if deadline is not None and time.perf_counter() > deadline:
            break
        request = requests[i]
        obj = NAME_SEPARATOR.join(request.names)
        start = time.perf_counter_ns()
        theirs = enforce(f"user:{request.principal.subject}", obj, request.action)
        samples.append(time.perf_counter_ns() - start)
        checked.append(i)
        if theirs != answers[i]:
            mismatches.append(f"{request} casbin={theirs} index={answers[i]}")
    counts = {outcome: 0 for outcome in OUTCOMES}
    for i in checked:
        counts[outcome_of(decisions[i])] += 1
    return percentiles(samples), {
        "requests": len(checked),
        **counts,
        "mismatches": mismatches[:20],
        "mismatch_count": len(mismatches),
        "distinct_users": len({requests[i].principal.subject for i in checked}),
    }


OUTCOMES = ("allowed", "denied_by_rule", "denied_by_default")


def outcome_of(decision: Decision) -> str:
    if decision.allowed:
        return "allowed"
    return "denied_by_rule" if decision.rule is not None else "denied_by_default"


def balanced_order(decisions: Sequence[Decision]) -> list[int]:
    """Request positions taking turns between the outcomes (allowed, denied by a rule, denied by
    default), so that a short pycasbin run still checks deny rules, not only the common cases."""
    by_outcome: dict[str, list[int]] = {outcome: [] for outcome in OUTCOMES}
    for i, decision in enumerate(decisions):
        by_outcome[outcome_of(decision)].append(i)
    order: list[int] = []
    for turn in range(max(len(v) for v in by_outcome.values())):
        order += [v[turn] for v in by_outcome.values() if turn < len(v)]
    return order


# -- the section -------------------------------------------------------------------------------


def run(profile: Profile) -> dict[str, Any]:
    return {
        "pycasbin": version("pycasbin"),
        "casbin_full_seconds": profile.casbin_full_seconds,
        "workloads": [measure(WORKLOADS[name], profile) for name in profile.decision_workloads],
    }


def failures(results: dict[str, Any]) -> list[str]:
    found = []
    for r in results["workloads"]:
        name = r["workload"]["name"]
        if not (r["cold_answers_stable"] and r["warm_equals_cold"]):
            found.append(f"decisions at {name}: warm and cold answers differ")
        for key in ("casbin_checked", "casbin_sliced_checked"):
            if r[key]["mismatch_count"]:
                found.append(
                    f"decisions at {name}: {r[key]['mismatch_count']} differ from pycasbin"
                )
        path = r.get("casbin_path")
        if path and (path["answers"]["mismatch_count"] or not path["warm_equals_cold"]):
            found.append(
                f"decisions at {name}: the casbin path differs from the index on "
                f"{path['answers']['mismatch_count']} requests"
            )
    return found


def targets(results: dict[str, Any], profile: Profile) -> list[Target]:
    found = _rows(results)
    return found if profile.judged else [replace(t, met=None) for t in found]


def _rows(results: dict[str, Any]) -> list[Target]:
    found = []
    for r in results["workloads"]:
        w = r["workload"]
        name = w["name"]
        casbin_ref = (
            f"pycasbin p99 {fmt_us(r['casbin']['p99_us'])} "
            f"({r['casbin_checked']['requests']:,} requests in its budget)"
        )
        found.append(
            Target(
                "Decisions",
                f"warm p99, {name}",
                f"{fmt_us(r['warm']['p99_us'])}",
                f"≤ {w['warm_p99_target_us']:g} µs" if w["warm_p99_target_us"] else "—",
                casbin_ref,
                None
                if w["warm_p99_target_us"] is None
                else r["warm"]["p99_us"] <= w["warm_p99_target_us"],
            )
        )
        found.append(
            Target(
                "Decisions",
                f"cold p99, {name}",
                fmt_us(r["cold"]["p99_us"]),
                f"≤ {w['cold_p99_target_us'] / 1000:g} ms" if w["cold_p99_target_us"] else "—",
                f"pycasbin p50 {fmt_us(r['casbin']['p50_us'])}",
                None
                if w["cold_p99_target_us"] is None
                else r["cold"]["p99_us"] <= w["cold_p99_target_us"],
            )
        )
        sliced = r["casbin_sliced_checked"]
        whole = r["casbin_checked"]
        found.append(
            Target(
                "Decisions",
                f"same answers as pycasbin, {name}",
                f"{sliced['requests'] - sliced['mismatch_count']:,} of {sliced['requests']:,} "
                f"(+ {whole['requests'] - whole['mismatch_count']:,} of {whole['requests']:,} "
                "on the whole policy)",
                f"all of {r['requests']:,}",
                f"{sliced['denied_by_rule']:,} denied by a rule, "
                f"{sliced['denied_by_default']:,} by default",
                sliced["mismatch_count"] == 0
                and whole["mismatch_count"] == 0
                and sliced["requests"] == r["requests"],
            )
        )
        reload = r["reload"]
        limit = w["reload_target_s"]
        found.append(
            Target(
                "Decisions",
                f"reload after one change, {name}",
                f"{fmt_s(reload['delta_reload_s'])} (event loop paused ≤ "
                f"{fmt_s(reload['delta_reload_pause_s'])})",
                f"≤ {limit:g} s, requests not blocked" if limit else "—",
                f"whole policy: {fmt_s(reload['full_reload_s'])}, loop paused ≤ "
                f"{fmt_s(reload['full_reload_pause_s'])}",
                None
                if limit is None
                else reload["delta_reload_max_s"] <= limit
                and reload["delta_reload_pause_s"] < 0.05,
            )
        )
        path = r.get("casbin_path")
        if path:
            found += _casbin_path_rows(name, r, path, limit)
    return found


def _casbin_path_rows(
    name: str, r: dict[str, Any], path: dict[str, Any], limit: float | None
) -> list[Target]:
    """The casbin path's rows, beside the shipped model's: no targets of their own but the
    answers (the site model of the benchmark must answer as the index does)."""
    answers = path["answers"]
    reload = path["reload"]
    return [
        Target(
            "Decisions",
            f"casbin path warm p99, {name}",
            fmt_us(path["warm"]["p99_us"]),
            "—",
            f"index path {fmt_us(r['warm']['p99_us'])}",
            None,
        ),
        Target(
            "Decisions",
            f"casbin path cold p99, {name}",
            fmt_us(path["cold"]["p99_us"]),
            "—",
            f"index path {fmt_us(r['cold']['p99_us'])}; p50 {fmt_us(path['cold']['p50_us'])}",
            None,
        ),
        Target(
            "Decisions",
            f"casbin path answers = index's, {name}",
            f"{answers['requests'] - answers['mismatch_count']:,} of {answers['requests']:,}",
            f"all of {answers['requests']:,}",
            "site model: the shipped matcher and one more condition",
            answers["mismatch_count"] == 0 and path["warm_equals_cold"],
        ),
        Target(
            "Decisions",
            f"casbin path reload after one change, {name}",
            f"{fmt_s(reload['delta_reload_s'])} (event loop paused ≤ "
            f"{fmt_s(reload['delta_reload_pause_s'])})",
            f"≤ {limit:g} s, requests not blocked" if limit else "—",
            f"whole policy: {fmt_s(reload['full_reload_s'])}; into pycasbin alone "
            f"{fmt_s(path['load_s'])}",
            None
            if limit is None
            else reload["delta_reload_max_s"] <= limit and reload["delta_reload_pause_s"] < 0.05,
        ),
    ]


def fmt_us(value: float) -> str:
    return f"{value:,.1f} µs" if value < 1000 else f"{value / 1000:,.2f} ms"


def fmt_s(value: float) -> str:
    if value < 0.001:
        return f"{value * 1e6:,.0f} µs"
    return f"{value * 1000:,.1f} ms" if value < 10 else f"{value:,.1f} s"


def render(results: dict[str, Any]) -> str:
    runs = results["workloads"]
    policy_rows = [
        [
            r["workload"]["name"],
            f"{p['rules']:,}",
            f"{p['pattern_rules']:,}",
            f"{p['deny_rules']:,}",
            f"{p['groupings']:,}",
            f"{p['users']:,}",
            f"{p['groups']:,}",
            f"{p['experiments']:,} / {p['registered_models']:,}",
            f"{r['allowed'] / r['requests']:.1%} / {r['denied_by_rule'] / r['requests']:.1%} / "
            f"{r['denied_by_default'] / r['requests']:.1%}",
        ]
        for r in runs
        for p in [r["policy"]]
    ]
    latency_rows = [
        [
            r["workload"]["name"],
            f"{fmt_us(r['warm']['p50_us'])} / {fmt_us(r['warm']['p99_us'])}",
            f"{fmt_us(r['cold']['p50_us'])} / {fmt_us(r['cold']['p99_us'])}",
            f"{fmt_us(r['cold_compiled']['p50_us'])} / {fmt_us(r['cold_compiled']['p99_us'])}",
            f"{fmt_us(r['casbin']['p50_us'])} / {fmt_us(r['casbin']['p99_us'])} "
            f"({r['casbin_checked']['requests']:,} requests)",
            f"{r['casbin']['p50_us'] / max(r['cold']['p50_us'], 1e-9):,.0f}",
            fmt_s(r["casbin_load_s"]),
        ]
        for r in runs
    ]
    reload_rows = [
        [
            r["workload"]["name"],
            f"{fmt_s(x['delta_reload_s'])} (max {fmt_s(x['delta_reload_max_s'])} of "
            f"{x['delta_reloads']})",
            fmt_s(x["delta_reload_pause_s"]),
            f"{fmt_s(x['full_reload_s'])} ({fmt_s(x['snapshot_s'])} of it reading)",
            fmt_s(x["full_reload_pause_s"]),
            fmt_s(r["index_build_s"]),
        ]
        for r in runs
        for x in [r["reload"]]
    ]
    check_rows = [
        [
            r["workload"]["name"],
            f"{r['requests']:,}",
            "identical" if r["warm_equals_cold"] and r["cold_answers_stable"] else "**differ**",
            f"{c['requests']:,} ({c['distinct_users']:,} users): "
            + ("identical" if not c["mismatch_count"] else f"**{c['mismatch_count']} differ**"),
            f"{w['requests']:,}: "
            + ("identical" if not w["mismatch_count"] else f"**{w['mismatch_count']} differ**"),
        ]
        for r in runs
        for c, w in [(r["casbin_sliced_checked"], r["casbin_checked"])]
    ]
    return "\n".join(
        [
            "### Authorization decisions",
            "",
            "Random policies, seeded (same policy every run): teams own experiments by name prefix "
            "and models by prefix, creators own what they created, departments read their teams' "
            "work, cross-team and per-user shares, per-user patterns, about 3 % denies, a "
            "release-manager group, a few admins; half of the memberships are `g` lines, half "
            "arrive with the principal as IdP groups. Distinct requests, half of them on the "
            "requester's own teams' things: about half on experiments (judged by id and name at "
            "once), a third on registered models (read, edit, promotion, aliases), the rest "
            "creations and AI gateway endpoint use; 5 % run into a deny rule.",
            "",
            table(
                [
                    "Policy",
                    "rules",
                    "patterns",
                    "denies",
                    "`g` lines",
                    "users",
                    "groups",
                    "experiments / models",
                    "requests: allowed / denied by a rule / by default",
                ],
                policy_rows,
            ),
            "",
            "Latency per decision, p50 / p99. *Warm*: `Enforcer.decide` answered from its decision "
            f"cache ({WARM_PASSES} passes in shuffled order). *Cold*: `PolicyIndex.decide` on "
            "requests it has never seen, the regex cache of object patterns emptied first; "
            "*patterns compiled*: the same again, the usual cache miss of a running gateway. "
            "*pycasbin*: `casbin.Enforcer` on policies/model.conf with the whole policy, one "
            f"request after the other for {results['casbin_full_seconds']:.0f} s per policy (it "
            "scans every rule for every request), taking allowed, denied-by-a-rule and "
            "denied-by-default requests in turn.",
            "",
            table(
                [
                    "Policy",
                    "warm",
                    "cold",
                    "cold, patterns compiled",
                    "pycasbin, whole policy",
                    "pycasbin p50 / cold p50",
                    "pycasbin load",
                ],
                latency_rows,
            ),
            "",
            "Same answers. Every request of the sample also goes to pycasbin with the policy cut "
            "to the rules of the requester and of every role pycasbin's own role manager finds "
            "for it "
            "(`get_implicit_roles_for_user`): the matcher starts with `g(r.sub, p.sub)`, so no "
            "other rule can match, and the whole sample gets checked.",
            "",
            table(
                [
                    "Policy",
                    "requests",
                    "warm, cold and again agree",
                    "pycasbin, each request on its slice",
                    "pycasbin, whole policy",
                ],
                check_rows,
            ),
            "",
            "Reloads, on two `Enforcer`s sharing a SQLite gateway database (two replicas): replica "
            "A adds one line, replica B's `load()` reads the lines changed since its version from "
            "the change log and applies them (*one change*); *whole policy* is B's `load()` from "
            "scratch (start, or too far behind), reading the policy and building the index off "
            "the event loop. *Loop paused*: the longest the event loop went without running, "
            "measured by a 1 ms ticker — what a request arriving then would have waited.",
            "",
            table(
                [
                    "Policy",
                    "one change",
                    "loop paused",
                    "whole policy",
                    "loop paused",
                    "index build alone",
                ],
                reload_rows,
            ),
            *_render_casbin_path(runs),
        ]
    )


def _render_casbin_path(runs: list[dict[str, Any]]) -> list[str]:
    rows = [
        [
            r["workload"]["name"],
            f"{fmt_us(c['warm']['p50_us'])} / {fmt_us(c['warm']['p99_us'])}",
            f"{fmt_us(c['cold']['p50_us'])} / {fmt_us(c['cold']['p99_us'])}",
            f"{fmt_us(r['cold']['p50_us'])} / {fmt_us(r['cold']['p99_us'])}",
            f"{c['answers']['requests'] - c['answers']['mismatch_count']:,} of "
            f"{c['answers']['requests']:,}",
            f"{fmt_us(c['delta_add']['p50_us'])} / {fmt_us(c['delta_remove']['p50_us'])}",
            f"{fmt_s(c['reload']['delta_reload_s'])} (loop ≤ "
            f"{fmt_s(c['reload']['delta_reload_pause_s'])})",
            f"{fmt_s(c['reload']['full_reload_s'])} (loop ≤ "
            f"{fmt_s(c['reload']['full_reload_pause_s'])}); pycasbin alone {fmt_s(c['load_s'])}",
        ]
        for r in runs
        for c in [r.get("casbin_path")]
        if c
    ]
    if not rows:
        return []
    return [
        "",
        "The casbin path: the same requests on a site model (`GATEWAY_CASBIN_MODEL` set to the "
        "shipped model with one more matcher condition, `SITE_MODEL` in bench/decisions.py), "
        "so pycasbin decides: `CasbinEngine.decide` (*cold*: the model's matcher and effect "
        "evaluated by pycasbin on the caller's subjects' rules on the resource's names, "
        "filtered through the index) and `Enforcer.decide` from its decision cache (*warm*). "
        "*One line into pycasbin*: a changed line applied with `add_policy` / `remove_policy` "
        "(p50 added / removed); *one change* and *whole policy*: two `Enforcer`s on one SQLite "
        "database, as above, on that path; *pycasbin alone*: the whole policy loaded into a new "
        "pycasbin enforcer — what a reload per change would cost. Reproduce: "
        "`.venv/bin/python bench/run.py --only decisions --no-docs`.",
        "",
        table(
            [
                "Policy",
                "warm",
                "cold",
                "index path cold",
                "answers = index's",
                "one line into pycasbin",
                "one change",
                "whole policy",
            ],
            rows,
        ),
    ]
