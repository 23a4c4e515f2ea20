"""The real mlflow client through the gateway, directly, and through MLflow's own basic-auth app.

The same session (bench/mlflow_workload.py: create an experiment, runs that log params, metrics,
batches and tags, searches, log and register a scikit-learn model, load it back) runs against
three paths in rotated rounds: MLflow direct, the gateway in front of that same MLflow (a
non-admin user with a gateway token), and `mlflow server --app-name basic-auth` (a non-admin
user with a password) — the peer. The MLflow servers run one worker each: with several, a keep-alive
client waits 40 ms on every request direct to MLflow (see the probe), which would flatter the
gateway; the gateway reuses its upstream connections, as it should in front of such a server.
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
from bench.stack import BenchStack, Service, StackError, user_token
from bench.summary import Target, table

DIRECT = "MLflow direct"
GATEWAY = "through the gateway"
PEER = "MLflow basic-auth app (peer)"
RATIO_TARGET = 1.05


def start(stack: BenchStack, mlflow: Service, profile: Profile) -> dict[str, Service]:
    """``mlflow`` is the one-worker server the direct path uses too. The peer runs with MLflow's
    defaults (its password-check cache off), except in smoke runs, where speed matters more."""
    peer = stack.start_mlflow(
        "mlflow-basic-auth",
        1,
        basic_auth_password=secrets.token_urlsafe(18),
        basic_auth_cache_seconds=0 if profile.judged else 60,
    )
    return {
        DIRECT: mlflow,
        GATEWAY: stack.start_gateway("gateway-workload", mlflow, keepalive=True),
        PEER: peer,
    }


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
    token = await user_token(services[GATEWAY], "bench-user")
    user, password = await _peer_user(services[PEER])
    credentials = {
        DIRECT: {},
        GATEWAY: {"MLFLOW_TRACKING_TOKEN": token},
        PEER: {"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password},
    }
    paths = [DIRECT, GATEWAY, PEER]
    sessions: dict[str, list[dict[str, Any]]] = {p: [] for p in paths}
    if profile.workload_warmup:  # untimed: the servers' first model, first artifact, imports
        for path in paths:
            await asyncio.to_thread(_session, path, services[path], credentials[path], 1)
    for round_no in range(profile.workload_rounds):
        shift = round_no % len(paths)
        for path in paths[shift:] + paths[:shift]:
            sessions[path].append(
                await asyncio.to_thread(
                    _session, path, services[path], credentials[path], profile.workload_runs
                )
            )
    return {"runs": profile.workload_runs, "rounds": profile.workload_rounds, "sessions": sessions}


def total(results: dict[str, Any], path: str) -> float:
    return statistics.median(s["total_s"] for s in results["sessions"][path])


def targets(results: dict[str, Any], profile: Profile) -> list[Target]:
    direct = total(results, DIRECT)
    ratio = total(results, GATEWAY) / direct
    peer = total(results, PEER) / direct
    return [
        Target(
            "MLflow client workload",
            "time through the gateway / direct",
            f"{ratio:.3f}x ({total(results, GATEWAY):.2f} s vs {direct:.2f} s)",
            f"≤ {RATIO_TARGET}x",
            f"basic-auth app {peer:.3f}x ({total(results, PEER):.2f} s)",
            ratio <= RATIO_TARGET if profile.judged else None,
        )
    ]


def render(results: dict[str, Any]) -> str:
    sessions = results["sessions"]
    phases = list(sessions[DIRECT][0]["phases"])
    direct = total(results, DIRECT)
    rows = [
        [
            path,
            f"{total(results, path):.2f}",
            f"{total(results, path) / direct:.3f}x",
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
            f"`mlflow.pyfunc.load_model('models:/…/1')`. {results['rounds']} sessions per path in "
            "rotated order; medians in seconds of wall time in the client (imports excluded).",
            "",
            table(["Path", "total s", "vs direct", *phases], rows),
        ]
    )


def failures(results: dict[str, Any]) -> list[str]:
    return []  # a failed session stops the run with its error
