"""`mlflow-gateway routes check`: does the route table judge every route of an installed MLflow?

The step before upgrading MLflow, and a step of the MLflow image's build (mlflow/Dockerfile). The
gateway never imports mlflow: the routes are enumerated by enumerate_mlflow_routes.py, run as a
script by the interpreter MLflow is installed for (``--python``), in a scratch directory, with a
scratch SQLite tracking store (importing mlflow.server builds the app and touches its store).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import click

from gateway.authz.routes import RULES, SUPPORTED_MLFLOW, RouteRule

ENUMERATOR = Path(__file__).with_name("enumerate_mlflow_routes.py")
ENUMERATE_TIMEOUT = 300
EXIT_UNJUDGED = 1
EXIT_NO_MLFLOW = 2


class EnumerationFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class Installed:
    version: str
    routes: frozenset[tuple[str, str]]  # (method, path) as MLflow registers them


def enumerate_installed(python: str, extra_env: dict[str, str] | None = None) -> Installed:
    """The MLflow version and routes of ``python``'s MLflow, from a process of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(extra_env or {})
    if env.get("PYTHONPATH"):
        # The enumerator runs in a scratch directory: relative entries mean the caller's.
        entries = env["PYTHONPATH"].split(os.pathsep)
        env["PYTHONPATH"] = os.pathsep.join(str(Path(e or ".").absolute()) for e in entries)
    with tempfile.TemporaryDirectory(prefix="mlflow-routes-") as scratch:
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(scratch) / 'routes.db'}"
        try:
            result = subprocess.run(
                [python, str(ENUMERATOR)],
                capture_output=True,
                text=True,
                env=env,
                cwd=scratch,
                timeout=ENUMERATE_TIMEOUT,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EnumerationFailed(f"could not run {python}: {exc}") from None
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise EnumerationFailed(f"{python} could not enumerate MLflow's routes: {last}")
    try:
        data = json.loads(lines[-1])
        routes = frozenset((r["method"], r["path"]) for r in data["routes"])
        return Installed(str(data["mlflow"]), routes)
    except (ValueError, KeyError, TypeError):
        raise EnumerationFailed(f"{python}: the enumerator's output is not understood") from None


@dataclass(frozen=True)
class RouteCheck:
    version: str
    routes: int
    # Routes no rule judges: the gateway refuses them, so their features are unusable.
    unjudged: tuple[tuple[str, str], ...]
    # Rules the table says this MLflow serves, whose route it does not serve.
    stale: tuple[RouteRule, ...]
    # Routes judged by a rule whose `mlflow` clause leaves this release out.
    outside: tuple[RouteRule, ...]

    @property
    def tested(self) -> bool:
        return self.version in SUPPORTED_MLFLOW

    def lines(self) -> list[str]:
        out = [f"unjudged: {m} {p} (no rule: the gateway refuses it)" for m, p in self.unjudged]
        out += [
            f"no route: {r.method} {r.template} ({r.operation}): MLflow {self.version} "
            "does not serve it"
            for r in self.stale
        ]
        out += [
            f"version: {r.method} {r.template} ({r.operation}) is served, but its rule's "
            f"mlflow = {r.mlflow.text if r.mlflow else ''!r} leaves {self.version} out"
            for r in self.outside
        ]
        verdict = "ok" if not self.unjudged else "UNJUDGED ROUTES"
        tested = (
            "a tested release"
            if self.tested
            else f"not a tested release (tested: {', '.join(SUPPORTED_MLFLOW)})"
        )
        out.append(
            f"{verdict}: MLflow {self.version}, {tested}: {self.routes} routes, "
            f"{self.routes - len(self.unjudged)} judged, {len(self.unjudged)} unjudged; "
            f"{len(self.stale)} rule(s) match no route"
        )
        return out


def check_routes(
    version: str, routes: Iterable[tuple[str, str]], rules: Iterable[RouteRule] = RULES
) -> RouteCheck:
    served = frozenset(routes)
    by_route = {(r.method, r.template): r for r in rules}
    unjudged = tuple(sorted(served - set(by_route)))
    stale = tuple(
        rule
        for key, rule in sorted(by_route.items())
        if key not in served and rule.served_by(version)
    )
    outside = tuple(
        rule
        for key, rule in sorted(by_route.items())
        if key in served and not rule.served_by(version)
    )
    return RouteCheck(version, len(served), unjudged, stale, outside)


@click.group()
def routes() -> None:
    """The MLflow route table: which MLflow routes the gateway judges."""


@routes.command()
@click.option(
    "--python",
    "python",
    default=sys.executable,
    show_default="this interpreter",
    help="The Python interpreter MLflow is installed for.",
)
def check(python: str) -> None:
    """List the routes of the MLflow installed for PYTHON that no rule judges (the gateway
    would refuse them) and the rules that match no route. Exit 1 when a route is unjudged.

    Run it before upgrading MLflow, with the new MLflow installed."""
    try:
        installed = enumerate_installed(python)
    except EnumerationFailed as exc:
        click.echo(f"mlflow-gateway routes check: {exc}", err=True)
        sys.exit(EXIT_NO_MLFLOW)
    report = check_routes(installed.version, installed.routes)
    for line in report.lines():
        click.echo(line)
    sys.exit(EXIT_UNJUDGED if report.unjudged else 0)
