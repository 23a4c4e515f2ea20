"""Runs the attack catalogue (`tests.attacks`) against a gateway in front of MLflow on SQLite and
on MariaDB (test_attacks_releases.py: the oldest and the newest supported MLflow): every case in
`CASES`, and the /ajax-api/ twin of every /api/ case. What the outcomes mean, and how to add an
attack: `tests.attacks`.

Scenarios that need several steps (renames and deletes racing with policies, wildcard model names,
grants removed while their decisions are cached, ...) are tests after the table; they use the
same world.
"""

from __future__ import annotations

import gzip
import json
import re
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import pytest

from tests.attacks.catalogue import ALLOWED, CASES, DENIED, JSON, MV, RM, SET_TAG, Attack, E, _stage
from tests.attacks.world import REFUSED, Answer, World, _build, _diff, send
from tests.helpers import Gateway, MlflowServer, RedisServer, start_gateway

# -- the parameters: every case, and the /ajax-api/ twin of every /api/ case ----------------------


def ajax_twin(path: str) -> str | None:
    twin, count = re.subn(r"^(/*)(api)/", r"\1ajax-\2/", path, count=1, flags=re.I)
    return twin if count else None


def _params() -> list[Any]:
    params = []
    for case in CASES:
        variants = [case]
        if case.twin and (twin := ajax_twin(case.path)):
            variants.append(replace(case, name=case.name + " [ajax-api]", path=twin))
        for variant in variants:
            marks: list = []
            params.append(pytest.param(variant, id=variant.name, marks=marks))
    return params


# -- one gateway and one world per backend --------------------------------------------------------


BACKENDS = {
    "sqlite": "mlflow_server",
    "mariadb": "mariadb_mlflow_server",
    "oldest-mlflow": "oldest_mlflow_server",
    "newest-mlflow": "newest_mlflow_server",
}


@pytest.fixture(scope="module", params=["sqlite", "mariadb"])
def backend(request: pytest.FixtureRequest) -> MlflowServer:
    """The whole catalogue runs against the pinned MLflow on SQLite and on MariaDB (whose
    collations match names case-, accent- and trailing-space-insensitively) here, and against the
    oldest and the newest supported MLflow releases on SQLite in test_attacks_releases.py (a
    file of its own, so that the suite's parallel workers share the four setups out)."""
    return request.getfixturevalue(BACKENDS[request.param])


