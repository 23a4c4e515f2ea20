"""The real mlflow client through the gateway, directly, and through MLflow's own basic-auth app.

The same session (bench/mlflow_workload.py: create an experiment, runs that log params, metrics,
batches and tags, searches, log and register a scikit-learn model, load it back) runs against
MLflow direct and against the gateway in front of that same MLflow — a non-admin user with a
gateway token, and the same user with their password — back to back; and against
`mlflow server --app-name basic-auth` (a non-admin user with a password), the peer, a few times
among them. The MLflow servers run one worker each, as before: the comparison is of the paths,
and the gateway reuses its upstream connections.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import os
import secrets
import statistics
from typing import Any

import aiohttp

from bench import mlflow_workload
from bench.profile import Profile
from bench.stack import BenchStack, Service, StackError, user_credentials
from bench.summary import Target, table

DIRECT = "MLflow direct"
GATEWAY = "through the gateway, token"
GATEWAY_PASSWORD = "through the gateway, password"
PEER = "MLflow basic-auth app (peer)"
# Both ways people configure the client first: a token, and their username and password.
THROUGH = (GATEWAY, GATEWAY_PASSWORD)
RATIO_TARGET = 1.00


def start(stack: BenchStack, mlflow: Service, profile: Profile) -> dict[str, Service]:
    """``mlflow`` is the one-worker server the direct path uses too. The peer runs with MLflow's
    defaults (its password-check cache off), except in smoke runs, where speed matters more."""
    peer = stack.start_mlflow(
        "mlflow-basic-auth",
        1,
        basic_auth_password=secrets.token_urlsafe(18),
        basic_auth_cache_seconds=0 if profile.judged else 60,
    )
    gateway = stack.start_gateway("gateway-workload", mlflow, keepalive=True)
    return {DIRECT: mlflow, GATEWAY: gateway, GATEWAY_PASSWORD: gateway, PEER: peer}


async def _peer_user(peer: Service) -> tuple[str, str]:
    """A non-admin user of the basic-auth app, created by its admin."""
    admin = base64.b64encode(f"admin:{peer.env['MLFLOW_AUTH_ADMIN_PASSWORD']}".encode()).decode()
    user, password = "bench-user", secrets.token_urlsafe(18)
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            peer.url + "/api/2.0/mlflow/users/create",
            json={"username": user, "password": password},
            headers={"Authorization": f"Basic {admin}"},
        ) as response,
    ):
        if response.status != 200:
            raise StackError(f"basic-auth app refused to create a user: {await response.text()}")
    return user, password


CREDENTIALS = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def _session(path: str, service: Service, credentials: dict[str, str], runs: int) -> dict[str, Any]:
    """One session in this process (the client reads its credentials from the environment at
    every request); sessions run one at a time."""
    for key in CREDENTIALS:
        os.environ.pop(key, None)
    os.environ.update(credentials)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the client prints links to its runs
            return mlflow_workload.session(service.url, runs)
    except Exception as exc:
        raise StackError(f"the mlflow client workload failed {path}: {exc!r}") from exc
    finally:
        for key in CREDENTIALS:
            os.environ.pop(key, None)


async def run(services: dict[str, Service], profile: Profile) -> dict[str, Any]:
    made = await user_credentials(services[GATEWAY], "bench-user")
    user, password = await _peer_user(services[PEER])
    credentials = {
        DIRECT: {},
        GATEWAY: {"MLFLOW_TRACKING_TOKEN": made.token},
        GATEWAY_PASSWORD: {
            "MLFLOW_TRACKING_USERNAME": made.username,
            "MLFLOW_TRACKING_PASSWORD": made.secret,
        },
        PEER: {"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password},
    }
    paths = [DIRECT, GATEWAY, GATEWAY_PASSWORD, PEER]
    sessions: dict[str, list[dict[str, Any]]] = {p: [] for p in paths}

    async def one(path: str) -> dict[str, Any]:
        result = await asyncio.to_thread(
            _session, path, services[path], credentials[path], profile.workload_runs
        )
        sessions[path].append(result)
        return result

    if profile.workload_warmup:  # untimed: the servers' first model, first artifact, imports
        for path in paths:
            await asyncio.to_thread(_session, path, services[path], credentials[path], 1)
    # One session of the same work varies by ±15 % on this machine from one minute to the next,
    # more than the gateway adds: a direct session and one of each gateway client run back to
    # back (the order rotates), each giving a ratio with that direct session; the peer is far
    # slower and only shown.
    pairs: dict[str, list[tuple[float, float]]] = {path: [] for path in THROUGH}
    peer_every = max(1, profile.workload_pairs // profile.workload_peer_sessions)
    for pair_no in range(profile.workload_pairs):
        if pair_no % peer_every == 0 and len(sessions[PEER]) < profile.workload_peer_sessions:
            await one(PEER)
        order = [DIRECT, *THROUGH]
        order = order[pair_no % len(order) :] + order[: pair_no % len(order)]
        done = {path: (await one(path))["total_s"] for path in order}
        for path in THROUGH:
            pairs[path].append((done[DIRECT], done[path]))
    while len(sessions[PEER]) < profile.workload_peer_sessions:
        await one(PEER)
    return {"runs": profile.workload_runs, "pairs": pairs, "sessions": sessions}


def total(results: dict[str, Any], path: str) -> float:
    return statistics.median(s["total_s"] for s in results["sessions"][path])


def _pairs(results: dict[str, Any], path: str) -> list[tuple[float, float]]:
    pairs = results["pairs"]
    return pairs if isinstance(pairs, list) else pairs.get(path, [])  # older runs: one path


def pair_ratios(results: dict[str, Any], path: str = GATEWAY) -> list[float]:
    return sorted(gateway / direct for direct, gateway in _pairs(results, path))


def ratio(results: dict[str, Any], path: str = GATEWAY) -> float:
    """Through the gateway / direct: the median of the back-to-back pairs' ratios."""
    return statistics.median(pair_ratios(results, path))


