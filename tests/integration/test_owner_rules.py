"""A creator's owner rule holds at once, costs the creation no SQL, and survives a SIGKILL.

The rule is journalled (fsync'd) in the gateway's data directory and decided on before the answer;
the database gets it afterwards, in a batch. The SIGKILL test holds the gateway's SQLite database
locked (a writer of its own, as a long migration or a stuck CLI would) so the gateway cannot have
stored the rule when it is killed; the next gateway on that data directory stores it at start.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from gateway.devstack import stop_child
from tests.helpers import (
    Gateway,
    MlflowServer,
    RedisServer,
    gateway_pair,
    start_gateway,
    start_redis,
    temporary_postgres_database,
)
from tests.integration.test_admin_api import call
from tests.integration.test_authn import basic, request
from tests.integration.test_hot_path import request_io

PASSWORD = "owner-rules-password-1"


def create(gw: Gateway, name: str, headers: dict[str, str]) -> str:
    status, _, body = request(
        gw,
        "/api/2.0/mlflow/experiments/create",
        "POST",
        {"Content-Type": "application/json", **headers},
        json.dumps({"name": name}).encode(),
    )
    assert status == 200, body
    return str(json.loads(body)["experiment_id"])


def read(gw: Gateway, experiment_id: str, headers: dict[str, str]) -> int:
    path = f"/api/2.0/mlflow/experiments/get?experiment_id={experiment_id}"
    return request(gw, path, headers=headers)[0]


def stored_rules(database: Path) -> set[tuple[str, str, str]]:
    with sqlite3.connect(database) as db:
        return set(db.execute("SELECT v0, v1, v2 FROM policy_rules WHERE ptype = 'p'").fetchall())


def new_user(gw: Gateway, name: str) -> dict[str, str]:
    assert call(gw, "POST", "/users", {"username": name, "password": PASSWORD})[0] == 201
    return basic(name, PASSWORD)


@pytest.fixture
def gateway_dir(tmp_path: Path) -> Path:
    return tmp_path / "gateway"


def test_the_creator_reads_at_once_and_the_creation_costs_no_sql(
    mlflow_server: MlflowServer, redis_server: RedisServer, gateway_dir: Path
) -> None:
    gw = start_gateway(mlflow_server.url, redis_server.url, gateway_dir)
    try:
        alice = new_user(gw, "owner-alice")
        assert (
            request(gw, "/api/2.0/mlflow/experiments/search?max_results=1", headers=alice)[0] == 200
        )
        before = request_io(gw)
        experiment_id = create(gw, f"owner-{time.time_ns()}", alice)
        spent = request_io(gw).get("sql", 0) - before.get("sql", 0)
        assert spent == 0  # the owner rule is not written inside the request
        assert read(gw, experiment_id, alice) == 200  # yet it decides the very next request
        deadline = time.monotonic() + 10
        wanted = ("user:owner-alice", f"experiment:{experiment_id}", "manage")
        while wanted not in stored_rules(gateway_dir / "gateway.db"):
            assert time.monotonic() < deadline, "the owner rule never reached the database"
            time.sleep(0.05)
    finally:
        gw.stop()
    assert not list((gateway_dir / "owner-rules").glob("*.jsonl"))  # nothing left to recover


def test_an_owner_rule_survives_a_sigkill_right_after_the_answer(
    mlflow_server: MlflowServer, redis_server: RedisServer, gateway_dir: Path
) -> None:
    gw = start_gateway(mlflow_server.url, redis_server.url, gateway_dir)
    database = gateway_dir / "gateway.db"
    bob = new_user(gw, "owner-bob")
    assert request(gw, "/api/2.0/mlflow/experiments/search?max_results=1", headers=bob)[0] == 200
    blocker = sqlite3.connect(database, isolation_level=None, timeout=30)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # no other writer until we let go
        experiment_id = create(gw, f"owner-kill-{time.time_ns()}", bob)
        assert read(gw, experiment_id, bob) == 200
        os.kill(gw.pid, signal.SIGKILL)
        gw.child.process.wait(timeout=10)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    wanted = ("user:owner-bob", f"experiment:{experiment_id}", "manage")
    assert wanted not in stored_rules(database)  # the answer went out before the store had it
    again = start_gateway(mlflow_server.url, redis_server.url, gateway_dir)
    try:
        assert wanted in stored_rules(database)  # recovered from the journal at start
        assert read(again, experiment_id, bob) == 200
    finally:
        again.stop()


def test_a_deletion_right_after_a_creation_removes_the_owner_rule(
    mlflow_server: MlflowServer, redis_server: RedisServer, gateway_dir: Path
) -> None:
    """The rule is stored before any later change on the replica, so the deletion finds it and
    a new model of the same name inherits nothing."""
    gw = start_gateway(mlflow_server.url, redis_server.url, gateway_dir)
    try:
        carol = new_user(gw, "owner-carol")
        name = f"owned-model-{time.time_ns()}"
        headers = {"Content-Type": "application/json", **carol}
        body = json.dumps({"name": name}).encode()
        path = "/api/2.0/mlflow/registered-models/"
        assert request(gw, path + "create", "POST", headers, body)[0] == 200
        assert request(gw, path + "delete", "DELETE", headers, body)[0] == 200
        assert ("user:owner-carol", f"registered_model:{name}", "manage") not in stored_rules(
            gateway_dir / "gateway.db"
        )
        status, _, answer = request(gw, f"{path}get?name={name}", headers=carol)
        assert status == 404, answer
    finally:
        gw.stop()


def test_the_other_replica_decides_on_the_owner_rule_before_the_creator_is_answered(
    mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    """No stickiness needed: the creator's next request may land on another replica."""
    redis = start_redis(tmp_path / "redis")
    try:
        with (
            temporary_postgres_database() as database,
            gateway_pair(mlflow_server.url, redis.url, tmp_path, GATEWAY_DATABASE_URL=database) as (
                a,
                b,
            ),
        ):
            dave = new_user(a, "owner-dave")
            for gw in (a, b):  # both have seen dave: the creation itself is all that differs
                path = "/api/2.0/mlflow/experiments/search?max_results=1"
                assert request(gw, path, headers=dave)[0] == 200
            for attempt in range(5):
                experiment_id = create(a, f"owner-pair-{attempt}-{time.time_ns()}", dave)
                assert read(b, experiment_id, dave) == 200
    finally:
        stop_child(redis.child)
