"""Authorization decisions at scale: the policy index against plain pycasbin.

`.venv/bin/python bench/decisions.py [--no-docs] [--casbin-seconds S]` generates two realistic
random policies (10,000 rules; 100,000 rules with 10,000 users and 1,000 groups), draws 10,000
distinct requests for each and measures:

- reload: building the `PolicyIndex` from the rules, and `Enforcer.load()` from a SQLite policy
  table (the database read plus the index build, what a replica does when the policy changes);
- warm decisions: `Enforcer.decide` answering from its decision cache (every request seen before);
- cold decisions: `PolicyIndex.decide` on requests it has never seen, the regex cache of object
  patterns emptied first (what a cache miss costs);
- plain pycasbin (`casbin.Enforcer` on policies/model.conf with `objMatch` and `actMatch`, as in
  tests/unit/test_policy_index.py) on the same requests for as long as its time budget lasts,
  checking that every answer is the index's.

Results go to bench/results/<time>-decisions.json and, unless --no-docs, to the section of
docs/benchmarks.md between `<!-- decisions:begin -->` and `<!-- decisions:end -->`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import casbin  # type: ignore[import-untyped]
import redis.asyncio as aioredis
from sqlalchemy import insert

from gateway.authn.principal import Principal
from gateway.authz.actions import matches
from gateway.authz.enforcer import Enforcer, subjects_of
from gateway.authz.policy import (
    ADMIN_ROLE,
    Decision,
    Grouping,
    PolicyIndex,
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
DOCS = REPO / "docs" / "benchmarks.md"
RESULTS_DIR = REPO / "bench" / "results"
BEGIN = "<!-- decisions:begin -->"
END = "<!-- decisions:end -->"
COMMAND = ".venv/bin/python bench/decisions.py"
SEED = 20261126
REQUESTS = 10_000
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


WORKLOADS = (
    Workload("10k rules", 10_000, 1_000, 100, 1000.0, None, None),
    Workload("100k rules", 100_000, 10_000, 1_000, 50.0, 2000.0, 1.0),
)


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


def generate(workload: Workload, seed: int) -> GeneratedPolicy:
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
    while len(requests) < REQUESTS:
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
    cut = statistics.quantiles(ordered, n=100, method="inclusive")
    return {
        "p50_us": cut[49] / 1000,
        "p99_us": cut[98] / 1000,
        "max_us": ordered[-1] / 1000,
        "mean_us": statistics.fmean(ordered) / 1000,
        "n": len(ordered),
    }


def time_cold(index: PolicyIndex, requests: Sequence[Request]) -> tuple[list[int], list[bool]]:
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


async def sqlite_enforcer(policy: GeneratedPolicy, folder: Path) -> tuple[Enforcer, float, float]:
    """Store the policy in a SQLite policy table; time `Enforcer.load()` (snapshot + index)."""
    engine = create_engine(f"sqlite:///{folder / 'gateway.db'}")
    await upgrade_database(engine)
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = [
        {"ptype": "p", "v0": r.subject, "v1": r.object, "v2": r.action, "v3": r.effect}
        for r in policy.rules
    ] + [
        {"ptype": "g", "v0": g.member, "v1": g.group, "v2": "", "v3": ""} for g in policy.groupings
    ]
    for row in rows:
        row.update(created_at=now, created_by="bench")
    async with engine.begin() as connection:
        await connection.execute(insert(PolicyRow), rows)
        await connection.execute(insert(Meta), [{"key": "policy_version", "value": "1"}])
    # The Redis client is only used to announce changes, which this benchmark never makes.
    enforcer = Enforcer(PolicyStore(engine), aioredis.Redis.from_url("redis://127.0.0.1:1/0"))
    loads, snapshots = [], []
    for _ in range(BUILD_REPEATS):
        enforcer.version = -1
        gc.collect()
        start = time.perf_counter()
        await enforcer.store.snapshot()
        snapshots.append(time.perf_counter() - start)
        enforcer.version = -1
        gc.collect()
        start = time.perf_counter()
        await enforcer.load()
        loads.append(time.perf_counter() - start)
    await engine.dispose()
    return enforcer, statistics.median(loads), statistics.median(snapshots)


def casbin_object_match(requested: str, pattern: str) -> bool:
    """`object_matches` on each of the request's names: the gateway judges one resource by all its
    names at once (an experiment by `experiment:<id>` and `experiment_name:<name>`)."""
    return any(object_matches(name, pattern) for name in requested.split(NAME_SEPARATOR))


def casbin_enforcer(policy: GeneratedPolicy, folder: Path) -> tuple[casbin.Enforcer, float]:
    """Plain pycasbin on the shipped model. What the principal brings with it (its groups from the
    IdP, group:authenticated, the admin flag) becomes `g` lines of its user, casbin's way to say it.
    Loaded from a CSV file: `add_policy` checks for duplicates by a list scan, O(n²) at 100k."""
    path = folder / "policy.csv"
    with path.open("w") as out:
        for rule in policy.rules:
            out.write(f"{rule}\n")
        for grouping in policy.groupings:
            out.write(f"{grouping}\n")
        for principal in policy.principals:
            for subject in sorted(subjects_of(principal) - {f"user:{principal.subject}"}):
                out.write(f"g, user:{principal.subject}, {subject}\n")
    logging.getLogger("casbin").setLevel(logging.ERROR)
    gc.collect()
    start = time.perf_counter()
    enforcer = casbin.Enforcer(str(MODEL), str(path))
    enforcer.add_function("objMatch", casbin_object_match)
    enforcer.add_function("actMatch", matches)
    return enforcer, time.perf_counter() - start


def measure(workload: Workload, casbin_seconds: float) -> dict[str, Any]:
    print(f"[{workload.name}] generating the policy and {REQUESTS:,} requests", flush=True)
    policy = generate(workload, SEED + workload.rules)
    result: dict[str, Any] = {"workload": asdict(workload), "policy": policy.stats}

    print(f"[{workload.name}] building the index ({BUILD_REPEATS} times)", flush=True)
    result["index_build_s"], index = build_seconds(policy)

    with tempfile.TemporaryDirectory(prefix="mlgw-decisions-") as tmp:
        folder = Path(tmp)
        print(f"[{workload.name}] Enforcer.load() from SQLite ({BUILD_REPEATS} times)", flush=True)
        enforcer, load_s, snapshot_s = asyncio.run(sqlite_enforcer(policy, folder))
        result["enforcer_load_s"], result["snapshot_s"] = load_s, snapshot_s

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
        enforcer._cache.clear()
        for r in requests:  # fill the decision cache
            enforcer.decide(r.principal, r.names, r.action)
        warm_ns: list[int] = []
        warm_same = True
        order = list(requests)
        for _ in range(WARM_PASSES):
            random.Random(len(warm_ns)).shuffle(order)
            samples, answers = time_warm(enforcer, order)
            warm_ns += samples
            expected = {id(r): a for r, a in zip(requests, cold, strict=True)}
            warm_same &= all(expected[id(r)] == a for r, a in zip(order, answers, strict=True))
        result["warm"] = percentiles(warm_ns)
        result["warm_equals_cold"] = warm_same

        print(f"[{workload.name}] plain pycasbin, {casbin_seconds:.0f} s budget", flush=True)
        reference, casbin_load_s = casbin_enforcer(policy, folder)
        result["casbin_load_s"] = casbin_load_s
        casbin_ns: list[int] = []
        mismatches: list[str] = []
        checked: list[int] = []
        deadline = time.perf_counter() + casbin_seconds
        gc.collect()
        for i in balanced_order(decisions):
            if time.perf_counter() > deadline:
                break
            request = requests[i]
            obj = NAME_SEPARATOR.join(request.names)
            start = time.perf_counter_ns()
            theirs = reference.enforce(f"user:{request.principal.subject}", obj, request.action)
            casbin_ns.append(time.perf_counter_ns() - start)
            checked.append(i)
            if theirs != cold[i]:
                mismatches.append(f"{request} casbin={theirs} index={cold[i]}")
        result["casbin"] = percentiles(casbin_ns)
        counts = {outcome: 0 for outcome in OUTCOMES}
        for i in checked:
            counts[outcome_of(decisions[i])] += 1
        result["casbin_checked"] = {
            "requests": len(checked),
            **counts,
            "mismatches": mismatches[:20],
            "mismatch_count": len(mismatches),
            "distinct_users": len({requests[i].principal.subject for i in checked}),
        }
    result["targets"] = targets(workload, result)
    return result


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


def targets(workload: Workload, result: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    if workload.warm_p99_target_us is not None:
        found.append(
            _target("warm p99", result["warm"]["p99_us"], workload.warm_p99_target_us, "µs")
        )
    if workload.cold_p99_target_us is not None:
        found.append(
            _target("cold p99", result["cold"]["p99_us"], workload.cold_p99_target_us, "µs")
        )
    if workload.reload_target_s is not None:
        found.append(
            _target("reload (index build)", result["index_build_s"], workload.reload_target_s, "s")
        )
        found.append(
            _target(
                "reload (Enforcer.load from SQLite)",
                result["enforcer_load_s"],
                workload.reload_target_s,
                "s",
            )
        )
    return found


def _target(what: str, value: float, limit: float, unit: str) -> dict[str, Any]:
    return {"what": what, "value": value, "limit": limit, "unit": unit, "met": value <= limit}


# -- report ----------------------------------------------------------------------------------------


def _us(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def _s(value: float) -> str:
    return f"{value * 1000:,.0f} ms" if value < 10 else f"{value:,.1f} s"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def render(results: dict[str, Any]) -> str:
    runs = results["workloads"]
    m = results["machine"]
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
            f"{r['allowed'] / REQUESTS:.1%} / {r['denied_by_rule'] / REQUESTS:.1%} / "
            f"{r['denied_by_default'] / REQUESTS:.1%}",
        ]
        for r in runs
        for p in [r["policy"]]
    ]
    latency_rows = [
        [
            r["workload"]["name"],
            f"{_us(r['warm']['p50_us'])} / {_us(r['warm']['p99_us'])}",
            f"{_us(r['cold']['p50_us'])} / {_us(r['cold']['p99_us'])}",
            f"{_us(r['cold_compiled']['p50_us'])} / {_us(r['cold_compiled']['p99_us'])}",
            f"{_us(r['casbin']['p50_us'])} / {_us(r['casbin']['p99_us'])} "
            f"({r['casbin_checked']['requests']:,} requests)",
            f"{r['casbin']['p50_us'] / r['cold']['p50_us']:,.0f}",
            _s(r["index_build_s"]),
            f"{_s(r['enforcer_load_s'])} ({_s(r['snapshot_s'])} of it reading)",
            _s(r["casbin_load_s"]),
        ]
        for r in runs
    ]
    check_rows = [
        [
            r["workload"]["name"],
            f"{REQUESTS:,}",
            "identical" if r["warm_equals_cold"] and r["cold_answers_stable"] else "**differ**",
            f"{c['requests']:,}: {c['allowed']} allowed, {c['denied_by_rule']} denied by a "
            f"rule, {c['denied_by_default']} by default ({c['distinct_users']} users)",
            "identical"
            if r["casbin_checked"]["mismatch_count"] == 0
            else f"**{r['casbin_checked']['mismatch_count']} differ**",
        ]
        for r in runs
        for c in [r["casbin_checked"]]
    ]
    target_rows = [
        [
            r["workload"]["name"],
            t["what"],
            f"{_us(t['value'])} µs" if t["unit"] == "µs" else _s(t["value"]),
            f"≤ {t['limit']:g} {t['unit']}",
            "met" if t["met"] else "**missed**",
        ]
        for r in runs
        for t in r["targets"]
    ]
    return "\n".join(
        [
            BEGIN,
            "<!-- Generated by bench/decisions.py: edits between these markers are overwritten -->",
            "",
            "## Authorization decisions",
            "",
            f"- Command: `{results['command']}` (took {results['duration_s']:.0f} s)",
            f"- Date: {results['started_utc']} (UTC)",
            f"- Machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram_gib']} GiB RAM, "
            f"Linux {m['kernel']}; Python {m['python']}, pycasbin {results['pycasbin']}",
            f"- Load average (1 min) at start / end: {results['loadavg_start']:.2f} / "
            f"{results['loadavg_end']:.2f}",
            "",
            "Random policies, seeded (same policy every run): teams own experiments by name prefix "
            "and models by prefix, creators own what they created, departments read their teams' "
            "work, cross-team and per-user shares, per-user patterns, about 3 % denies, a "
            "release-manager group, a few admins; half of the memberships are `g` lines, half "
            "arrive with the principal as IdP groups. 10,000 distinct requests per policy, half of "
            "them on the requester's own teams' things: about half on experiments (judged by id "
            "and name at once), a third on registered models (read, edit, promotion, aliases), "
            "the rest creations and AI gateway endpoint use; 5 % run into a deny rule. pycasbin "
            "gets the same questions: what a principal brings with it (IdP groups, "
            "`group:authenticated`, the admin flag) as `g` lines of its user, and `objMatch` "
            "applied to each of the resource's names.",
            "",
            _table(
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
            "Latency per decision in µs, p50 / p99. *Warm*: `Enforcer.decide` answered from its "
            "decision cache (every request seen before; 3 passes in shuffled order). *Cold*: "
            "`PolicyIndex.decide` on requests it has never seen, with the regex cache of object "
            "patterns emptied first; *cold, patterns compiled*: the same requests again, the "
            "usual cache miss of a running gateway (the regex cache outlives policy reloads). "
            "*pycasbin*: `casbin.Enforcer` on policies/model.conf, one "
            "request after the other for as long as its time budget "
            f"({results['casbin_seconds']:.0f} s per policy) lasts: it scans every rule for "
            "every request, so it gets through only part of the sample, taking allowed, "
            "denied-by-a-rule and denied-by-default requests in turn. *Reload*: median of "
            f"{BUILD_REPEATS}; *index build* is `PolicyIndex(rules, groupings)`; "
            "`Enforcer.load()` reads the policy table of a SQLite gateway database (the "
            "*reading* part) and builds the index. Every replica does it at every policy change, "
            "and the gateway itself changes the policy at every experiment or registered model "
            "creation (the creator's owner rule).",
            "",
            _table(
                [
                    "Policy",
                    "warm",
                    "cold",
                    "cold, patterns compiled",
                    "pycasbin",
                    "pycasbin p50 / cold p50",
                    "index build",
                    "`Enforcer.load()`",
                    "pycasbin load",
                ],
                latency_rows,
            ),
            "",
            "Same answers:",
            "",
            _table(
                [
                    "Policy",
                    "requests",
                    "warm, cold and again agree",
                    "checked against pycasbin",
                    "pycasbin vs index",
                ],
                check_rows,
            ),
            "",
            "Targets:",
            "",
            _table(["Policy", "what", "measured", "target", ""], target_rows),
            "",
            END,
        ]
    )


def update_docs(path: Path, section: str) -> None:
    """Replace the decisions section; append it at the end if the markers are not there yet."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def terminal(results: dict[str, Any]) -> str:
    lines = []
    for r in results["workloads"]:
        lines.append(
            f"{r['workload']['name']}: warm p50/p99 {_us(r['warm']['p50_us'])}/"
            f"{_us(r['warm']['p99_us'])} µs, cold {_us(r['cold']['p50_us'])}/"
            f"{_us(r['cold']['p99_us'])} µs, pycasbin {_us(r['casbin']['p50_us'])}/"
            f"{_us(r['casbin']['p99_us'])} µs on {r['casbin_checked']['requests']} requests "
            f"({r['casbin_checked']['mismatch_count']} differ), index build "
            f"{_s(r['index_build_s'])}, Enforcer.load {_s(r['enforcer_load_s'])}"
        )
        for t in r["targets"]:
            lines.append(
                f"  {t['what']}: {t['value']:.4g} {t['unit']} (target ≤ {t['limit']:g}): "
                + ("met" if t["met"] else "MISSED")
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from bench.report import machine_info

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    parser.add_argument(
        "--casbin-seconds",
        type=float,
        default=30.0,
        help="time budget of plain pycasbin per policy (default 30)",
    )
    args = parser.parse_args(argv)
    started = datetime.now(UTC)
    clock = time.perf_counter()
    results: dict[str, Any] = {
        "command": COMMAND + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip(),
        "started_utc": started.strftime("%Y-%m-%d %H:%M"),
        "machine": machine_info(),
        "pycasbin": version("pycasbin"),
        "casbin_seconds": args.casbin_seconds,
        "loadavg_start": os.getloadavg()[0],
        "workloads": [measure(w, args.casbin_seconds) for w in WORKLOADS],
    }
    results["loadavg_end"] = os.getloadavg()[0]
    results["duration_s"] = time.perf_counter() - clock
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    saved = RESULTS_DIR / f"{started.strftime('%Y%m%dT%H%M%SZ')}-decisions.json"
    saved.write_text(json.dumps(results, indent=2) + "\n")
    print("\n" + terminal(results))
    print(f"raw results: {saved.relative_to(REPO)}; took {results['duration_s']:.0f} s")
    if not args.no_docs:
        update_docs(DOCS, render(results))
        print(f"updated {DOCS.relative_to(REPO)}")
    mismatch = any(
        not r["cold_answers_stable"]
        or r["casbin_checked"]["mismatch_count"]
        or not r["warm_equals_cold"]
        for r in results["workloads"]
    )
    return 1 if mismatch else 0


if __name__ == "__main__":
    # Run as a script: make the repository root importable for the `bench` package.
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