def targets(results: dict[str, Any], profile: Profile) -> list[Target]:
    direct = total(results, DIRECT)
    peer = total(results, PEER) / direct
    rows = []
    for path in THROUGH:
        if path not in results["sessions"]:
            continue
        ratios = pair_ratios(results, path)
        measured = ratio(results, path)
        rows.append(
            Target(
                "MLflow client workload",
                f"time {path} / direct (median of paired sessions)",
                f"{measured:.3f}x over {len(ratios)} pairs (range {ratios[0]:.2f} to "
                f"{ratios[-1]:.2f}; medians {total(results, path):.2f} s vs {direct:.2f} s)",
                f"≤ {RATIO_TARGET:.2f}x",
                f"basic-auth app {peer:.3f}x ({total(results, PEER):.2f} s)",
                measured <= RATIO_TARGET if profile.judged else None,
            )
        )
    return rows


def render(results: dict[str, Any]) -> str:
    sessions = results["sessions"]
    phases = list(sessions[DIRECT][0]["phases"])
    direct = total(results, DIRECT)
    rows = [
        [
            path,
            f"{total(results, path):.2f}",
            f"{(ratio(results, path) if path in THROUGH else total(results, path) / direct):.3f}x",
            *(f"{statistics.median(s['phases'][p] for s in sessions[path]):.2f}" for p in phases),
        ]
        for path in sessions
    ]
    return "\n".join(
        [
            "### The mlflow client workload",
            "",
            f"One session: create an experiment; {results['runs']} runs, each with a parameter, a "
            "tag, 5 metrics one by one, a batch of 20 metrics, 5 params and a tag, a `get_run` "
            "and the end of the run; `search_runs` and `search_experiments`; a scikit-learn model "
            "logged with `registered_model_name` (registered) and loaded back with "
            f"`mlflow.pyfunc.load_model('models:/…/1')`. {len(_pairs(results, GATEWAY))} rounds "
            "of back-to-back sessions: direct, through the gateway with a token, through the "
            "gateway with the user's password (the order rotates), "
            f"{len(sessions[PEER])} sessions of the peer among them; medians in seconds of wall "
            "time in the client (imports excluded). Pair ratios, sorted: "
            + "; ".join(
                f"{path}: " + ", ".join(f"{r:.3f}" for r in pair_ratios(results, path))
                for path in THROUGH
                if path in sessions
            )
            + ".",
            "",
            table(["Path", "total s", "vs direct (gateway: median pair)", *phases], rows),
        ]
    )


def failures(results: dict[str, Any]) -> list[str]:
    return []  # a failed session stops the run with its error
