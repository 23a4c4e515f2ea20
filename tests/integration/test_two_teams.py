"""Two teams, a release manager and a model-only reader, with the real mlflow client and the UI's
own calls: each team sees and changes only its own things; promotion rights hold."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pytest

from tests.helpers import Gateway, MlflowServer, RedisServer, start_gateway
from tests.integration.test_authn import basic, bearer, request

mlflow = pytest.importorskip("mlflow")
from mlflow.exceptions import MlflowException  # noqa: E402

POLICY = """
# team A and team B own experiments under their prefix and models with their prefix
p, group:team-a, experiment_name:/team-a/*, manage
p, group:team-b, experiment_name:/team-b/*, manage
p, group:team-a, registered_model:team-a-*, edit
p, group:team-b, registered_model:team-b-*, edit
# data scientists may promote to Staging, never to Production nor set the champion alias,
# even on models they created (and so manage)
p, group:team-a, registered_model:*, promote:staging
p, group:team-a, registered_model:*, promote:production, deny
p, group:team-a, registered_model:*, alias:champion, deny
# the release manager alone promotes to Production and names the champion
p, group:release, registered_model:*, read
p, group:release, registered_model:*, promote:production
p, group:release, registered_model:*, alias:champion
"""
PASSWORDS = {
    "alice": "alice-password-1",
    "bob": "bob-password-123",
    "rita": "rita-password-12",
    "mo": "mo-password-1234",
}


@pytest.fixture(scope="module")
def gw(
    mlflow_server: MlflowServer, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    data = tmp_path_factory.mktemp("gw-teams")
    gateway = start_gateway(mlflow_server.url, redis_server.db_url(8), data)
    gateway.add_user("alice", PASSWORDS["alice"], "team-a")
    gateway.add_user("bob", PASSWORDS["bob"], "team-b")
    gateway.add_user("rita", PASSWORDS["rita"], "release")
    gateway.add_user("mo", PASSWORDS["mo"])
    (data / "policy.csv").write_text(POLICY)
    gateway.cli("policy", "import", str(data / "policy.csv"))
    yield gateway
    gateway.stop()


class As:
    """Run mlflow client code as one user (basic auth, as MLFLOW_TRACKING_USERNAME/PASSWORD)."""

    def __init__(self, gw: Gateway, user: str) -> None:
        self.gw, self.user = gw, user

    def __enter__(self) -> mlflow.MlflowClient:
        self._saved = {
            k: os.environ.get(k)
            for k in (
                "MLFLOW_TRACKING_USERNAME",
                "MLFLOW_TRACKING_PASSWORD",
                "MLFLOW_TRACKING_TOKEN",
            )
        }
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
        os.environ["MLFLOW_TRACKING_USERNAME"] = self.user
        os.environ["MLFLOW_TRACKING_PASSWORD"] = PASSWORDS[self.user]
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
        mlflow.set_tracking_uri(self.gw.url)
        return mlflow.MlflowClient()

    def __exit__(self, *exc: object) -> None:
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def denied(call, *args, **kwargs) -> str:
    """Refused: 403 where the caller holds some right on the object, otherwise answered exactly
    as if the object did not exist (the other team cannot even tell it is there)."""
    with pytest.raises(MlflowException) as caught:
        call(*args, **kwargs)
    text = str(caught.value)
    assert "PERMISSION_DENIED" in text or "RESOURCE_DOES_NOT_EXIST" in text, caught.value
    return text


@pytest.fixture(scope="module")
def world(gw: Gateway, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from sklearn.linear_model import LinearRegression

    workdir = tmp_path_factory.mktemp("teams-work")
    ids: dict[str, str] = {}
    for user, name in (("alice", "/team-a/churn"), ("bob", "/team-b/fraud")):
        with As(gw, user):
            experiment = mlflow.set_experiment(name)
            with mlflow.start_run() as run:
                mlflow.log_param("team", user)
                mlflow.log_metric("auc", 0.9)
                artifact = workdir / f"{user}-notes.txt"
                artifact.write_text(f"{user}'s private notes")
                mlflow.log_artifact(str(artifact))
                model = LinearRegression().fit(np.array([[1.0], [2.0]]), np.array([2.0, 4.0]))
                info = mlflow.sklearn.log_model(model, name="model")
            ids[f"{user}_experiment"] = experiment.experiment_id
            ids[f"{user}_run"] = run.info.run_id
            ids[f"{user}_model_uri"] = info.model_uri
    return ids


def test_each_team_sees_only_its_own(gw: Gateway, world: dict[str, str]) -> None:
    with As(gw, "alice") as client:
        names = {e.name for e in client.search_experiments()}
        assert "/team-a/churn" in names and "/team-b/fraud" not in names
        runs = client.search_runs([world["alice_experiment"]])
        assert [r.info.run_id for r in runs] == [world["alice_run"]]
    with As(gw, "bob") as client:
        assert {e.name for e in client.search_experiments()} == {"/team-b/fraud"}


def test_the_other_team_can_neither_read_nor_change(
    gw: Gateway, world: dict[str, str], tmp_path: Path
) -> None:
    alice_run, alice_experiment = world["alice_run"], world["alice_experiment"]
    with As(gw, "bob") as client:
        denied(client.get_run, alice_run)
        denied(client.log_param, alice_run, "x", "1")
        denied(client.set_tag, alice_run, "owner", "bob")
        denied(client.delete_run, alice_run)
        denied(client.get_experiment, alice_experiment)
        # The client reads "does not exist" as None: to bob, team A's experiment is not there.
        assert client.get_experiment_by_name("/team-a/churn") is None
        denied(client.delete_experiment, alice_experiment)
        denied(client.rename_experiment, alice_experiment, "/team-b/stolen")
        denied(client.search_runs, [alice_experiment])
        denied(client.search_runs, [world["bob_experiment"], alice_experiment])
        denied(client.list_artifacts, alice_run)
        denied(
            mlflow.artifacts.download_artifacts,
            run_id=alice_run,
            artifact_path="alice-notes.txt",
            dst_path=str(tmp_path),
        )
        denied(client.create_run, alice_experiment)
    with As(gw, "alice") as client:
        assert client.get_run(alice_run).data.params == {"team": "alice"}
        assert client.get_experiment(alice_experiment).lifecycle_stage == "active"
        assert "x" not in client.get_run(alice_run).data.params
        assert "owner" not in client.get_run(alice_run).data.tags


def test_promotion_rights(gw: Gateway, world: dict[str, str]) -> None:
    with As(gw, "alice") as client:
        version = mlflow.register_model(world["alice_model_uri"], "team-a-churn")
        client.transition_model_version_stage("team-a-churn", version.version, "Staging")
        for stage in ("Production", "production", "PRODUCTION"):
            message = denied(
                client.transition_model_version_stage, "team-a-churn", version.version, stage
            )
            assert "promote:production" in message
        denied(client.set_registered_model_alias, "team-a-churn", "champion", version.version)
        client.set_registered_model_alias("team-a-churn", "candidate", version.version)
        assert client.get_model_version("team-a-churn", version.version).current_stage == "Staging"
    with As(gw, "bob") as client:
        denied(client.transition_model_version_stage, "team-a-churn", version.version, "Archived")
        denied(client.get_registered_model, "team-a-churn")
        assert "team-a-churn" not in {m.name for m in client.search_registered_models()}
        assert client.search_model_versions("name='team-a-churn'") == []
    with As(gw, "rita") as client:
        client.transition_model_version_stage("team-a-churn", version.version, "Production")
        client.set_registered_model_alias("team-a-churn", "champion", version.version)
        assert (
            client.get_model_version("team-a-churn", version.version).current_stage == "Production"
        )
    with As(gw, "alice") as client:
        # Taking it out of Production needs the Production right too.
        message = denied(
            client.transition_model_version_stage, "team-a-churn", version.version, "Staging"
        )
        assert "promote:production" in message


def test_model_only_reader_loads_the_champion_but_not_the_experiment(
    gw: Gateway, world: dict[str, str]
) -> None:
    _ensure_champion(gw, world)
    gw.cli("policy", "add", "p", "user:mo", "registered_model:team-a-churn", "read")
    with As(gw, "mo") as client:
        model = mlflow.pyfunc.load_model("models:/team-a-churn@champion")
        assert model.predict(np.array([[4.0]]))[0] == pytest.approx(8.0)
        denied(client.get_experiment, world["alice_experiment"])
        denied(client.get_run, world["alice_run"])
        denied(client.list_artifacts, world["alice_run"])


def _ensure_champion(gw: Gateway, world: dict[str, str]) -> None:
    """team-a-churn with a champion version, whether or not the promotion test ran first."""
    query = urlencode({"name": "team-a-churn", "alias": "champion"})
    if request(gw, f"/api/2.0/mlflow/registered-models/alias?{query}", headers=gw.auth)[0] == 200:
        return
    with As(gw, "alice"):
        version = mlflow.register_model(world["alice_model_uri"], "team-a-churn")
    with As(gw, "rita") as client:
        client.set_registered_model_alias("team-a-churn", "champion", version.version)


def test_the_ui_calls_are_judged_the_same_way(gw: Gateway, world: dict[str, str]) -> None:
    form = urlencode({"username": "bob", "password": PASSWORDS["bob"], "next": "/"}).encode()
    _, headers, _ = request(
        gw,
        "/.gateway/login",
        "POST",
        {"Content-Type": "application/x-www-form-urlencoded", "Origin": gw.url},
        form,
    )
    cookie = headers["Set-Cookie"].split(";", 1)[0]
    ui = {"Cookie": cookie, "Origin": gw.url, "Content-Type": "application/json"}

    status, _, body = request(
        gw, "/ajax-api/2.0/mlflow/experiments/search", "POST", ui, b'{"max_results": 25}'
    )
    assert status == 200
    assert {e["name"] for e in json.loads(body)["experiments"]} == {"/team-b/fraud"}
    status, _, _ = request(
        gw, f"/ajax-api/2.0/mlflow/runs/get?run_id={world['alice_run']}", headers=ui
    )
    assert status == 404  # nothing of team A's, not even that the run exists
    status, _, _ = request(
        gw, f"/ajax-api/2.0/mlflow/runs/get?run_id={world['bob_run']}", headers=ui
    )
    assert status == 200
    for run_id, expected in ((world["alice_run"], 404), (world["bob_run"], 200)):
        query = {
            "query": f'query {{ mlflowGetRun(input: {{runId: "{run_id}"}}) {{ run {{ info {{ runName }} experiment {{ name }} }} }} }}'
        }
        status, _, _ = request(gw, "/graphql", "POST", ui, json.dumps(query).encode())
        assert status == expected


def test_token_scopes_narrow_the_owner(gw: Gateway, world: dict[str, str]) -> None:
    read_only = gw.token("alice", "alice-read-only", "--scope", "read-only")
    run = f"/api/2.0/mlflow/runs/get?run_id={world['alice_run']}"
    assert request(gw, run, headers=bearer(read_only))[0] == 200
    status, headers, body = request(
        gw,
        "/api/2.0/mlflow/runs/log-metric",
        "POST",
        {**bearer(read_only), "Content-Type": "application/json"},
        json.dumps(
            {"run_id": world["alice_run"], "key": "m", "value": 1, "timestamp": 0, "step": 0}
        ).encode(),
    )
    assert status == 403
    assert "scope" in json.loads(body)["message"]
    assert headers["X-Gateway-Refused"] == "authorization"

    with As(gw, "alice") as client:
        other = client.create_experiment("/team-a/other")
    one_experiment = gw.token(
        "alice", "alice-one", "--scope", f"experiment:{world['alice_experiment']}"
    )
    assert request(gw, run, headers=bearer(one_experiment))[0] == 200
    assert (
        request(
            gw,
            f"/api/2.0/mlflow/experiments/get?experiment_id={other}",
            headers=bearer(one_experiment),
        )[0]
        == 403
    )
    # A scope never widens: the owner's own rights still apply (she has none on bob's run).
    assert (
        request(
            gw,
            f"/api/2.0/mlflow/runs/get?run_id={world['bob_run']}",
            headers=bearer(one_experiment),
        )[0]
        == 404
    )
    # Basic auth with the token as password behaves the same.
    assert request(gw, run, headers=basic("alice", one_experiment))[0] == 200


def test_a_scoped_token_sees_only_its_scope_in_lists_too(
    gw: Gateway, world: dict[str, str]
) -> None:
    with As(gw, "alice") as client:
        client.get_experiment_by_name("/team-a/other") or client.create_experiment("/team-a/other")
    one = gw.token("alice", "alice-one-list", "--scope", f"experiment:{world['alice_experiment']}")
    status, _, body = request(
        gw, "/api/2.0/mlflow/experiments/search?max_results=100", headers=bearer(one)
    )
    assert status == 200
    assert {e["name"] for e in json.loads(body)["experiments"]} == {"/team-a/churn"}
    # An admin's scoped token is narrowed like anyone's.
    admin_scoped = gw.token(
        "admin", "admin-scoped", "--scope", f"experiment:{world['bob_experiment']}"
    )
    status, _, body = request(
        gw, "/api/2.0/mlflow/experiments/search?max_results=100", headers=bearer(admin_scoped)
    )
    assert {e["name"] for e in json.loads(body)["experiments"]} == {"/team-b/fraud"}
    status, _, _ = request(
        gw, f"/api/2.0/mlflow/runs/get?run_id={world['alice_run']}", headers=bearer(admin_scoped)
    )
    assert status == 403


def test_protected_aliases_ignore_letter_case(gw: Gateway, world: dict[str, str]) -> None:
    _ensure_champion(gw, world)
    with As(gw, "alice") as client:
        for spelling in ("Champion", "CHAMPION"):
            denied(client.set_registered_model_alias, "team-a-churn", spelling, "1")
