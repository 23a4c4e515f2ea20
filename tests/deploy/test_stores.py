"""The MLflow image's entrypoint on every backend store and artifact store, behind the gateway.

Four MLflow servers, each started by `mlflow/entrypoint.py` exactly as the image starts it (only
host, port and worker count differ), cover the three backend stores and the four artifact stores
(see conftest.py). For each, the real `mlflow` client talks only to a gateway (with a gateway
token), logs a run with an artifact and reads both back; then the test looks behind MLflow's back:
the run is a row in that database, the artifact's bytes are an object in that store.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.services import Deployment

mlflow = pytest.importorskip("mlflow")


@pytest.fixture
def in_tmp_cwd(tmp_path: Path) -> Iterator[Path]:
    old = Path.cwd()
    os.chdir(tmp_path)
    yield tmp_path
    os.chdir(old)


@pytest.mark.parametrize("name", ["sqlite+local", "postgresql+s3", "mysql+gcs", "sqlite+azure"])
def test_client_logs_and_reads_back_through_the_gateway(
    name: str,
    deployments: dict[str, Deployment],
    in_tmp_cwd: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    deployment = deployments[name]
    gateway = deployment.gateway
    assert gateway is not None
    gateway.add_user("dana", "dana-password-123")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", gateway.token("dana", f"deploy-{name}"))
    mlflow.set_tracking_uri(gateway.url)
    mlflow.set_experiment(f"deploy-{name}")

    payload = os.urandom(300_000)
    (in_tmp_cwd / "weights.bin").write_bytes(payload)
    with mlflow.start_run() as run:
        mlflow.log_param("store", name)
        mlflow.log_metric("loss", 0.25)
        mlflow.log_artifact("weights.bin")
    run_id = run.info.run_id

    client = mlflow.MlflowClient(gateway.url)
    stored = client.get_run(run_id)
    assert stored.data.params == {"store": name}
    assert stored.data.metrics == {"loss": 0.25}
    assert stored.info.user_id == "dana"
    # Served through MLflow: the client never needs the store's credentials.
    assert stored.info.artifact_uri.startswith("mlflow-artifacts:")
    assert [a.path for a in client.list_artifacts(run_id)] == ["weights.bin"]
    downloaded = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="weights.bin", dst_path=str(in_tmp_cwd / "dl")
    )
    assert (
        hashlib.sha256(Path(downloaded).read_bytes()).digest() == hashlib.sha256(payload).digest()
    )

    # Behind MLflow's back: the run is in that database, the bytes are in that store.
    assert run_id in deployment.run_ids_in_backend()
    keys = [key for key in deployment.keys_in_store() if run_id in key]
    assert keys and keys[0].endswith(f"{run_id}/artifacts/weights.bin"), keys
