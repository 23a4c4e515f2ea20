"""The audit trail with a real Redis of its own: every request recorded, Redis killed mid-load,
the gateway killed while spooling, tampering caught, paging stable under concurrent writes."""

from __future__ import annotations

import json
import signal
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.helpers import (
    Gateway,
    MlflowServer,
    RedisServer,
    start_gateway,
    start_redis,
)
from tests.integration.test_authn import basic, bearer, request

STREAM = "mlgw:audit"


def stream_events(server: RedisServer) -> list[dict]:
    client = redis.Redis(port=server.port)
    return [json.loads(fields[b"e"]) for _, fields in client.xrange(STREAM)]


def request_events(server: RedisServer) -> list[dict]:
    return [e for e in stream_events(server) if e["type"] == "request"]


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError("condition not met in time")


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = start_redis(tmp_path / "redis")
    yield server
    server.child.process.kill()
    server.child.process.wait()


@pytest.fixture
def gw(mlflow_server: MlflowServer, own_redis: RedisServer, tmp_path: Path) -> Iterator[Gateway]:
    gateway = start_gateway(mlflow_server.url, own_redis.url, tmp_path / "gw")
    gateway.add_user("ann", "ann-password-123")
    yield gateway
    gateway.stop()


def test_every_request_kind_leaves_exactly_one_event(gw: Gateway, own_redis: RedisServer) -> None:
    admin = bearer(gw.admin_token)
    ann = basic("ann", "ann-password-123")
    # An allowed read, a refused read, an unauthenticated call, a gateway page, an unknown route.
    requests = [
        ("GET", "/api/2.0/mlflow/experiments/get?experiment_id=0", admin, 200),
        # ann holds no right on it: answered as if it did not exist, and the trail says why.
        ("GET", "/api/2.0/mlflow/experiments/get?experiment_id=0", ann, 404),
        ("GET", "/api/2.0/mlflow/experiments/get?experiment_id=0", {}, 401),
        ("GET", "/.gateway/login", {}, 200),
        ("GET", "/api/2.0/mlflow/not-a-route", admin, 403),
    ]
    ids = []
    for method, path, headers, expected in requests:
        status, answer_headers, _ = request(
            gw, path, method, {**headers, "User-Agent": "audit-test"}
        )
        assert status == expected
        ids.append(answer_headers["X-Request-Id"])
    wait_for(
        lambda: len({e["request_id"] for e in request_events(own_redis)} & set(ids)) == len(ids)
    )
    by_id = {}
    for event in request_events(own_redis):
        if event["request_id"] in ids:
            assert event["request_id"] not in by_id, "two events for one request"
            by_id[event["request_id"]] = event
    allowed, refused, anonymous, page, unknown = (by_id[i] for i in ids)
    assert allowed["actor"]["subject"] == "admin" and allowed["actor"]["method"] == "token"
    assert allowed["actor"]["token_id"]
    assert allowed["operation"] == "GetExperiment"
    assert allowed["resources"] == ["experiment:0"]
    assert allowed["decision"] == "allow" and allowed["upstream_status"] == 200
    assert allowed["client"] == {"ip": "127.0.0.1", "user_agent": "audit-test"}
    assert allowed["decisions"][0]["rule"] == "p, role:admin, *, *, allow"
    assert refused["actor"]["subject"] == "ann" and refused["decision"] == "deny"
    assert refused["decisions"][0] == {
        "resource": "experiment:0",
        "action": "read",
        "allowed": False,
        "rule": None,
    }
    assert "denied by default" in refused["reason"] and "answered as missing" in refused["reason"]
    assert refused["upstream_status"] is None
    assert anonymous["decision"] == "unauthenticated" and anonymous["reason"] == "no credentials"
    assert page["http"]["path"] == "/.gateway/login"
    assert unknown["decision"] == "deny" and "no route rule" in unknown["reason"]
    # Never a secret: no password, token or cookie anywhere in the trail.
    trail = json.dumps(stream_events(own_redis))
    assert "ann-password-123" not in trail and gw.admin_token not in trail


