"""Print the installed MLflow's version and routes as JSON on one line.

One copy of the enumerator: the one the gateway ships (gateway/cli/enumerate_mlflow_routes.py,
run by `mlflow-gateway routes check`); this script runs it, for tests and by hand. Run it in its
own process (importing mlflow.server builds the app and touches the tracking store named by
MLFLOW_TRACKING_URI).
"""

from __future__ import annotations

import runpy
from pathlib import Path

SHIPPED = Path(__file__).resolve().parents[1] / "gateway" / "cli" / "enumerate_mlflow_routes.py"

if __name__ == "__main__":
    runpy.run_path(str(SHIPPED), run_name="__main__")
