"""Facts about the installed MLflow that the gateway's design relies on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ENUMERATOR = Path(__file__).resolve().parents[1] / "enumerate_mlflow_routes.py"


def installed_mlflow_routes(workdir: Path) -> list[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'routes.db'}"
    result = subprocess.run(
        [sys.executable, str(ENUMERATOR)],
        capture_output=True,
        text=True,
        env=env,
        cwd=workdir,
        timeout=120,
        check=True,
    )
    routes: list[dict[str, str]] = json.loads(result.stdout.strip().splitlines()[-1])["routes"]
    return routes


def test_no_route_of_the_installed_mlflow_uses_the_gateway_prefix(tmp_path: Path) -> None:
    routes = installed_mlflow_routes(tmp_path)
    # Sanity: the enumeration sees the whole server (3.17.2: 81 native FastAPI routes, ~400 Flask).
    assert sum(r["layer"] == "fastapi" for r in routes) >= 81
    assert sum(r["layer"] == "flask" for r in routes) >= 400
    assert [r for r in routes if r["path"].startswith("/.gateway")] == []