def test_sign_ins_and_promotions_are_answerable_from_the_cli(
    gw: Gateway, own_redis: RedisServer
) -> None:
    admin = {**bearer(gw.admin_token), "Content-Type": "application/json"}
    request(gw, "/api/2.0/mlflow/registered-models/create", "POST", admin, b'{"name": "fraud"}')
    experiment = json.loads(
        request(
            gw, "/api/2.0/mlflow/experiments/create", "POST", admin, b'{"name": "fraud-train"}'
        )[2]
    )["experiment_id"]
    run = json.loads(
        request(
            gw,
            "/api/2.0/mlflow/runs/create",
            "POST",
            admin,
            json.dumps({"experiment_id": experiment}).encode(),
        )[2]
    )["run"]["info"]["run_id"]
    request(
        gw,
        "/api/2.0/mlflow/model-versions/create",
        "POST",
        admin,
        json.dumps({"name": "fraud", "source": f"runs:/{run}/m", "run_id": run}).encode(),
    )
    status, _, _ = request(
        gw,
        "/api/2.0/mlflow/model-versions/transition-stage",
        "POST",
        admin,
        b'{"name": "fraud", "version": "1", "stage": "Production", "archive_existing_versions": true}',
    )
    assert status == 200
    request(
        gw,
        "/.gateway/login",
        "POST",
        {"Content-Type": "application/x-www-form-urlencoded", "Origin": gw.url},
        b"username=ann&password=wrong-password&next=/",
    )
    wait_for(
        lambda: any(
            e.get("operation") == "TransitionModelVersionStage" for e in request_events(own_redis)
        )
    )

    result = gw.cli(
        "audit",
        "search",
        "--resource",
        "registered_model:fraud",
        "--action",
        "promote:production",
        "--decision",
        "allow",
        "--json",
    )
    (event,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert event["actor"]["subject"] == "admin"
    assert event["params"]["stage"] == "Production"
    assert event["params"]["archive_existing_versions"] == "True"
    failures = gw.cli(
        "audit", "search", "--type", "security", "--actor", "ann", "--json"
    ).stdout.splitlines()
    login = json.loads(failures[0])
    assert login["event"] == "login" and login["outcome"] == "failure"
    # CLI changes are audited too, with the OS user who ran them.
    assert any(
        json.loads(line)["event"] == "user_created"
        for line in gw.cli("audit", "search", "--type", "security", "--json").stdout.splitlines()
    )
    csv_out = gw.cli("audit", "export", "--since", "1h", "--until", "0m", "--format", "csv").stdout
    assert csv_out.splitlines()[0].startswith("time,type,event,request_id,actor")
    assert "TransitionModelVersionStage" in csv_out
    assert gw.cli("audit", "verify").returncode == 0


def _load(gw: Gateway, n: int, latencies: list[float], errors: list[int]) -> None:
    auth = bearer(gw.admin_token)
    for _ in range(n):
        started = time.perf_counter()
        status, _, _ = request(gw, "/api/2.0/mlflow/experiments/get?experiment_id=0", "GET", auth)
        latencies.append(time.perf_counter() - started)
        if status != 200:
            errors.append(status)


def test_redis_killed_mid_load_loses_nothing(
    gw: Gateway, own_redis: RedisServer, tmp_path: Path
) -> None:
    baseline: list[float] = []
    _load(gw, 60, baseline, [])
    wait_for(lambda: len(request_events(own_redis)) >= 60)
    before = len(request_events(own_redis))

    latencies: list[float] = []
    errors: list[int] = []
    n = 300
    load = threading.Thread(target=_load, args=(gw, n, latencies, errors))
    load.start()
    wait_for(lambda: len(latencies) >= 50, interval=0.01)
    own_redis.child.process.send_signal(signal.SIGKILL)
    own_redis.child.process.wait()
    outage_started = len(latencies)
    wait_for(lambda: len(latencies) >= outage_started + 100, interval=0.01)
    restarted = start_redis(tmp_path / "redis", port=own_redis.port)
    own_redis.child = restarted.child
    load.join(120)
    assert errors == []

    wait_for(lambda: len(request_events(own_redis)) >= before + n, timeout=30)
    events = request_events(own_redis)
    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids)), "an event was stored twice"
    assert len(events) == before + n
    # In order: per instance, sequence numbers only go up in the stream.
    seqs = [e["seq"] for e in stream_events(own_redis) if e["instance"] == events[-1]["instance"]]
    assert seqs == sorted(seqs)
    assert gw.cli("audit", "verify").returncode == 0
    # Requests never waited for Redis: the outage costs a small margin at most.
    during = latencies[outage_started : outage_started + 100]
    assert statistics.median(during) < statistics.median(baseline) + 0.05


