"""What the proxy does on the wire: header hygiene, raw paths, streaming, upstream failures."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest

from gateway.devstack import free_port
from tests.helpers import Gateway, RedisServer, start_gateway
from tests.integration.echo_upstream import EchoState, echo_upstream, silent_upstream


def _request(
    url: str, method: str = "GET", headers: dict[str, str] | None = None, data: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    # http.client rather than urllib: urllib overwrites the Connection header a test sends.
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, target, body=data, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def _raw_request(
    port: int, method: str, target: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    """The target exactly as given (urlsplit would take a fragment off)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def echo(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gateway, EchoState]]:
    with echo_upstream() as (url, state):
        gw = start_gateway(url, redis_server.url, tmp_path_factory.mktemp("gw-echo"))
        yield gw, state
        gw.stop()


def test_client_identity_and_hop_by_hop_headers_never_reach_upstream(
    echo: tuple[Gateway, EchoState],
) -> None:
    gw, _ = echo
    status, headers, body = _request(
        f"{gw.url}/api/2.0/mlflow/experiments/search",
        headers={
            "X-Forwarded-For": "6.6.6.6",
            "X-Forwarded-Host": "evil.example",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-User": "admin",
            "X-Remote-User": "admin",
            "X-Auth-Request-User": "admin",
            **gw.auth,
            "Cookie": "mlgw_session=should-not-pass; mlflow_ui_pref=dark",
            "Origin": "http://evil.example",
            "Connection": "X-Client-Hop",
            "X-Client-Hop": "1",
            "Proxy-Authorization": "Basic eDp5",
            "X-Request-Id": "client-chosen",
            "X-Custom": "passes",
        },
    )
    assert status == 200
    seen = json.loads(body)["headers"]
    upstream_authority = gw.env["GATEWAY_UPSTREAM_URL"].split("://", 1)[1]
    assert seen["host"] == [upstream_authority]
    assert seen["x-forwarded-for"] == ["127.0.0.1"]
    assert seen["x-forwarded-host"] == [f"127.0.0.1:{gw.port}"]
    assert seen["x-forwarded-proto"] == ["http"]
    for forbidden in (
        "x-forwarded-user",
        "x-remote-user",
        "x-auth-request-user",
        "authorization",
        "origin",
        "x-client-hop",
        "proxy-authorization",
    ):
        assert forbidden not in seen, forbidden
    assert seen["x-custom"] == ["passes"]
    # The gateway's own session cookie stays with the gateway; MLflow's cookies pass.
    assert seen["cookie"] == ["mlflow_ui_pref=dark"]
    # The gateway's request id, not the client's, is sent upstream and returned to the client.
    assert headers["X-Request-Id"] != "client-chosen"
    assert seen["x-request-id"] == [headers["X-Request-Id"]]
    # Hop-by-hop response headers (including those named in Connection) stop at the gateway.
    assert "X-Upstream-Hop" not in headers
    assert "Keep-Alive" not in headers
    assert headers["X-Upstream-Normal"] == "kept"


