"""GATEWAY_CASBIN_MODEL decides, through real gateways in front of the real MLflow.

A site model whose effect is allow-override (`some(where (p.eft == allow))`) makes an allow + deny
pair on one experiment allow — in `policy check` and on a real request — while the shipped model
still denies. Two replicas on the casbin path share one PostgreSQL and one Redis: a change made on
either is decided by pycasbin on the other within a second, as a delta (no reload). A site model
with an extra matcher condition (a tenant in registered model names) confines rules to their tenant
on real requests and in searches. A model the gateway cannot serve stops it at start.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import (
    Gateway,
    MlflowServer,
    RedisServer,
    create_experiment,
    run_cli,
    start_gateway,
    temporary_postgres_database,
)
from tests.integration.test_admin_api import call
from tests.integration.test_authn import bearer, request

MODELS = Path(__file__).resolve().parents[1] / "unit" / "models"
ALLOW_OVERRIDE = MODELS / "allow_override.conf"
TENANT = MODELS / "tenant.conf"
WITHIN = 1.0
POLL = 0.02


@pytest.fixture(scope="module")
def site_pair(
    mlflow_server: MlflowServer, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gateway, Gateway]]:
    with temporary_postgres_database() as database:
        shared = {
            "GATEWAY_DATABASE_URL": database,
            "GATEWAY_CASBIN_MODEL": str(ALLOW_OVERRIDE),
            "GATEWAY_LOCKOUT_IP_THRESHOLD": "1000",
        }
        redis_url = redis_server.db_url(13)
        a = start_gateway(mlflow_server.url, redis_url, tmp_path_factory.mktemp("site-a"), **shared)
        b = start_gateway(mlflow_server.url, redis_url, tmp_path_factory.mktemp("site-b"), **shared)
        try:
            yield a, b
        finally:
            a.stop()
            b.stop()


@pytest.fixture(scope="module")
def tenant_gateway(
    mlflow_server: MlflowServer, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    gw = start_gateway(
        mlflow_server.url,
        redis_server.db_url(14),
        tmp_path_factory.mktemp("site-tenant"),
        GATEWAY_CASBIN_MODEL=str(TENANT),
        GATEWAY_LOCKOUT_IP_THRESHOLD="1000",
    )
    try:
        yield gw
    finally:
        gw.stop()


def seconds_until(condition: Callable[[], bool]) -> float:
    started = time.monotonic()
    while not condition():
        elapsed = time.monotonic() - started
        assert elapsed < WITHIN, f"not in effect after {elapsed:.2f} s"
        time.sleep(POLL)
    return time.monotonic() - started


def status_of(gw: Gateway, experiment: str, headers: dict[str, str]) -> int:
    return request(
        gw, f"/api/2.0/mlflow/experiments/get?experiment_id={experiment}", headers=headers
    )[0]


def check(gw: Gateway, *args: str) -> tuple[int, str]:
    result = run_cli("policy", "check", *args, env=gw.env)
    return result.returncode, (result.stdout + result.stderr).strip()


def log_of(gw: Gateway) -> str:
    return (Path(gw.env["GATEWAY_DATA_DIR"]) / "gateway.log").read_text()


def allow_and_deny(gw: Gateway, user: str, experiment: str) -> dict[str, str]:
    """``user`` (a new local user with a token) with an allow and a deny to read ``experiment``."""
    gw.add_user(user, "casbin-model-password-1")
    for effect in ("allow", "deny"):
        gw.cli("policy", "add", "p", user, f"experiment:{experiment}", "read", effect)
    return bearer(gw.token(user, f"{user}-ci"))


def test_allow_override_allows_the_pair_the_shipped_model_denies(
    gateway: Gateway, site_pair: tuple[Gateway, Gateway]
) -> None:
    site, other = site_pair
    # The shipped model: deny beats allow — on a real request and in `policy check`.
    shipped_experiment = create_experiment(gateway, f"casbin-shipped-{time.time_ns()}")
    dana = allow_and_deny(gateway, "dana", shipped_experiment)
    assert status_of(gateway, shipped_experiment, dana) == 404  # no right left: answered as missing
    code, out = check(gateway, "dana", f"experiment:{shipped_experiment}", "read")
    assert code == 1
    assert out == (
        f"deny: denied by rule 'p, user:dana, experiment:{shipped_experiment}, read, deny'"
    )
    assert (
        check(gateway, "dana", f"experiment:{shipped_experiment}", "read", "--engine", "casbin")[0]
        == 1
    )
    assert (
        check(gateway, "dana", f"experiment:{shipped_experiment}", "read", "--engine", "index")[0]
        == 1
    )

    # The site model: any allow allows.
    experiment = create_experiment(site, f"casbin-site-{time.time_ns()}")
    erin = allow_and_deny(site, "erin", experiment)
    seconds_until(lambda: status_of(other, experiment, erin) == 200)
    assert status_of(site, experiment, erin) == 200
    allowed = f"allow: allowed by rule 'p, user:erin, experiment:{experiment}, read, allow'"
    assert check(site, "erin", f"experiment:{experiment}", "read") == (0, allowed)
    # pycasbin itself, on the whole policy, agrees.
    assert check(site, "erin", f"experiment:{experiment}", "read", "--engine", "casbin") == (
        0,
        allowed,
    )
    # The index serves the shipped model only, and says so.
    code, out = check(site, "erin", f"experiment:{experiment}", "read", "--engine", "index")
    assert code == 2 and "decides only the shipped casbin model" in out
    # Still not edit: the allow is for read.
    assert status_of(site, experiment, erin) == 200
    assert check(site, "erin", f"experiment:{experiment}", "edit")[0] == 1

    # The console's and the API's explanation, and the audit event's deciding rule, are the
    # casbin path's.
    status, why = call(
        site, "GET", f"/policy/explain?user=erin&object=experiment:{experiment}&action=read"
    )
    assert status == 200 and why["allowed"] is True and why["rule"]["effect"] == "allow"
    status, who = call(site, "GET", f"/policy/who-can?object=experiment:{experiment}&action=read")
    assert "user:erin" in {h["subject"] for h in who["holders"]}
    status, _, page = request(
        site,
        f"/.gateway/admin/explain?user=erin&object=experiment:{experiment}&action=read",
        headers=site.auth,
    )
    text = page.decode()
    assert status == 200, text
    assert f"p, user:erin, experiment:{experiment}, read, allow" in text
    assert f"decided by pycasbin, on the site model {ALLOW_OVERRIDE}" in text

    def audited() -> bool:
        result = run_cli("audit", "search", "--actor", "erin", "--json", env=site.env)
        events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
        return any(
            d.get("allowed")
            and d.get("rule") == f"p, user:erin, experiment:{experiment}, read, allow"
            for e in events
            for d in e.get("decisions") or ()
        )

    deadline = time.monotonic() + 10
    while not audited():
        assert time.monotonic() < deadline, "no audit event with the casbin path's rule"
        time.sleep(0.2)


def test_a_tenant_condition_in_the_matcher_confines_rules_to_their_tenant(
    tenant_gateway: Gateway,
) -> None:
    """tests/unit/models/tenant.conf: outside admins, a rule reaches `<tenant>.<name>` only for
    members of group:tenant-<tenant> — a condition the shipped model does not have."""
    gw = tenant_gateway
    suffix = time.time_ns()
    acme, zeta, plain = f"acme.fraud-{suffix}", f"zeta.churn-{suffix}", f"plain-{suffix}"
    for name in (acme, zeta, plain):
        status, _, body = request(
            gw,
            "/api/2.0/mlflow/registered-models/create",
            "POST",
            {**gw.auth, "Content-Type": "application/json"},
            json.dumps({"name": name}).encode(),
        )
        assert status == 200, body
    # Group memberships as an IdP or the user store brings them, not `g` lines.
    gw.add_user("ann", "casbin-model-password-3", "ds", "tenant-acme")
    gw.cli("policy", "add", "p", "group:ds", "registered_model:*", "read")
    ann = bearer(gw.token("ann", "ann-ci"))

    def get(name: str) -> int:
        return request(gw, f"/api/2.0/mlflow/registered-models/get?name={name}", headers=ann)[0]

    assert get(acme) == 200 and get(plain) == 200
    assert get(zeta) == 404  # no right reaches it: answered as missing
    # Searches are filtered by the same decisions.
    status, _, body = request(
        gw, f"/api/2.0/mlflow/registered-models/search?filter=name+LIKE+'%25{suffix}'", headers=ann
    )
    assert status == 200, body
    assert sorted(m["name"] for m in json.loads(body)["registered_models"]) == sorted([acme, plain])
    # `policy check` answers on the active path, and pycasbin asked directly agrees.
    assert check(gw, "ann", f"registered_model:{acme}", "read")[0] == 0
    for engine in ((), ("--engine", "casbin")):
        code, out = check(gw, "ann", f"registered_model:{zeta}", "read", *engine)
        assert code == 1 and out.startswith("deny:"), out
    # A member of the other tenant (from the IdP: --group) is let in, admins always are.
    assert check(gw, "ann", f"registered_model:{zeta}", "read", "--group", "tenant-zeta")[0] == 0
    assert (
        request(gw, f"/api/2.0/mlflow/registered-models/get?name={zeta}", headers=gw.auth)[0] == 200
    )


def test_the_start_log_names_the_path(gateway: Gateway, site_pair: tuple[Gateway, Gateway]) -> None:
    site, _ = site_pair
    assert "authorization: model " in log_of(site) and "a site model" in log_of(site)
    assert "decisions by pycasbin" in log_of(site) and "an uncached decision took" in log_of(site)
    assert "the shipped model — decisions from the policy index" in log_of(gateway)


def test_changes_on_one_replica_reach_pycasbin_on_the_other(
    site_pair: tuple[Gateway, Gateway],
) -> None:
    a, b = site_pair
    experiment = create_experiment(a, f"casbin-replicas-{time.time_ns()}")
    call(
        a,
        "POST",
        "/users",
        {"username": "ravi", "password": "casbin-model-password-2"},
        headers=a.auth,
    )
    ravi = bearer(a.token("ravi", "ravi-ci"))
    assert status_of(b, experiment, ravi) == 404

    allow = {"subject": "user:ravi", "object": f"experiment:{experiment}", "action": "read"}
    deny = {**allow, "effect": "deny"}
    assert call(a, "POST", "/policy/rules", allow, headers=a.auth)[0] == 200
    granted = seconds_until(lambda: status_of(b, experiment, ravi) == 200)
    # A deny beside the allow changes nothing under allow-override, on either replica.
    assert call(b, "POST", "/policy/rules", deny, headers=a.auth)[0] == 200
    time.sleep(0.3)
    assert status_of(a, experiment, ravi) == 200 and status_of(b, experiment, ravi) == 200
    # Without the allow, the deny (and the default) refuse, everywhere.
    assert call(b, "POST", "/policy/rules/delete", allow, headers=a.auth)[0] == 200
    revoked = seconds_until(lambda: status_of(a, experiment, ravi) == 404)
    seconds_until(lambda: status_of(b, experiment, ravi) == 404)

    # From the shell too (announced over Redis): a group grant through a g line.
    a.cli("policy", "add", "p", "group:readers", f"experiment:{experiment}", "read")
    a.cli("policy", "add", "g", "ravi", "readers")
    seconds_until(lambda: status_of(b, experiment, ravi) == 200)
    a.cli("policy", "remove", "g", "ravi", "readers")
    seconds_until(lambda: status_of(b, experiment, ravi) == 404)
    print(f"casbin path propagation: grant {granted * 1000:.0f} ms, revoke {revoked * 1000:.0f} ms")

    # Every change reached both replicas as the changed lines: each loaded the whole policy once,
    # at start, and never again.
    for gw in (a, b):
        assert log_of(gw).count("decided on the casbin path") == 1, log_of(gw)


def test_a_model_the_gateway_cannot_serve_stops_it_at_start(tmp_path: Path) -> None:
    bad = tmp_path / "model.conf"
    bad.write_text(
        ALLOW_OVERRIDE.read_text().replace("r = sub, obj, act", "r = sub, dom, obj, act")
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        GATEWAY_UPSTREAM_URL="http://127.0.0.1:1",
        GATEWAY_DATA_DIR=str(tmp_path / "data"),
        GATEWAY_CASBIN_MODEL=str(bad),
    )
    result = run_cli("serve", env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"GATEWAY_CASBIN_MODEL={bad} cannot be served" in result.stderr
    assert "write r = sub, obj, act" in result.stderr
    assert not (tmp_path / "data").exists()  # stopped before touching anything
