"""Print every (method, path, layer) the installed MLflow server serves, as JSON on one line.

Run as a script in its own process (importing mlflow.server builds the app and touches the
tracking store named by MLFLOW_TRACKING_URI).
"""

from __future__ import annotations

import json
import warnings
from typing import Any

warnings.simplefilter("ignore")

from fastapi.routing import _IncludedRouter  # noqa: E402
from mlflow.server import app as flask_app  # noqa: E402
from mlflow.server.fastapi_app import create_fastapi_app  # noqa: E402


def _fastapi_routes(routes: list[Any]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for route in routes:
        if isinstance(route, _IncludedRouter):
            for candidate in route.effective_candidates():
                if isinstance(candidate, _IncludedRouter):
                    found += _fastapi_routes([candidate])
                else:
                    methods = getattr(candidate.original_route, "methods", None) or {"*"}
                    found += [(m, candidate.path) for m in methods]
        elif getattr(route, "methods", None):
            found += [(m, route.path) for m in route.methods]
    return found


def main() -> None:
    routes = [
        {"method": m, "path": p, "layer": "fastapi"}
        for m, p in _fastapi_routes(create_fastapi_app(flask_app).routes)
    ]
    for rule in flask_app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            routes.append({"method": method, "path": rule.rule, "layer": "flask"})
    print(json.dumps(routes))


if __name__ == "__main__":
    main()
