"""Filtered search at scale: many experiments, a caller who may read a few of them.

MLflow gets `search_experiments` experiments (written into its database in one transaction before
the measurement — creating them one by one through the API would take minutes; MLflow then serves
them like any others) named `/bench/team-<t>/exp-<i>`, 50 per team. Through the gateway:

- *steered*: a user granted `read` on `search_readable` random experiments by id (as creators own
  theirs): the gateway narrows MLflow's query to those ids;
- *page by page*: a user granted `read` on one team's name prefix
  (`experiment_name:/bench/team-7/*`, as many experiments): the gateway reads MLflow's pages and
  keeps what the user may read;
- *admin*: unfiltered, passed through.

The first page of `POST experiments/search` with `max_results=1000` (the mlflow client's page size)
is timed direct and through each, in rotated rounds; then each user pages through everything with
small pages, and the ids and their order must be MLflow's own listing cut to what the user may read.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import statistics
import time
from typing import Any

import aiohttp

from bench.profile import Profile
from bench.stack import BenchStack, Service, auth_headers, import_policy, user_token
from bench.summary import Target, table

SEARCH = "/api/2.0/mlflow/experiments/search"
PAGE = 1000
RATIO_TARGET = 3.0
TEAM_SIZE = 50
DIRECT = "direct (MLflow lists everything)"
STEERED = "gateway, steered (rights by id)"
PAGED = "gateway, page by page (rights by name pattern)"
ADMIN = "gateway, admin (unfiltered)"
TIMEOUT = aiohttp.ClientTimeout(total=300)


def populate(database: str, count: int) -> None:
    """``count`` active experiments in MLflow's SQLite store, as MLflow itself would write them."""
    now = int(time.time() * 1000)
    with sqlite3.connect(database, timeout=60) as db:
        db.executemany(
            "INSERT INTO experiments (name, artifact_location, lifecycle_stage, creation_time, "
            "last_update_time) VALUES (?, 'pending', 'active', ?, ?)",
            [(f"/bench/team-{i // TEAM_SIZE}/exp-{i}", now + i, now + i) for i in range(count)],
        )
        db.execute(
            "UPDATE experiments SET artifact_location = 'mlflow-artifacts:/' || experiment_id "
            "WHERE artifact_location = 'pending'"
        )


async def _search(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: dict[str, Any]
) -> dict[str, Any]:
    async with session.post(url + SEARCH, json=body, headers=headers) as response:
        payload = await response.json(content_type=None)
        if response.status != 200:
            raise RuntimeError(f"search answered {response.status}: {payload}")
        return dict(payload)


async def _every_page(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], page: int
) -> tuple[list[dict[str, Any]], int]:
    """Everything, following next_page_token as a client does; and how many pages it took."""
    experiments: list[dict[str, Any]] = []
    token, pages = None, 0
    while True:
        body: dict[str, Any] = {"max_results": page}
        if token:
            body["page_token"] = token
        found = await _search(session, url, headers, body)
        pages += 1
        experiments += found.get("experiments", [])
        token = found.get("next_page_token")
        if not token:
            return experiments, pages


