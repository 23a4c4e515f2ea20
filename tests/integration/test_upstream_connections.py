"""Upstream keep-alive is on by default, because MLflow's connections have TCP_NODELAY.

With Nagle's algorithm on, MLflow's answer on a reused connection waits for the gateway's delayed
ACK (~40 ms a request). uvicorn 0.55 (pinned for the MLflow image and the dev stack) binds its
multi-worker socket as TCP, so asyncio sets TCP_NODELAY on every accepted connection; the
gateway then reuses its upstream connections (idle ones are given up before uvicorn's 5 s).
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.diagnose import _remote_tcp_nodelay
from gateway.devstack import stop_child
from tests.helpers import MlflowServer, RedisServer, start_gateway, start_mlflow
from tests.integration.echo_upstream import echo_upstream


@pytest.fixture(scope="module")
def multi_worker_mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    server = start_mlflow(tmp_path_factory.mktemp("mlflow-workers"), workers=2)
    yield server
    stop_child(server.child)


def test_a_multi_worker_mlflow_sets_tcp_nodelay(multi_worker_mlflow: MlflowServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", multi_worker_mlflow.port, timeout=30)
    try:
        for _ in range(2):  # a reused keep-alive connection, as the gateway's pool uses it
            conn.request("GET", "/health")
            assert conn.getresponse().read() == b"OK"
        client_port = conn.sock.getsockname()[1]
        nodelay = _remote_tcp_nodelay(
            multi_worker_mlflow.child.process.pid, multi_worker_mlflow.port, client_port
        )
    finally:
        conn.close()
    assert nodelay == 1


def test_the_gateway_reuses_upstream_connections_by_default(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    with echo_upstream() as (url, state):
        gw = start_gateway(url, redis_server.url, tmp_path)
        try:
            for _ in range(5):
                conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
                conn.request("GET", "/health", headers=gw.auth)
                assert conn.getresponse().status == 200
                conn.close()
        finally:
            gw.stop()
    ports = {r.client_port for r in state.requests if r.path == "/health"}
    assert len([r for r in state.requests if r.path == "/health"]) == 5
    assert len(ports) == 1, ports  # five requests, one upstream connection