@pytest.fixture(scope="module")
def gw(
    backend: MlflowServer, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    data = tmp_path_factory.mktemp("gw-attacks")
    policy = data / "policy.csv"
    policy.write_text(
        "p, role:admin, *, *, allow\n"
        "p, group:authenticated, experiment_name:*, create, allow\n"
        "p, group:authenticated, registered_model:*, create, allow\n"
    )
    gateway = start_gateway(
        backend.url,
        redis_server.db_url(7),
        data,
        GATEWAY_POLICY_FILE=str(policy),
        GATEWAY_LOCKOUT_IP_THRESHOLD="100000",
    )
    users = (("alice", "alice-password-1", "team-a"), ("bob", "bob-password-12", "team-b"))
    users += (("carol", "carol-password-1", "team-c"),)
    # The CLI takes a second a call: run the calls side by side.
    with ThreadPoolExecutor(4) as pool:
        done = [pool.submit(gateway.add_user, *user) for user in users]
        done.append(pool.submit(lambda: gateway.admin_token))
        for future in done:
            future.result()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def world(gw: Gateway, backend: MlflowServer) -> World:
    w = World(gw, backend.port, {"gw.port": str(gw.port)}, {"admin": gw.admin_token})
    with ThreadPoolExecutor(3) as pool:
        tokens = {u: pool.submit(gw.token, u, "attacks") for u in ("alice", "bob", "carol")}
        _build(w)
        w.tokens.update({user: future.result() for user, future in tokens.items()})
    return w


# -- the table ------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", _params())
def test_attack(case: Attack, world: World) -> None:
    cached, world.cached_snapshot = world.cached_snapshot, None
    fresh: dict[str, str] = {}
    for step in case.before:
        world.step(step, fresh)
    # Fill the placeholders first: fresh objects exist before the "before" snapshot.
    world.fill(case.path + json.dumps(case.body) + json.dumps(case.headers), fresh)
    reads_only = case.method in ("GET", "HEAD", "OPTIONS")
    check = not reads_only and case.expect != ALLOWED
    if reads_only and not fresh and not case.before:
        world.cached_snapshot = cached  # nothing this case does can change A's things
    before = None
    if check:
        before = (
            cached if cached is not None and not fresh and not case.before else world.snapshot()
        )

    answer = world.attack(case, fresh)

    problems = []
    if case.status is not None and answer.status != case.status:
        problems.append(f"expected status {case.status}")
    if case.expect == DENIED and answer.ok():
        problems.append("expected no 2xx")
    if case.expect != ALLOWED and answer.status >= 500:
        problems.append("a server error is a crash, not a refusal")
    if case.expect == ALLOWED and (not answer.ok() or REFUSED.lower() in answer.headers):
        problems.append("expected a 2xx the gateway did not refuse")
    if answer.ok() and case.who not in ("alice", "admin", "mlflow"):
        text = answer.body.decode("utf-8", "replace")
        leaked = [m for m in world.markers(fresh) if m in text]
        if leaked:
            problems.append(f"team A's {leaked} in the answer")
    if before is not None:
        after = world.snapshot()
        if after != before:
            problems.append(f"team A's things changed: {_diff(before, after)}")
        elif not problems:
            world.cached_snapshot = after
    for step in case.after:
        got = world.step(step, fresh)
        if step.status is not None and got.status != step.status:
            problems.append(f"after: {step.method} {step.path} -> {got}")
    assert not problems, f"{'; '.join(problems)}\nanswer: {answer}"


# -- multi-step scenarios -----------------------------------------------------------------------


def _policy_lines(gw: Gateway, *objects: str) -> list[str]:
    """The policy lines on any of ``objects``, from `mlflow-gateway policy list`."""
    lines = gw.cli("policy", "list").stdout.splitlines()
    return [line for line in lines if any(f", {obj}, " in line for obj in objects)]


def _status(world: World, who: str, method: str, path: str, payload: Any = None) -> int:
    port, auth = world.port_and_auth(who)
    body = None if payload is None else json.dumps(payload).encode()
    headers = auth + ([("Content-Type", JSON)] if body is not None else [])
    return send(port, method, path, headers, body).status


def _eventually(check: Any, seconds: float = 1.0) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _get_model(name: str) -> str:
    return f"{RM}/get?name={quote(name)}"


def test_renamed_model_keeps_its_rules_and_the_old_name_inherits_nothing(world: World) -> None:
    gw = world.gw
    old = f"attack-rename-{secrets.token_hex(3)}"
    new = old + "-renamed"
    world.call("POST", f"{RM}/create", {"name": old})
    gw.cli("policy", "add", "p", "group:team-a", f"registered_model:{old}", "manage")
    assert _eventually(lambda: _status(world, "alice", "GET", _get_model(old)) == 200)

    # bob cannot rename it (nor delete it) ...
    assert (
        _status(world, "bob", "POST", f"{RM}/rename", {"name": old, "new_name": "x" + old}) >= 300
    )
    assert _status(world, "bob", "DELETE", f"{RM}/delete", {"name": old}) >= 300
    assert _status(world, "admin", "GET", _get_model(old)) == 200

    # ... the admin renames it: team A's rules follow the model to its new name.
    world.call("POST", f"{RM}/rename", {"name": old, "new_name": new})
    lines = _policy_lines(gw, f"registered_model:{old}", f"registered_model:{new}")
    assert f"p, group:team-a, registered_model:{new}, manage, allow" in lines
    assert not [line for line in lines if f", registered_model:{old}, " in line]
    assert _status(world, "alice", "GET", _get_model(new)) == 200

    # bob takes the old name: he owns the new model, team A's old rules do not come back.
    assert _status(world, "bob", "POST", f"{RM}/create", {"name": old}) == 200
    assert _policy_lines(gw, f"registered_model:{old}") == [
        f"p, user:bob, registered_model:{old}, manage, allow"
    ]
    assert _status(world, "alice", "GET", _get_model(old)) >= 300
    assert _status(world, "bob", "GET", _get_model(new)) >= 300
    assert _status(world, "bob", "DELETE", f"{RM}/delete", {"name": new}) >= 300
    assert _status(world, "admin", "GET", _get_model(new)) == 200


def test_deleted_model_takes_its_rules_along(world: World) -> None:
    gw = world.gw
    name = f"attack-race-{secrets.token_hex(3)}"
    assert _status(world, "bob", "POST", f"{RM}/create", {"name": name}) == 200
    assert _policy_lines(gw, f"registered_model:{name}") == [
        f"p, user:bob, registered_model:{name}, manage, allow"
    ]
    gw.cli("policy", "add", "p", "user:alice", f"registered_model:{name}", "read")
    assert _eventually(lambda: _status(world, "alice", "GET", _get_model(name)) == 200)

    # bob deletes X: every rule on X goes with it ...
    assert _status(world, "bob", "DELETE", f"{RM}/delete", {"name": name}) == 200
    assert _policy_lines(gw, f"registered_model:{name}") == []
    # ... so alice's grant does not apply to a new X bob makes,
    assert _status(world, "bob", "POST", f"{RM}/create", {"name": name}) == 200
    assert _status(world, "alice", "GET", _get_model(name)) >= 300
    assert _status(world, "bob", "DELETE", f"{RM}/delete", {"name": name}) == 200

    # ... and bob's old ownership does not apply to a new X alice makes.
    assert _status(world, "alice", "POST", f"{RM}/create", {"name": name}) == 200
    assert _policy_lines(gw, f"registered_model:{name}") == [
        f"p, user:alice, registered_model:{name}, manage, allow"
    ]
    assert _status(world, "bob", "GET", _get_model(name)) >= 300
    assert (
        _status(world, "bob", "POST", f"{RM}/set-tag", {"name": name, "key": "k", "value": "v"})
        >= 300
    )
    assert (
        _status(world, "bob", "POST", f"{RM}/rename", {"name": name, "new_name": name + "-x"})
        >= 300
    )
    assert _status(world, "bob", "DELETE", f"{RM}/delete", {"name": name}) >= 300
    assert _status(world, "admin", "GET", _get_model(name)) == 200


@pytest.mark.parametrize(
    "grant",
    [
        pytest.param(("p", "user:bob", "experiment:{a}", "read"), id="p rule"),
        pytest.param(("g", "user:bob", "group:team-a"), id="g grouping"),
    ],
)
def test_removed_grant_stops_working_on_the_next_request(
    world: World, grant: tuple[str, ...]
) -> None:
    line = tuple(part.format(a=world.values["a.exp"]) for part in grant)
    read_a = E + world.values["a.exp"]
    assert _status(world, "bob", "GET", read_a) == 404
    world.gw.cli("policy", "add", *line)
    assert _eventually(lambda: _status(world, "bob", "GET", read_a) == 200)
    # The decision is cached now; removing the grant must drop it at once.
    assert _status(world, "bob", "GET", read_a) == 200
    world.gw.cli("policy", "remove", *line)
    assert _eventually(lambda: _status(world, "bob", "GET", read_a) == 404, seconds=1.0)


@pytest.mark.parametrize(
    ("how", "name"),
    [
        pytest.param("create", "<prefix>-*", id="bob creates a model named <prefix>-*"),
        pytest.param("rename", "<prefix>-*", id="bob renames his model to <prefix>-*"),
        pytest.param("create", "*", id="bob creates a model named *"),
    ],
)
def test_model_named_with_a_wildcard_grants_nothing_else(world: World, how: str, name: str) -> None:
    wildcard = name.replace("<prefix>", world.values["a.model"].rsplit("-", 1)[0])
    try:
        # Refusing such a name is one fix, so the answers to these are not judged; only that
        # A's model stays out of bob's reach.
        if how == "create":
            _status(world, "bob", "POST", f"{RM}/create", {"name": wildcard})
        else:
            own = f"attack-bob-{secrets.token_hex(3)}"
            assert _status(world, "bob", "POST", f"{RM}/create", {"name": own}) == 200
            _status(world, "bob", "POST", f"{RM}/rename", {"name": own, "new_name": wildcard})
        assert _status(world, "bob", "GET", _get_model(world.values["a.model"])) >= 300
        assert (
            _status(
                world,
                "bob",
                "POST",
                f"{RM}/set-tag",
                {"name": world.values["a.model"], "key": "k", "value": "v"},
            )
            >= 300
        )
    finally:
        # Deleting the model drops the rules on exactly its name: the wildcard grant goes too
        # (and, for '*', the rule that lets everyone create models: see the next test).
        _status(world, "admin", "DELETE", f"{RM}/delete", {"name": wildcard})
        if wildcard == "*":
            world.gw.cli(
                "policy", "add", "p", "group:authenticated", "registered_model:*", "create"
            )


def test_deleting_a_model_named_star_leaves_other_rules_alone(world: World) -> None:
    try:
        _status(world, "admin", "POST", f"{RM}/create", {"name": "*"})
        _status(world, "admin", "DELETE", f"{RM}/delete", {"name": "*"})
        mine = {"name": f"attack-after-star-{secrets.token_hex(3)}"}
        assert _status(world, "alice", "POST", f"{RM}/create", mine) == 200
    finally:
        _status(world, "admin", "DELETE", f"{RM}/delete", {"name": "*"})
        world.gw.cli("policy", "add", "p", "group:authenticated", "registered_model:*", "create")


# -- what the caller may not read answers exactly like a missing object --------------------------


def _answer(world: World, who: str, method: str, path: str, payload: Any = None) -> Answer:
    port, auth = world.port_and_auth(who)
    body = None if payload is None else json.dumps(payload).encode()
    headers = auth + ([("Content-Type", JSON)] if body is not None else [])
    return send(port, method, world.fill(path, {}), headers, body)


MISSING_RUN = "0" * 31 + "f"
MISSING_LM = "m-" + "0" * 31 + "f"
MISSING_TRACE = "tr-" + "0" * 31 + "f"
MISSING_DS = "d-" + "0" * 31 + "f"


@pytest.mark.parametrize(
    ("what", "method", "template", "payload", "foreign", "missing"),
    [
        ("run", "GET", "/api/2.0/mlflow/runs/get?run_id={}", None, "<a.run>", MISSING_RUN),
        ("experiment", "GET", E + "{}", None, "<a.exp>", "987654321"),
        (
            "experiment by name",
            "GET",
            "/api/2.0/mlflow/experiments/get-by-name?experiment_name={}",
            None,
            "<a.name>",
            "no-such-experiment-x",
        ),
        ("logged model", "GET", "/api/2.0/mlflow/logged-models/{}", None, "<a.lm>", MISSING_LM),
        ("trace", "GET", "/api/3.0/mlflow/traces/{}", None, "<a.trace>", MISSING_TRACE),
        ("dataset", "GET", "/api/3.0/mlflow/datasets/{}", None, "<a.ds>", MISSING_DS),
        ("model", "GET", RM + "/get?name={}", None, "<a.model>", "no-such-model-x"),
        ("run, a write", "POST", SET_TAG, {"run_id": "{}", "key": "k", "value": "v"}, "<a.run>",
         MISSING_RUN),
        ("metric history", "GET", "/api/2.0/mlflow/metrics/get-history?run_id={}&metric_key=m",
         None, "<a.run>", MISSING_RUN),
    ],
)  # fmt: skip
def test_a_foreign_object_answers_exactly_like_a_missing_one(
    world: World, what: str, method: str, template: str, payload: Any, foreign: str, missing: str
) -> None:
    """bob holds no right on A's things: he cannot tell them from things that do not exist, and
    a missing object's answer is MLflow's own (read straight from MLflow, for an admin)."""
    foreign_id = world.fill(foreign, {})

    def ask(who: str, value: str) -> Answer:
        body = None if payload is None else json.loads(json.dumps(payload).replace("{}", value))
        return _answer(world, who, method, template.format(value), body)

    seen_foreign, seen_missing = ask("bob", foreign_id), ask("bob", missing)
    assert seen_foreign.status == seen_missing.status == 404, (seen_foreign, seen_missing)
    assert seen_foreign.body.replace(foreign_id.encode(), b"<id>") == seen_missing.body.replace(
        missing.encode(), b"<id>"
    )
    assert json.loads(seen_missing.body)["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    if method == "GET" and what != "metric history":  # MLflow answers 200 {} for that one
        by_mlflow = world.direct(method, template.format(missing))
        assert by_mlflow == (404, json.loads(seen_missing.body))


def test_a_caller_with_some_right_is_told_which_right_is_missing(world: World) -> None:
    """bob may edit <e.model> but not promote it: a 403 that says so (no masking)."""
    answer = _answer(
        world,
        "bob",
        "POST",
        MV + "/transition-stage",
        _stage(world.values["e.model"], "Production"),
    )
    assert answer.status == 403, answer
    assert "promote:production" in json.loads(answer.body)["message"]


def test_an_unresolvable_read_is_never_forwarded(world: World) -> None:
    """A read of an id MLflow does not know is answered by the gateway itself (never asked of
    MLflow): however MLflow would have read it, it cannot turn into someone's object."""
    answer = _answer(world, "bob", "GET", f"/api/2.0/mlflow/runs/get?run_id={MISSING_RUN}")
    assert answer.status == 404
    assert answer.headers.get(REFUSED.lower()) == "authorization"
    # An admin's read is forwarded: MLflow answers it.
    admin = _answer(world, "admin", "GET", f"/api/2.0/mlflow/runs/get?run_id={MISSING_RUN}")
    assert admin.status == 404 and REFUSED.lower() not in admin.headers


# -- orphans: objects MLflow places in no experiment ---------------------------------------------


def test_a_dataset_in_no_experiment_is_for_admins_and_orphan_grants_only(world: World) -> None:
    v = world.values
    created = world.call(
        "POST",
        "/api/3.0/mlflow/datasets/create",
        {"name": f"orphan-{secrets.token_hex(3)}", "experiment_ids": [v["a.exp"]]},
        who="alice",
    )
    dataset = created["dataset"]["dataset_id"]
    get = f"/api/3.0/mlflow/datasets/{dataset}"
    assert _status(world, "alice", "GET", get) == 200
    assert _status(world, "bob", "GET", get) == 404
    # Its owner takes it out of its only experiment: it now belongs to nobody's experiment.
    world.call("POST", get + "/remove-experiments", {"experiment_ids": [v["a.exp"]]}, who="alice")
    assert world.direct("GET", get + "/experiment-ids")[0] == 200
    for who in ("bob", "alice"):
        assert _status(world, who, "GET", get) == 404, who
        records = {"records": json.dumps([{"inputs": {"q": "x"}}])}
        assert _status(world, who, "POST", get + "/records", records) == 404, who
        adopt = {"experiment_ids": [v["b.exp"] if who == "bob" else v["a.exp"]]}
        assert _status(world, who, "POST", get + "/add-experiments", adopt) == 404, who
    assert world.direct("GET", get + "/experiment-ids")[1].get("experiment_ids") in (None, [])
    assert _status(world, "admin", "GET", get) == 200
    # An explicit grant on orphans lets team A back in.
    world.gw.cli("policy", "add", "p", "group:team-a", f"orphan:dataset:{dataset}", "edit")
    assert _eventually(lambda: _status(world, "alice", "GET", get) == 200)
    assert _status(world, "bob", "GET", get) == 404


def test_a_deleted_logged_model_is_judged_like_a_live_one(world: World) -> None:
    """The gateway's lookup asks MLflow as the request will (allow_deleted): a model the gateway
    never saw, created and deleted straight at MLflow, stays A's."""
    v = world.values
    status, created = world.direct(
        "POST", "/api/2.0/mlflow/logged-models", {"experiment_id": v["a.exp"], "name": "gone"}
    )
    assert status == 200
    model_id = created["model"]["info"]["model_id"]
    assert world.direct("DELETE", f"/api/2.0/mlflow/logged-models/{model_id}")[0] == 200
    path = f"/api/2.0/mlflow/logged-models/{model_id}?allow_deleted=true"
    answer = _answer(world, "bob", "GET", path)
    assert answer.status == 404 and model_id.encode() in answer.body
    assert b"gone" not in answer.body
    assert _status(world, "alice", "GET", path) == 200


# -- compressed OTLP exports ----------------------------------------------------------------------


def _otlp_protobuf(trace_hex: str) -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id = bytes.fromhex(trace_hex), secrets.token_bytes(8)
    span.name, span.start_time_unix_nano, span.end_time_unix_nano = "gz", 1, 2
    return request.SerializeToString()


def _export(world: World, who: str, body: bytes, encoding: str | None = None) -> Answer:
    port, auth = world.port_and_auth(who)
    headers = [
        *auth,
        ("Content-Type", "application/x-protobuf"),
        ("X-Mlflow-Experiment-Id", world.values["b.exp"]),
    ]
    if encoding:
        headers.append(("Content-Encoding", encoding))
    return send(port, "POST", "/v1/traces", headers, body)


def test_gzip_otlp_exports_work_and_every_member_is_judged(world: World) -> None:
    """The OpenTelemetry exporter's gzip setting works; a second gzip member (which MLflow
    decompresses too) cannot carry spans into A's trace."""
    mine = secrets.token_hex(16)
    answer = _export(world, "bob", gzip.compress(_otlp_protobuf(mine)), "gzip")
    assert answer.ok(), answer
    status, trace = world.direct("GET", f"/api/3.0/mlflow/traces/tr-{mine}")
    assert status == 200, trace
    a_trace = world.fill("<a.trace_hex>", {})
    before = world.direct("GET", f"/api/3.0/mlflow/traces/tr-{a_trace}")
    two = gzip.compress(_otlp_protobuf(secrets.token_hex(16))) + gzip.compress(
        _otlp_protobuf(a_trace)
    )
    answer = _export(world, "bob", two, "gzip")
    assert 400 <= answer.status < 500, answer
    assert world.direct("GET", f"/api/3.0/mlflow/traces/tr-{a_trace}") == before
