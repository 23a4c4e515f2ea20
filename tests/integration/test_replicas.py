"""Three gateways behind a load balancer: one PostgreSQL database, one Redis, one MLflow.

They start together (the bootstrap admin and policy are made once, whoever wins), share the load,
and one is SIGKILLed mid-load: clients that retry on the next replica all succeed, every request
answered by a surviving replica has exactly one audit event, and a policy change made through one
replica's admin API changes the decisions of every other replica within a second.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from gateway.devstack import free_port, start_child
from tests.helpers import GATEWAY_BIN, Gateway, MlflowServer, RedisServer, gateway_env, wait_http
from tests.integration.test_authn import basic, request
from tests.integration.test_postgres_store import postgres_database  # noqa: F401 - a fixture

GET = "/api/2.0/mlflow/experiments/get?experiment_id=0"
AUDIT_DB = 6  # a Redis database of its own: this test reads the whole audit stream


def call(gw: Gateway, method: str, path: str, headers: dict, body: dict | None = None):
    payload = json.dumps(body).encode() if body is not None else None
    return request(gw, path, method, {**headers, "Content-Type": "application/json"}, payload, 10)


@pytest.fixture
def replicas(
    postgres_database: str,  # noqa: F811
    mlflow_server: MlflowServer,
    redis_server: RedisServer,
    tmp_path: Path,
) -> Iterator[list[Gateway]]:
    shared = {
        "GATEWAY_DATABASE_URL": postgres_database,
        "GATEWAY_ADMIN_PASSWORD": secrets.token_urlsafe(18),
    }
    redis_url = redis_server.db_url(AUDIT_DB)
    redis.Redis(port=redis_server.port, db=AUDIT_DB).flushdb()
    # Started together (so their bootstraps race for real), then waited for.
    started = []
    for i in range(3):
        port, data_dir = free_port(), tmp_path / f"replica-{i}"
        env = gateway_env(mlflow_server.url, redis_url, data_dir, port, **shared)
        child = start_child("gateway", [GATEWAY_BIN, "serve"], data_dir / "gateway.log", env)
        started.append(Gateway(child, port, env))
    for gw in started:
        wait_http(gw.url + "/.gateway/readyz", 60, gw.child)
    yield started
    for gw in started:
        gw.stop()


def user_token(gw: Gateway, name: str, *rules: dict) -> str:
    admin = basic("admin", gw.env["GATEWAY_ADMIN_PASSWORD"])
    password = secrets.token_urlsafe(18)
    assert (
        call(gw, "POST", "/.gateway/api/users", admin, {"username": name, "password": password})[0]
        == 201
    )
    for rule in rules:
        assert call(gw, "POST", "/.gateway/api/policy/rules", admin, rule)[0] == 200
    status, _, body = call(
        gw, "POST", "/.gateway/api/me/tokens", basic(name, password), {"name": "t"}
    )
    assert status in (200, 201), body
    return json.loads(body)["secret"]


def allowed(gw: Gateway, token: str) -> bool:
    return call(gw, "GET", GET, {"Authorization": f"Bearer {token}"})[0] == 200


def seconds_until_allowed(gw: Gateway, token: str, since: float) -> float:
    while time.monotonic() - since < 10:
        if allowed(gw, token):
            return time.monotonic() - since
        time.sleep(0.005)
    return float("inf")


def test_three_replicas_one_killed_mid_load(
    replicas: list[Gateway], redis_server: RedisServer
) -> None:
    first, second, victim = replicas
    load_token = user_token(
        first, "load", {"subject": "user:load", "object": "experiment:0", "action": "read"}
    )
    watcher = user_token(first, "watcher")
    admin = basic("admin", first.env["GATEWAY_ADMIN_PASSWORD"])
    answered: dict[int, list[str]] = {gw.port: [] for gw in replicas}
    failures: list[str] = []
    retried = [0]
    stop = threading.Event()

    def client(number: int) -> None:
        turn = number
        while not stop.is_set():
            for attempt in range(6):
                gw = replicas[(turn + attempt) % 3]
                try:
                    status, headers, _ = call(
                        gw, "GET", GET, {"Authorization": f"Bearer {load_token}"}
                    )
                except OSError:
                    status = 0
                if status == 200:
                    answered[gw.port].append(headers["X-Request-Id"])
                    retried[0] += attempt > 0
                    break
                if status not in (0, 502, 503, 504):
                    failures.append(f"HTTP {status}")
                    break
                time.sleep(0.05)
            else:
                failures.append("no replica answered")
            turn += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(2)
        os.kill(victim.pid, signal.SIGKILL)
        victim.child.process.wait()
        time.sleep(1)
        # A policy change through one replica reaches the other within a second.
        assert not allowed(second, watcher)
        rule = {"subject": "user:watcher", "object": "experiment:0", "action": "read"}
        assert call(first, "POST", "/.gateway/api/policy/rules", admin, rule)[0] == 200
        took = seconds_until_allowed(second, watcher, time.monotonic())
        time.sleep(2)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)

    assert took <= 1.0, f"the change reached the other replica after {took:.2f} s"
    assert failures == []
    assert answered[victim.port], "the killed replica had taken part in the load"
    assert retried[0] > 0, "some requests met the killed replica and were retried"
    survivors = set(answered[first.port] + answered[second.port])
    stream = redis.Redis(port=redis_server.port, db=AUDIT_DB)

    def audited() -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, fields in stream.xrange("mlgw:audit"):
            request_id = json.loads(fields[b"e"]).get("request_id")
            if request_id in survivors:
                counts[request_id] = counts.get(request_id, 0) + 1
        return counts

    deadline = time.monotonic() + 15
    while len(counts := audited()) < len(survivors) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert set(counts) == survivors, f"{len(survivors) - len(counts)} answered requests not audited"
    assert set(counts.values()) == {1}, "an event was stored twice"
