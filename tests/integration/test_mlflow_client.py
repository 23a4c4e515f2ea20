"""The product brief's client code, unchanged but for the URL, through the gateway."""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import Gateway, MlflowServer, RedisServer, start_gateway

mlflow = pytest.importorskip("mlflow")


def _metric_total(gateway: Gateway, route_class: str) -> float:
    with urllib.request.urlopen(f"{gateway.url}/.gateway/metrics") as response:
        text = response.read().decode()
    pattern = re.compile(
        r'^gateway_requests_total\{[^}]*route_class="' + route_class + r'"[^}]*\} (\S+)$', re.M
    )
    return sum(float(value) for value in pattern.findall(text))


@pytest.fixture
def in_tmp_cwd(tmp_path: Path):
    old = Path.cwd()
    os.chdir(tmp_path)
    yield tmp_path
    os.chdir(old)


def test_brief_client_workflow_through_gateway(
    gateway: Gateway, in_tmp_cwd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.linear_model import LinearRegression

    gateway.add_user("alice", "alice-password-123")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", gateway.token("alice", "notebook"))
    artifacts_before = _metric_total(gateway, "artifacts")
    mlflow.set_tracking_uri(gateway.url)
    mlflow.set_experiment("brief-workflow")

    x = np.array([[1.0], [2.0], [3.0], [4.0]])
    y = np.array([2.0, 4.0, 6.0, 8.0])
    model = LinearRegression().fit(x, y)

    # The client claims to be someone else; the gateway records who really did it.
    with mlflow.start_run(tags={"mlflow.user": "mallory"}) as run:
        mlflow.log_param("alpha", 0.5)
        mlflow.log_metric("rmse", 0.78)
        with open("model.pkl", "wb") as f:
            pickle.dump(model, f)
        mlflow.log_artifact("model.pkl")
        mlflow.sklearn.log_model(model, name="model")

    client = mlflow.MlflowClient()
    stored = client.get_run(run.info.run_id)
    assert stored.data.params == {"alpha": "0.5"}
    assert stored.data.metrics == {"rmse": 0.78}
    assert stored.info.user_id == "alice"
    assert stored.data.tags["mlflow.user"] == "alice"
    assert "model.pkl" in [a.path for a in client.list_artifacts(run.info.run_id)]

    version = mlflow.register_model(model_uri=f"runs:/{run.info.run_id}/model", name="my_model")
    client.transition_model_version_stage(
        name="my_model", version=version.version, stage="Production"
    )
    assert client.get_model_version("my_model", version.version).current_stage == "Production"

    loaded = mlflow.pyfunc.load_model("models:/my_model/production")
    prediction = loaded.predict(np.array([[10.0]]))
    assert prediction[0] == pytest.approx(20.0)

    downloaded = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="model.pkl", dst_path=str(in_tmp_cwd / "dl")
    )
    with open(downloaded, "rb") as f:
        assert pickle.load(f).predict(np.array([[5.0]]))[0] == pytest.approx(10.0)

    # The artifacts went through the gateway, not around it.
    assert _metric_total(gateway, "artifacts") > artifacts_before


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.mark.slow
def test_200mb_artifact_round_trip_streams_with_bounded_memory(
    mlflow_server: MlflowServer,
    redis_server: RedisServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A fresh gateway, so its peak RSS (VmHWM) covers this transfer alone.
    gateway = start_gateway(mlflow_server.url, redis_server.url, tmp_path / "gw")
    try:
        big = tmp_path / "big.bin"
        with big.open("wb") as f:
            for _ in range(200):
                f.write(os.urandom(1024 * 1024))
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", gateway.admin_token)
        # Start the peak (VmHWM) afresh: start-up work (e.g. hashing the bootstrap admin's
        # password with argon2, 64 MiB by design) must not count as transfer memory.
        Path(f"/proc/{gateway.pid}/clear_refs").write_text("5")
        baseline_kib = gateway.rss_kib("VmRSS")

        mlflow.set_tracking_uri(gateway.url)
        mlflow.set_experiment("big-artifacts")
        with mlflow.start_run() as run:
            mlflow.log_artifact(str(big))
        downloaded = mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path="big.bin", dst_path=str(tmp_path / "dl")
        )

        assert Path(downloaded).stat().st_size == 200 * 1024 * 1024
        assert _sha256_of(Path(downloaded)) == _sha256_of(big)
        growth_mib = (gateway.rss_kib("VmHWM") - baseline_kib) / 1024
        print(f"gateway peak RSS growth during 200 MiB round trip: {growth_mib:.1f} MiB")
        # Buffering the body would cost ≥ 200 MiB; streaming costs a few chunk buffers.
        assert growth_mib < 40, f"gateway peak RSS grew by {growth_mib:.1f} MiB"
    finally:
        gateway.stop()
        for stored in mlflow_server.artifacts_dir.rglob("big.bin"):
            stored.unlink()
