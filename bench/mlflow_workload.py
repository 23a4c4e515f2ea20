"""A realistic session of the real mlflow client, timed phase by phase; prints one JSON line.

Creates an experiment, then runs that log parameters, metrics (one by one and in batches) and tags;
searches runs and experiments; logs a small scikit-learn model, registers it and loads it back.
Credentials come the mlflow client's own way: MLFLOW_TRACKING_TOKEN (the gateway) or
MLFLOW_TRACKING_USERNAME/PASSWORD (MLflow's basic-auth app), or none (MLflow direct).

    python bench/mlflow_workload.py --tracking-uri http://127.0.0.1:5000 --runs 8
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import uuid
import warnings
from collections.abc import Callable
from typing import Any


def session(tracking_uri: str, runs: int) -> dict[str, Any]:
    """One timed session against ``tracking_uri``; credentials from the environment."""
    warnings.filterwarnings("ignore")

    import mlflow
    import mlflow.pyfunc
    import mlflow.sklearn
    import numpy as np
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag
    from sklearn.linear_model import LinearRegression

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # after the import, which sets it

    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient()
    tag = uuid.uuid4().hex[:8]
    phases: dict[str, float] = {}

    def timed(name: str, work: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        result = work()
        phases[name] = phases.get(name, 0.0) + time.perf_counter() - started
        return result

    x = np.arange(40, dtype=float).reshape(-1, 2)
    model = LinearRegression().fit(x, x.sum(axis=1))
    started = time.perf_counter()
    experiment_id = timed("experiment", lambda: client.create_experiment(f"/bench/workload-{tag}"))

    def one_run(i: int) -> None:
        run_id = client.create_run(experiment_id, run_name=f"run-{i}").info.run_id
        client.log_param(run_id, "alpha", 0.1 * i)
        client.set_tag(run_id, "stage", "bench")
        for step in range(5):
            client.log_metric(run_id, "rmse", 1.0 / (step + 1), step=step)
        now = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric("loss", 1.0 / (k + 1), now, k) for k in range(20)],
            params=[Param(f"p{k}", str(k)) for k in range(5)],
            tags=[RunTag("batch", "yes")],
        )
        client.get_run(run_id)
        client.set_terminated(run_id)

    for i in range(runs):
        timed("runs and logging", lambda i=i: one_run(i))
    timed("search", lambda: client.search_runs([experiment_id], max_results=100))
    timed("search", lambda: client.search_experiments(max_results=50))
    name = f"bench-model-{tag}"

    def log_and_register() -> None:
        with mlflow.start_run(experiment_id=experiment_id):
            mlflow.sklearn.log_model(
                model, name="model", pip_requirements=["scikit-learn"], registered_model_name=name
            )

    timed("log and register a model", log_and_register)
    loaded = timed("load the model", lambda: mlflow.pyfunc.load_model(f"models:/{name}/1"))
    assert len(loaded.predict(x)) == len(x)
    return {"total_s": time.perf_counter() - started, "phases": phases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--runs", type=int, default=8)
    args = parser.parse_args()
    print(json.dumps(session(args.tracking_uri, args.runs)))


if __name__ == "__main__":
    main()