async def run(
    stack: BenchStack, mlflow: Service, gateway: Service, profile: Profile
) -> dict[str, Any]:
    await asyncio.to_thread(
        populate, str(stack.mlflow_database(mlflow)), profile.search_experiments
    )
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        everything, _ = await _every_page(session, mlflow.url, {}, PAGE)
    listing = [e["experiment_id"] for e in everything]
    names = {e["experiment_id"]: e["name"] for e in everything}
    bench_ids = [i for i in listing if names[i].startswith("/bench/")]
    steered_ids = set(random.Random(20261201).sample(bench_ids, profile.search_readable))
    team = f"/bench/team-{min(7, profile.search_experiments // TEAM_SIZE - 1)}/"
    paged_ids = {i for i in bench_ids if names[i].startswith(team)}
    steered, paged = "bench-search-steered", "bench-search-paged"
    steered_token = await user_token(gateway, steered)
    lines = "".join(f"p, user:{steered}, experiment:{i}, read\n" for i in sorted(steered_ids))
    await import_policy(gateway, lines)
    paged_token = await user_token(
        gateway, paged, f"p, user:{paged}, experiment_name:{team}*, read"
    )
    headers: dict[str, dict[str, str]] = {DIRECT: {}}
    headers[STEERED] = {"Authorization": f"Bearer {steered_token}"}
    headers[PAGED] = {"Authorization": f"Bearer {paged_token}"}
    headers[ADMIN] = await auth_headers(gateway)
    urls = {DIRECT: mlflow.url, STEERED: gateway.url, PAGED: gateway.url, ADMIN: gateway.url}

    timings: dict[str, list[float]] = {path: [] for path in urls}
    items: dict[str, int] = {}
    order = list(urls)
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        for path in order:  # warm caches (MLflow's, the gateway's lookups), untimed
            await _search(session, urls[path], headers[path], {"max_results": PAGE})
        for round_no in range(profile.search_repeats):
            shift = round_no % len(order)
            for path in order[shift:] + order[:shift]:
                started = time.perf_counter()
                found = await _search(session, urls[path], headers[path], {"max_results": PAGE})
                timings[path].append((time.perf_counter() - started) * 1000)
                items[path] = len(found.get("experiments", []))
        expected = {
            STEERED: [i for i in listing if i in steered_ids],
            PAGED: [i for i in listing if i in paged_ids],
        }
        paging = {}
        for path, page in ((STEERED, 7), (PAGED, 13)):
            found, pages = await _every_page(session, urls[path], headers[path], page)
            got = [e["experiment_id"] for e in found]
            paging[path] = {
                "page_size": page,
                "pages": pages,
                "items": len(got),
                "expected": len(expected[path]),
                "correct": got == expected[path],
            }
    return {
        "experiments": len(listing),
        "readable": {STEERED: len(steered_ids), PAGED: len(paged_ids)},
        "first_page_ms": {p: statistics.median(t) for p, t in timings.items()},
        "first_page_samples_ms": timings,
        "first_page_items": items,
        "paging": paging,
    }


def ratio(results: dict[str, Any], path: str) -> float:
    first = results["first_page_ms"]
    return first[path] / first[DIRECT]


def failures(results: dict[str, Any]) -> list[str]:
    return [
        f"search: paging {path} is not MLflow's listing cut to what the user may read"
        for path, row in results["paging"].items()
        if not row["correct"]
    ]


def targets(results: dict[str, Any], profile: Profile) -> list[Target]:
    first = results["first_page_ms"]
    paging = results["paging"]
    return [
        Target(
            "Filtered search",
            f"first page, {results['experiments']:,} experiments, user may read "
            f"{results['readable'][STEERED]}",
            f"{ratio(results, STEERED):.2f}x direct ({first[STEERED]:.0f} ms vs "
            f"{first[DIRECT]:.0f} ms)",
            f"≤ {RATIO_TARGET:g}x direct",
            f"page by page: {ratio(results, PAGED):.1f}x ({first[PAGED]:.0f} ms)",
            ratio(results, STEERED) <= RATIO_TARGET if profile.judged else None,
        ),
        Target(
            "Filtered search",
            "paging complete and in MLflow's order",
            ", ".join(
                f"{row['items']} of {row['expected']} in {row['pages']} pages"
                for row in paging.values()
            ),
            "all, same order",
            "steered / page by page",
            all(row["correct"] for row in paging.values()),
        ),
    ]


def render(results: dict[str, Any]) -> str:
    first = results["first_page_ms"]
    rows = [
        [
            path,
            f"{results['readable'].get(path, results['experiments']):,}",
            f"{results['first_page_items'][path]:,}",
            f"{first[path]:.0f}",
            f"{first[path] / first[DIRECT]:.2f}x",
        ]
        for path in first
    ]
    paging_rows = [
        [
            path,
            str(row["page_size"]),
            str(row["pages"]),
            f"{row['items']} / {row['expected']}",
            "yes" if row["correct"] else "**no**",
        ]
        for path, row in results["paging"].items()
    ]
    return "\n".join(
        [
            "### Filtered search at scale",
            "",
            f"{results['experiments']:,} experiments in MLflow. The first page of "
            f"`experiments/search` (`max_results={PAGE}`), median of the rounds:",
            "",
            table(["Path", "experiments visible", "items on the page", "ms", "vs direct"], rows),
            "",
            "Paging through everything with small pages, compared with MLflow's own listing cut "
            "to what the user may read:",
            "",
            table(
                ["Path", "page size", "pages", "items / expected", "same ids, same order"],
                paging_rows,
            ),
        ]
    )