def test_forwarded_headers_believed_only_from_trusted_proxies(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    with echo_upstream() as (url, _):
        gw = start_gateway(url, redis_server.url, tmp_path, GATEWAY_TRUSTED_PROXIES="127.0.0.0/8")
        try:
            _, headers, body = _request(
                f"{gw.url}/api/2.0/mlflow/experiments/search",
                headers={
                    **gw.auth,
                    "X-Forwarded-For": "6.6.6.6, 203.0.113.7, 127.0.0.5",
                    "X-Forwarded-Proto": "https",
                    "X-Forwarded-Host": "mlflow.example.com",
                    "X-Request-Id": "lb-1234",
                },
            )
        finally:
            gw.stop()
    seen = json.loads(body)["headers"]
    # Rightmost untrusted hop is the client; what the client wrote left of it is ignored.
    assert seen["x-forwarded-for"] == ["203.0.113.7"]
    assert seen["x-forwarded-proto"] == ["https"]
    assert seen["x-forwarded-host"] == ["mlflow.example.com"]
    assert headers["X-Request-Id"] == "lb-1234"


def test_upstream_gets_the_target_as_judged_written_anew(echo: tuple[Gateway, EchoState]) -> None:
    """MLflow decodes the path once and parses the query: what it receives decodes to exactly
    what the gateway judged, in one canonical spelling (never the client's raw bytes)."""
    gw, _ = echo
    raw = "/api/2.0/mlflow-artifacts/artifacts/0/a%2Fb/c%20d%3F.txt?path=x%2Fy&path=z+w&e=%C3%A9"
    status, _, body = _request(gw.url + raw, headers=gw.auth)
    assert status == 200
    sent = json.loads(body)["path"]
    assert (
        sent
        == "/api/2.0/mlflow-artifacts/artifacts/0/a/b/c%20d%3F.txt?path=x/y&path=z%20w&e=%C3%A9"
    )
    path, _, query = sent.partition("?")
    assert unquote(path) == "/api/2.0/mlflow-artifacts/artifacts/0/a/b/c d?.txt"
    assert parse_qsl(query) == [("path", "x/y"), ("path", "z w"), ("e", "é")]


@pytest.mark.parametrize(
    "raw",
    [
        "/api/2.0/mlflow/experiments/get?experiment_id=0#x",
        "/api/2.0/mlflow/experiments/get?experiment_id=%FF",
        "/api/2.0/mlflow/experiments/get?experiment_id=0%00",
        "//api/2.0/mlflow/experiments/get?experiment_id=0",
    ],
)
def test_targets_mlflow_could_read_differently_never_reach_it(
    echo: tuple[Gateway, EchoState], raw: str
) -> None:
    gw, state = echo
    before = len(state.requests)
    status, headers, body = _raw_request(gw.port, "GET", raw, gw.auth)
    assert status == 400, body
    assert json.loads(body)["error_code"] == "BAD_REQUEST"
    assert headers.get("x-gateway-refused") == "target"
    assert len(state.requests) == before  # nothing was forwarded


def test_request_body_streams_to_upstream_before_client_finishes(
    echo: tuple[Gateway, EchoState],
) -> None:
    gw, state = echo
    state.first_body_bytes.clear()
    total = 4 * 1024 * 1024
    with socket.create_connection(("127.0.0.1", gw.port)) as conn:
        conn.sendall(
            b"PUT /api/2.0/mlflow-artifacts/artifacts/0/big HTTP/1.1\r\n"
            + f"Host: 127.0.0.1:{gw.port}\r\nContent-Length: {total}\r\n".encode()
            + f"Authorization: {gw.auth['Authorization']}\r\n\r\n".encode()
            + b"x" * (total // 2)
        )
        # Half the body is sent and the client holds the rest: the upstream must already see bytes.
        assert state.first_body_bytes.wait(10), "gateway buffered the request body"
        conn.sendall(b"y" * (total // 2))
        conn.settimeout(10)
        reply = conn.recv(65536)
    assert reply.startswith(b"HTTP/1.1 200")
    assert state.requests[-1].body_size == total
    assert state.requests[-1].headers["content-length"] == [str(total)]


def test_response_streams_to_client_before_upstream_finishes(
    echo: tuple[Gateway, EchoState],
) -> None:
    gw, state = echo
    state.release.clear()
    with socket.create_connection(("127.0.0.1", gw.port)) as conn:
        conn.sendall(
            "GET /api/2.0/mlflow-artifacts/artifacts/0/held HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{gw.port}\r\n"
            f"Authorization: {gw.auth['Authorization']}\r\n\r\n".encode()
        )
        conn.settimeout(10)
        received = b""
        while b"first---" not in received:
            chunk = conn.recv(65536)
            assert chunk, "connection closed before the first half arrived"
            received += chunk
        # The first half arrived while the upstream is still holding the rest.
        state.release.set()


def test_unknown_gateway_path_is_not_forwarded(echo: tuple[Gateway, EchoState]) -> None:
    gw, state = echo
    before = len(state.requests)
    status, _, body = _request(f"{gw.url}/.gateway/nope", headers=gw.auth)
    assert status == 404
    assert json.loads(body)["error_code"] == "ENDPOINT_NOT_FOUND"
    assert len(state.requests) == before


def test_upstream_down_gives_502_in_mlflow_shape_and_readyz_says_so(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    dead_port = free_port()
    gw = start_gateway(f"http://127.0.0.1:{dead_port}", redis_server.url, tmp_path)
    try:
        status, headers, body = _request(
            f"{gw.url}/api/2.0/mlflow/experiments/search", headers=gw.auth
        )
        assert status == 502
        error = json.loads(body)
        assert error["error_code"] == "TEMPORARILY_UNAVAILABLE"
        assert f"127.0.0.1:{dead_port}" in error["message"]
        assert "Traceback" not in error["message"]
        assert headers["X-Request-Id"] in error["message"]

        status, _, body = _request(f"{gw.url}/.gateway/readyz")
        assert status == 503
        ready = json.loads(body)
        assert ready["status"] == "not ready"
        assert ready["dependencies"]["mlflow"]["ready"] is False
        assert ready["dependencies"]["redis"]["ready"] is True
        assert ready["dependencies"]["database"]["ready"] is True

        _, _, metrics = _request(f"{gw.url}/.gateway/metrics")
        assert (
            b'gateway_upstream_errors_total{kind="ClientConnectorError",route_class="api"} 1.0'
            in metrics
        )
    finally:
        gw.stop()


def test_hung_upstream_gives_504_after_read_timeout(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    with silent_upstream() as url:
        gw = start_gateway(url, redis_server.url, tmp_path, GATEWAY_UPSTREAM_READ_TIMEOUT="1")
        try:
            auth = gw.auth
            started = time.monotonic()
            status, _, body = _request(f"{gw.url}/api/2.0/mlflow/experiments/search", headers=auth)
            elapsed = time.monotonic() - started
        finally:
            gw.stop()
    assert status == 504
    assert json.loads(body)["error_code"] == "DEADLINE_EXCEEDED"
    assert 0.9 < elapsed < 10


def test_redis_down_makes_readyz_fail(mlflow_server, tmp_path: Path) -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    gw = start_gateway(mlflow_server.url, dead_redis, tmp_path)
    try:
        status, _, body = _request(f"{gw.url}/.gateway/readyz")
        assert status == 503
        deps = json.loads(body)["dependencies"]
        assert deps["redis"]["ready"] is False
        assert deps["mlflow"]["ready"] is True
        # Liveness is about the process, not its dependencies.
        assert _request(f"{gw.url}/.gateway/healthz")[0] == 200
    finally:
        gw.stop()
