"""Print the installed MLflow's version and every (method, path, layer) its server serves, as JSON
on one line: ``{"mlflow": "3.18.0", "routes": [{"method": …, "path": …, "layer": …}, …]}``.

Shipped inside the gateway package but never imported by it (the gateway never imports mlflow):
`mlflow-gateway routes check` runs this file as a script with the interpreter MLflow is installed
for, in its own process, because importing mlflow.server builds the app and touches the tracking
store named by MLFLOW_TRACKING_URI. It imports nothing from the gateway, so it runs wherever
MLflow runs. tests/enumerate_mlflow_routes.py runs this same file.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

warnings.simplefilter("ignore")

import fastapi.routing  # noqa: E402
import mlflow  # type: ignore[import-untyped]  # noqa: E402
from mlflow.server import app as flask_app  # type: ignore[import-untyped]  # noqa: E402
from mlflow.server.fastapi_app import (  # type: ignore[import-untyped]  # noqa: E402
    create_fastapi_app,
)

# FastAPI's included routers (recent releases); older ones list every route flat.
_IncludedRouter: Any = getattr(fastapi.routing, "_IncludedRouter", None)


def _fastapi_routes(routes: list[Any]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for route in routes:
        if _IncludedRouter is not None and isinstance(route, _IncludedRouter):
            for candidate in route.effective_candidates():
                if _IncludedRouter is not None and isinstance(candidate, _IncludedRouter):
                    found += _fastapi_routes([candidate])
                else:
                    methods = getattr(candidate.original_route, "methods", None) or {"*"}
                    found += [(m, candidate.path) for m in methods]
        elif getattr(route, "methods", None):
            found += [(m, route.path) for m in route.methods]
    return found


def enumerate_routes() -> list[dict[str, str]]:
    routes = [
        {"method": m, "path": p, "layer": "fastapi"}
        for m, p in _fastapi_routes(create_fastapi_app(flask_app).routes)
    ]
    for rule in flask_app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            routes.append({"method": method, "path": rule.rule, "layer": "flask"})
    return routes


def main() -> None:
    print(json.dumps({"mlflow": mlflow.__version__, "routes": enumerate_routes()}))


if __name__ == "__main__":
    main()
