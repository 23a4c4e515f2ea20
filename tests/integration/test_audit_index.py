"""What a request event names, and `audit search` answered from the index: against the real
gateway in front of the real MLflow, with the real Redis; the index compared with reading the
stream after paging, trimming, a spool replay and events older than the index."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from gateway.audit import index
from gateway.audit.review import AuditQuery, search
from gateway.audit.writer import STREAM, AuditWriter
from tests.helpers import Gateway, MlflowServer, RedisServer, create_experiment, start_gateway
from tests.integration.test_audit import wait_for
from tests.integration.test_authn import basic, bearer, request

ANN_PASSWORD = "ann-index-password-123"
GATEWAY_DB = 5
WRITER_DB = 6


def events(server: RedisServer, db: int) -> list[dict[str, Any]]:
    client = redis.Redis(port=server.port, db=db)
    return [json.loads(fields[b"e"]) for _, fields in client.xrange(STREAM)]


@pytest.fixture(scope="module")
def gw(
    mlflow_server: MlflowServer, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    redis.Redis(port=redis_server.port, db=GATEWAY_DB).flushdb()
    gateway = start_gateway(
        mlflow_server.url, redis_server.db_url(GATEWAY_DB), tmp_path_factory.mktemp("gw-index")
    )
    gateway.add_user("ann", ANN_PASSWORD)
    yield gateway
    gateway.stop()


def _event_of(gw: Gateway, server: RedisServer, request_id: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    def arrived() -> bool:
        found[:] = [e for e in events(server, GATEWAY_DB) if e.get("request_id") == request_id]
        return bool(found)

    wait_for(arrived)
    (event,) = found
    return event


def _call(
    gw: Gateway, path: str, method: str = "GET", headers: dict | None = None, body: Any = None
) -> tuple[int, str]:
    data = json.dumps(body).encode() if body is not None else None
    extra = {"Content-Type": "application/json"} if data is not None else {}
    status, answer, _ = request(gw, path, method, {**(headers or {}), **extra}, data)
    return status, answer["X-Request-Id"]


def test_request_events_name_what_was_asked(gw: Gateway, redis_server: RedisServer) -> None:
    admin = bearer(gw.admin_token)
    ann = basic("ann", ANN_PASSWORD)
    # An admin's lookup by name, of a name that exists and of one that does not (nothing
    # resolved, nothing judged): both name the experiment asked for.
    experiment = create_experiment(gw, "index-named")
    for name, resources in (("index-named", [f"experiment:{experiment}"]), ("index-none", [])):
        status, rid = _call(
            gw, f"/api/2.0/mlflow/experiments/get-by-name?experiment_name={name}", headers=admin
        )
        assert status == (200 if resources else 404)
        event = _event_of(gw, redis_server, rid)
        assert event["actor"]["admin"] and event["resources"] == resources
        assert event["params"] == {"experiment_name": name}
    # A model that does not exist: 404 for the admin (from MLflow) and for ann (from the gateway).
    for who, expected in ((admin, 404), (ann, 404)):
        status, rid = _call(
            gw, "/api/2.0/mlflow/registered-models/get?name=no-such-model", headers=who
        )
        assert status == expected
        assert _event_of(gw, redis_server, rid)["params"]["name"] == "no-such-model"
    # Searches name their filters.
    status, rid = _call(
        gw,
        "/api/2.0/mlflow/runs/search",
        "POST",
        admin,
        {"experiment_ids": ["0"], "filter": "metrics.acc > 0.9", "max_results": 5},
    )
    assert status == 200
    params = _event_of(gw, redis_server, rid)["params"]
    assert params == {"experiment_ids": ["0"], "filter": "metrics.acc > 0.9"}
    status, rid = _call(
        gw, "/api/2.0/mlflow/experiments/search?filter=name%20LIKE%20%27index%25%27", headers=ann
    )
    assert status == 200
    assert _event_of(gw, redis_server, rid)["params"] == {"filter": "name LIKE 'index%'"}
    # Bounded: a long value is cut, a long list capped.
    status, rid = _call(
        gw, f"/api/2.0/mlflow/experiments/get-by-name?experiment_name={'x' * 5000}", headers=admin
    )
    assert len(_event_of(gw, redis_server, rid)["params"]["experiment_name"]) == 256
    status, rid = _call(
        gw,
        "/api/2.0/mlflow/runs/search",
        "POST",
        admin,
        {"experiment_ids": [str(n) for n in range(60)]},
    )
    listed = _event_of(gw, redis_server, rid)["params"]["experiment_ids"]
    assert len(listed) == 21 and listed[-1] == "… and 40 more"


def test_no_secret_reaches_the_trail(gw: Gateway, redis_server: RedisServer) -> None:
    admin = bearer(gw.admin_token)
    token = gw.token("ann", "index-secret-test")
    experiment = create_experiment(gw, "index-secrets")
    _, _, body = request(
        gw,
        "/api/2.0/mlflow/runs/create",
        "POST",
        {**admin, "Content-Type": "application/json"},
        json.dumps({"experiment_id": experiment}).encode(),
    )
    run = json.loads(body)["run"]["info"]["run_id"]
    rids = [
        # A parameter whose value is a secret, a metric value: the run is named, not the values.
        _call(
            gw,
            "/api/2.0/mlflow/runs/log-parameter",
            "POST",
            admin,
            {"run_id": run, "key": "db_password", "value": "param-secret-value-42"},
        )[1],
        _call(
            gw,
            "/api/2.0/mlflow/runs/log-metric",
            "POST",
            admin,
            {"run_id": run, "key": "acc", "value": 0.918273645, "timestamp": 1, "step": 0},
        )[1],
        # A password in basic auth and in a sign-in form; a token used and refused.
        _call(gw, "/api/2.0/mlflow/experiments/get?experiment_id=0", headers=basic("ann", "nope"))[
            1
        ],
        _call(gw, "/api/2.0/mlflow/experiments/get?experiment_id=0", headers=bearer(token))[1],
        _call(gw, "/api/2.0/mlflow/experiments/get?experiment_id=0", headers=bearer(token + "x"))[
            1
        ],
    ]
    signed_in, _, _ = request(
        gw,
        "/.gateway/login",
        "POST",
        {"Content-Type": "application/x-www-form-urlencoded", "Origin": gw.url},
        f"username=ann&password={ANN_PASSWORD}&next=/".encode(),
    )
    assert signed_in in (302, 303)
    logged = _event_of(gw, redis_server, rids[0])
    assert logged["params"] == {"run_id": run}
    assert _event_of(gw, redis_server, rids[1])["params"] == {"run_id": run}
    for rid in rids[2:]:
        _event_of(gw, redis_server, rid)
    wait_for(lambda: any(e.get("event") == "login" for e in events(redis_server, GATEWAY_DB)))
    trail = json.dumps(events(redis_server, GATEWAY_DB))
    for secret in (
        "param-secret-value-42",
        "0.918273645",
        ANN_PASSWORD,
        token,
        gw.admin_token,
        "Basic ",
    ):
        assert secret not in trail


def _all_pages(port: int, query: AuditQuery, limit: int, indexed: bool) -> list[str]:
    """Every event ``search`` finds, page by page: their stream ids, newest first."""

    async def run() -> list[str]:
        client = aioredis.Redis(port=port, db=GATEWAY_DB)
        seen: list[str] = []
        cursor = None
        while True:
            page, cursor = await search(client, query, limit, cursor, indexed=indexed)
            assert len(page) <= limit
            seen += [e["stream_id"] for e in page]
            if cursor is None:
                await client.aclose()
                return seen

    return asyncio.run(run())


def test_index_search_through_the_gateway_matches_reading_the_stream(
    gw: Gateway, redis_server: RedisServer
) -> None:
    admin = bearer(gw.admin_token)
    ann = basic("ann", ANN_PASSWORD)
    ids = [create_experiment(gw, f"index-paging-{n}") for n in range(3)]
    gw.cli("policy", "add", "p", "user:ann", f"experiment:{ids[0]}", "read")
    sent = []
    for n in range(12):
        who = ann if n % 3 else admin
        path = f"/api/2.0/mlflow/experiments/get?experiment_id={ids[n % 3]}"
        sent.append(_call(gw, path, headers=who)[1])
    for rid in sent:
        _event_of(gw, redis_server, rid)
    port = redis_server.port
    for query, api in (
        (AuditQuery(actor="ann"), "actor=ann"),
        (AuditQuery(resource=f"experiment:{ids[0]}"), f"resource=experiment:{ids[0]}"),
        (AuditQuery(resource="experiment:*", action="read"), "resource=experiment:*&action=read"),
        (AuditQuery(actor="ann", decision="deny"), "actor=ann&decision=deny"),
    ):
        scanned = _all_pages(port, query, 1000, indexed=False)
        assert scanned, query
        assert _all_pages(port, query, 2, indexed=True) == scanned
        # The API, page by page, answers from the index what reading the stream finds.
        paged: list[str] = []
        cursor = ""
        while True:
            status, _, body = request(
                gw, f"/.gateway/api/audit?{api}&limit=3{cursor}", headers=admin
            )
            assert status == 200
            page = json.loads(body)
            paged += [e["stream_id"] for e in page["events"]]
            if not page["next_cursor"]:
                break
            cursor = f"&cursor={page['next_cursor']}"
        assert paged == scanned
    # The CLI reads the same index.
    out = gw.cli("audit", "search", "--actor", "ann", "--action", "read", "--json").stdout
    found = [json.loads(line)["stream_id"] for line in out.splitlines()]
    assert found == _all_pages(port, AuditQuery(actor="ann", action="read"), 50, False)


# -- the writer against a Redis database of its own ------------------------------------------


def _event(writer: AuditWriter, n: int) -> dict[str, Any]:
    event = writer.new("request")
    resource = f"experiment:{n % 7}"
    event.update(
        actor={"subject": ("alice", "bob", "carol")[n % 3]},
        decisions=[{"resource": resource, "action": ("read", "edit")[n % 2], "allowed": True}],
        resources=[resource],
        action=("read", "edit")[n % 2],
        decision=("allow", "deny")[n % 5 == 0],
    )
    return event


QUERIES = (
    AuditQuery(actor="alice"),
    AuditQuery(actor="bob", action="edit"),
    AuditQuery(resource="experiment:3"),
    AuditQuery(resource="experiment:*", decision="deny"),
    AuditQuery(resource="exp*:1", actor="bob"),
    AuditQuery(action="read", type="request"),
    AuditQuery(actor="nobody"),
)


async def _same_as_reading_the_stream(client: aioredis.Redis) -> int:
    compared = 0
    for query in QUERIES:
        for limit in (1, 4, 1000):
            pages: dict[bool, list[str]] = {}
            for indexed in (False, True):
                seen, cursor = [], None
                while True:
                    page, cursor = await search(client, query, limit, cursor, indexed=indexed)
                    seen += [e["stream_id"] for e in page]
                    if cursor is None:
                        break
                pages[indexed] = seen
            assert pages[True] == pages[False], (query, limit)
            compared += len(pages[True])
    return compared


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[aioredis.Redis]:
    redis.Redis(port=redis_server.port, db=WRITER_DB).flushdb()
    yield aioredis.Redis(port=redis_server.port, db=WRITER_DB)


async def _stale_members(client: aioredis.Redis) -> int:
    oldest = await client.xrange(STREAM, count=1)
    bound = "(" + index.member(oldest[0][0].decode())
    return sum(
        [
            await client.zlexcount(key, "-", bound)
            async for key, _ in client.zscan_iter(index.REGISTRY)
        ]
    )


def test_index_after_trimming(client: aioredis.Redis, tmp_path: Path) -> None:
    async def run() -> None:
        writer = AuditWriter(client, tmp_path / "spool", "trimmed", maxlen=300)
        writer.start()
        for n in range(2000):
            writer.emit(_event(writer, n))
            if n % 250 == 249:
                await asyncio.sleep(0.05)
        await writer.flush()
        await writer.stop()
        assert await client.xlen(STREAM) < 1000  # MAXLEN ~ trimmed the stream
        # The script trimmed the sets with it: no member without its event.
        assert await _stale_members(client) == 0
        assert await _same_as_reading_the_stream(client) > 0
        # Trimmed behind the index's back (XTRIM, or a script of an older gateway): the search
        # skips what is gone and trims the sets it read.
        await client.xtrim(STREAM, maxlen=50, approximate=False)
        assert await _stale_members(client) > 0
        found, _ = await search(client, AuditQuery(actor="alice"), 1000)
        assert found and len(found) <= 50
        assert await client.zlexcount(index.ACTOR + "alice", "-", "+") == len(found)
        assert await _same_as_reading_the_stream(client) > 0
        await client.aclose()

    asyncio.run(run())


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_spool_replayed_and_older_events_are_found(
    client: aioredis.Redis, redis_server: RedisServer, tmp_path: Path
) -> None:
    async def run() -> None:
        # Events older than the index (written before it existed): found by reading the stream.
        for n in range(30):
            await client.xadd(
                STREAM,
                {
                    "e": json.dumps(
                        {
                            **_event(AuditWriter(client, tmp_path, "old"), n),
                            "time": "2020-01-01T00:00:00+00:00",
                        }
                    )
                },
            )
        # A writer whose Redis is away spools; the next one replays the spool into Redis.
        away = aioredis.Redis(port=_closed_port(), socket_connect_timeout=0.2)
        spooling = AuditWriter(away, tmp_path / "spool", "spooled")
        spooling.start()
        for n in range(120):
            spooling.emit(_event(spooling, n))
        await spooling.flush()
        await spooling.stop()
        assert list((tmp_path / "spool").glob("*.jsonl"))
        await away.aclose()
        live = AuditWriter(client, tmp_path / "spool", "live")
        assert await live.replay() == 120
        live.start()
        for n in range(40):
            live.emit(_event(live, n))
        await live.flush()
        await live.stop()
        assert await client.zlexcount(index.ACTOR + "carol", "-", "+") == 40 + 13
        assert await _same_as_reading_the_stream(client) > 0
        found, _ = await search(client, AuditQuery(actor="alice"), 1000)
        assert {e["instance"] for e in found} == {"old", "spooled", "live"}
        await client.aclose()

    asyncio.run(run())