def test_gateway_killed_while_spooling_delivers_every_acknowledged_event(
    mlflow_server: MlflowServer, own_redis: RedisServer, tmp_path: Path
) -> None:
    data = tmp_path / "gw-spool"
    gateway = start_gateway(mlflow_server.url, own_redis.url, data)
    token = gateway.admin_token
    own_redis.child.process.send_signal(signal.SIGKILL)
    own_redis.child.process.wait()
    for _ in range(40):
        assert (
            request(
                gateway, "/api/2.0/mlflow/experiments/get?experiment_id=0", headers=bearer(token)
            )[0]
            == 200
        )
    spool = data / "audit-spool"

    def spooled() -> list[dict]:
        return [
            json.loads(line)
            for path in spool.glob("*.jsonl")
            for line in path.read_text().splitlines()
        ]

    wait_for(lambda: sum(e["type"] == "request" for e in spooled()) >= 40)
    acknowledged = {e["id"] for e in spooled()}
    gateway.child.process.send_signal(signal.SIGKILL)
    gateway.child.process.wait()

    restarted = start_redis(tmp_path / "redis", port=own_redis.port)
    own_redis.child = restarted.child
    again = start_gateway(mlflow_server.url, own_redis.url, data, port=gateway.port)
    try:
        wait_for(lambda: acknowledged <= {e["id"] for e in stream_events(own_redis)}, timeout=30)
        ids = [e["id"] for e in stream_events(own_redis)]
        assert len(ids) == len(set(ids))
        wait_for(lambda: not list(spool.glob("*.jsonl")))
        assert again.cli("audit", "verify").returncode == 0
    finally:
        again.stop()


def test_verify_catches_edits_and_deletions(gw: Gateway, own_redis: RedisServer) -> None:
    for _ in range(5):
        request(
            gw, "/api/2.0/mlflow/experiments/get?experiment_id=0", headers=bearer(gw.admin_token)
        )
    wait_for(lambda: len(request_events(own_redis)) >= 5)
    assert gw.cli("audit", "verify").returncode == 0
    client = redis.Redis(port=own_redis.port)
    entries = client.xrange(STREAM)
    stream_id, fields = entries[-2]
    event = json.loads(fields[b"e"])
    event["decision"] = "deny"  # rewrite history
    client.xdel(STREAM, stream_id)
    client.xadd(STREAM, {"e": json.dumps(event)})
    result = __import__("subprocess").run(
        [gw.child.process.args[0], "audit", "verify"], env=gw.env, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "altered" in result.stdout or "out of order" in result.stdout
    client.xdel(STREAM, entries[-4][0])
    result = __import__("subprocess").run(
        [gw.child.process.args[0], "audit", "verify"], env=gw.env, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "missing" in result.stdout


def test_paging_is_stable_under_concurrent_writes(gw: Gateway, own_redis: RedisServer) -> None:
    auth = bearer(gw.admin_token)
    for _ in range(60):
        request(gw, "/api/2.0/mlflow/experiments/get?experiment_id=0", headers=auth)
    wait_for(lambda: len(request_events(own_redis)) >= 60)
    expected = {e["id"] for e in stream_events(own_redis)}

    stop = threading.Event()

    def keep_writing() -> None:
        while not stop.is_set():
            request(gw, "/api/2.0/mlflow/experiments/get?experiment_id=0", headers=auth)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        seen: list[str] = []
        cursor = None
        while True:
            path = "/.gateway/api/audit?limit=7" + (f"&cursor={cursor}" if cursor else "")
            status, _, body = request(gw, path, headers=auth)
            assert status == 200
            page = json.loads(body)
            seen.extend(e["id"] for e in page["events"])
            cursor = page["next_cursor"]
            if not cursor:
                break
    finally:
        stop.set()
        writer.join()
    assert len(seen) == len(set(seen)), "a page repeated an event"
    assert expected <= set(seen), "paging skipped an event"
    assert request(gw, "/.gateway/api/audit", headers=basic("ann", "ann-password-123"))[0] == 403
