"""What the gateway asks MLflow to judge requests: nothing about things it saw being created.

The real mlflow client creates an experiment, a run, and a registered scikit-learn model, then
loads it back. The gateway learns each new object's experiment (and the experiment's name) from
MLflow's answer to the creation, so none of the session's requests costs an extra call to MLflow
for them; `gateway_mlflow_lookups_total` on /.gateway/metrics counts the calls it does make.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import pytest

from tests.helpers import Gateway, MlflowServer, RedisServer, start_gateway
from tests.integration.test_authn import request

mlflow = pytest.importorskip("mlflow")

PASSWORD = "carol-password-1"
POLICY = """
p, user:carol, experiment_name:/carol/*, manage
p, user:carol, registered_model:carol-*, manage
"""


@pytest.fixture(scope="module")
def gw(
    mlflow_server: MlflowServer, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    data = tmp_path_factory.mktemp("gw-lookups")
    gateway = start_gateway(mlflow_server.url, redis_server.db_url(13), data)
    gateway.add_user("carol", PASSWORD)
    (data / "policy.csv").write_text(POLICY)
    gateway.cli("policy", "import", str(data / "policy.csv"))
    yield gateway
    gateway.stop()


@pytest.fixture
def as_carol(gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "carol")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(gw.url)
    yield


def lookups(gw: Gateway) -> dict[str, float]:
    status, _, body = request(gw, "/.gateway/metrics")
    assert status == 200
    return {
        kind: float(value)
        for kind, value in re.findall(
            r'^gateway_mlflow_lookups_total\{kind="([a-z_]+)"\} (\S+)$',
            body.decode(),
            re.MULTILINE,
        )
    }


def test_a_session_costs_no_lookups_for_what_it_created(gw: Gateway, as_carol: None) -> None:
    from sklearn.linear_model import LinearRegression

    before = lookups(gw)
    experiment_id = mlflow.MlflowClient().create_experiment("/carol/lookups")
    with mlflow.start_run(experiment_id=experiment_id):
        mlflow.log_param("alpha", 0.5)
        mlflow.log_metric("rmse", 0.25)
        model = LinearRegression().fit(np.array([[1.0], [2.0]]), np.array([2.0, 4.0]))
        mlflow.sklearn.log_model(model, name="model", registered_model_name="carol-model")
    loaded = mlflow.pyfunc.load_model("models:/carol-model/1")
    assert loaded.predict(np.array([[3.0]]))[0] == pytest.approx(6.0)
    after = lookups(gw)

    made = {kind: after[kind] - before.get(kind, 0.0) for kind in after}
    for kind in ("experiment", "run", "logged_model"):
        assert made.get(kind, 0.0) == 0, (kind, made)
    # Who may load the logged model through its registered models: asked once, before the
    # version existed; the new version is added to that answer, not asked again.
    assert made.get("models_using", 0.0) <= 1, made


def test_an_object_the_gateway_did_not_see_created_is_looked_up_once(
    gw: Gateway, mlflow_server: MlflowServer, as_carol: None
) -> None:
    experiment_id = mlflow.MlflowClient().create_experiment("/carol/made-elsewhere")
    # Made directly in MLflow, as an operator's script inside the network might.
    run_id = mlflow.MlflowClient(tracking_uri=mlflow_server.url).create_run(experiment_id)
    run_id = run_id.info.run_id
    before = lookups(gw).get("run", 0.0)
    client = mlflow.MlflowClient()
    assert client.get_run(run_id).info.experiment_id == experiment_id
    client.log_metric(run_id, "rmse", 0.5)
    assert lookups(gw).get("run", 0.0) - before == 1
