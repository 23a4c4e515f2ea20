"""Grants that expire and the policy's history, through two real gateways on one PostgreSQL and
one Redis in front of the real MLflow: an expiring grant allows, then stops deciding on both
replicas within a second of its expiry (audited once); the CLI's and the API's expiries, CSV with
an expiry column; `policy history` as text and JSON; rollback reaching the other replica."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from gateway.policy_lines import expiry_moment
from tests.helpers import (
    Gateway,
    MlflowServer,
    RedisServer,
    create_experiment,
    gateway_pair,
    run_cli,
    temporary_postgres_database,
)
from tests.integration.test_admin_api import call
from tests.integration.test_authn import bearer, request

# The contract: an expired rule stops deciding within a second of its expiry.
WITHIN = 1.0
POLL = 0.02


@pytest.fixture(scope="module")
def pair(
    mlflow_server: MlflowServer, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gateway, Gateway]]:
    with temporary_postgres_database() as database:
        shared = {"GATEWAY_DATABASE_URL": database, "GATEWAY_LOCKOUT_IP_THRESHOLD": "1000"}
        workdir = tmp_path_factory.mktemp("expiry-pair")
        with gateway_pair(mlflow_server.url, redis_server.db_url(13), workdir, **shared) as pair:
            yield pair


@pytest.fixture(scope="module")
def rita(pair: tuple[Gateway, Gateway]) -> dict[str, str]:
    a, _ = pair
    a.add_user("rita", "rita-password-123")
    return bearer(a.token("rita", "rita-ci"))


def new_experiment(gw: Gateway) -> str:
    return create_experiment(gw, f"expiry-{time.time_ns()}")


def status_of(gw: Gateway, experiment: str, headers: dict[str, str]) -> int:
    path = f"/api/2.0/mlflow/experiments/get?experiment_id={experiment}"
    return request(gw, path, headers=headers)[0]


def wait_for(condition: Callable[[], bool], within: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        elapsed = time.monotonic() - started
        assert elapsed < within, f"{what}: not after {elapsed:.2f} s"
        time.sleep(POLL)
    return time.monotonic() - started


def rita_read_rule(gw: Gateway) -> tuple[str, dict[str, str]]:
    """A new experiment, and the API's body of a rule that lets rita read it."""
    experiment = new_experiment(gw)
    return experiment, {
        "subject": "user:rita",
        "object": f"experiment:{experiment}",
        "action": "read",
    }


def expiry_of(output: str) -> str:
    """The expiry `policy add` printed: the sixth field of the line."""
    return output.strip().rsplit(", ", 1)[1]


def security_events(gw: Gateway, kind: str) -> list[dict]:
    out = gw.cli("audit", "search", "--type", "security", "--json", "--limit", "1000").stdout
    return [e for e in map(json.loads, out.splitlines()) if e.get("event") == kind]


def both_refuse_after_expiry(
    pair: tuple[Gateway, Gateway], experiment: str, who: dict[str, str], expires_at: str
) -> None:
    """Allowed on both replicas until the expiry; refused on both within WITHIN after it."""
    moment = expiry_moment(expires_at)
    for gw in pair:
        wait_for(lambda gw=gw: status_of(gw, experiment, who) == 200, WITHIN, "granted")
    # Asked often before the expiry: the decision caches hold the allow.
    while time.time() < moment - 0.3:
        assert all(status_of(gw, experiment, who) == 200 for gw in pair)
        time.sleep(0.1)
    time.sleep(max(0.0, moment - time.time()))
    for gw in pair:
        late = wait_for(lambda gw=gw: status_of(gw, experiment, who) == 404, WITHIN, "expired")
        assert time.time() - moment < WITHIN, f"{gw.url} still allowed {late:.2f} s late"


def test_a_grant_added_with_expires_in_stops_on_both_replicas_and_is_audited_once(
    pair: tuple[Gateway, Gateway], rita: dict[str, str]
) -> None:
    a, b = pair
    experiment = new_experiment(a)
    added = a.cli(
        "policy", "add", "p", "rita", f"experiment:{experiment}", "read", "--expires-in", "4s"
    ).stdout
    assert added.startswith(f"added: p, user:rita, experiment:{experiment}, read, allow, ")
    expires_at = expiry_of(added)
    assert 2 < expiry_moment(expires_at) - time.time() <= 4
    listed = a.cli("policy", "list", "--subject", "rita").stdout
    assert f"p, user:rita, experiment:{experiment}, read, allow, {expires_at}" in listed

    both_refuse_after_expiry(pair, experiment, rita, expires_at)

    # One replica's removal from the store committed: one event, whichever replica it was.
    line = f"p, user:rita, experiment:{experiment}, read, allow, {expires_at}"
    wait_for(lambda: security_events(a, "policy_expired") != [], 5, "expiry audited")
    time.sleep(1.0)  # the other replica had its chance to write a second event
    events = [e for e in security_events(a, "policy_expired") if e["details"]["rule"] == line]
    assert len(events) == 1 and events[0]["details"]["expires_at"] == expires_at
    assert f"experiment:{experiment}" not in b.cli("policy", "list", "--subject", "rita").stdout
    history = [json.loads(x) for x in b.cli("policy", "history", "--json").stdout.splitlines()]
    assert {"op": "remove", "line": line, "actor": "gateway:expiry"}.items() <= next(
        h for h in history if h["line"] == line and h["op"] == "remove"
    ).items()


def test_a_grant_added_with_expires_at_stops_at_that_time(
    pair: tuple[Gateway, Gateway], rita: dict[str, str]
) -> None:
    a, _ = pair
    experiment = new_experiment(a)
    # Another time zone's spelling; stored and shown in UTC.
    at = (datetime.now(UTC) + timedelta(seconds=4)).astimezone(timezone(timedelta(hours=2)))
    added = a.cli(
        "policy",
        "add",
        "p",
        "rita",
        f"experiment:{experiment}",
        "read",
        "--expires-at",
        at.isoformat(timespec="seconds"),
    ).stdout
    expires_at = expiry_of(added)
    assert expires_at == at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    both_refuse_after_expiry(pair, experiment, rita, expires_at)


def test_my_account_shows_when_each_right_expires(
    pair: tuple[Gateway, Gateway], rita: dict[str, str]
) -> None:
    a, _ = pair
    experiment, rule = rita_read_rule(a)
    assert (
        call(a, "POST", "/policy/rules", {**rule, "expires_at": "2999-01-01T00:00:00Z"})[0] == 200
    )
    status, _, page = request(a, "/.gateway/admin/account", headers=rita)
    table = page.decode().split('aria-label="Rules that apply"', 1)[1].split("</table>", 1)[0]
    assert status == 200 and "<th>Expires (UTC)</th>" in table
    row = table.split(f"experiment:{experiment}<", 1)[1].split("</tr>", 1)[0]
    assert "2999-01-01T00:00:00Z" in row
    assert call(a, "POST", "/policy/rules/delete", rule)[0] == 200


def test_expiries_through_the_api_and_a_csv_round_trip(
    pair: tuple[Gateway, Gateway], rita: dict[str, str]
) -> None:
    a, b = pair
    experiment, rule = rita_read_rule(a)
    status, answer = call(a, "POST", "/policy/rules", {**rule, "expires_in": "1h"})
    assert status == 200 and answer["changed"]
    expires_at = answer["rule"]["expires_at"]
    assert 3500 < expiry_moment(expires_at) - time.time() <= 3600
    wait_for(lambda: status_of(b, experiment, rita) == 200, WITHIN, "granted on b")
    # The same rule with another expiry: its expiry changes, the rule stays one.
    status, answer = call(
        b, "POST", "/policy/rules", {**rule, "expires_at": "2999-01-01t00:00:00z"}
    )
    assert status == 200 and answer["rule"]["expires_at"] == "2999-01-01T00:00:00Z"
    query = f"/policy?subject=user:rita&object=experiment:{experiment}"
    wait_for(
        lambda: (
            [r["expires_at"] for r in call(a, "GET", query)[1]["rules"]] == ["2999-01-01T00:00:00Z"]
        ),
        WITHIN,
        "the new expiry on a",
    )
    # Both a duration and a time: whichever comes first.
    manage = {**rule, "action": "manage", "expires_in": "2h", "expires_at": "2999-01-01T00:00:00Z"}
    status, answer = call(a, "POST", "/policy/rules", manage)
    assert (
        status == 200 and 7100 < expiry_moment(answer["rule"]["expires_at"]) - time.time() <= 7200
    )
    assert call(a, "POST", "/policy/rules/delete", {**rule, "action": "manage"})[0] == 200
    assert call(a, "POST", "/policy/rules", {**rule, "expires_at": "tomorrow"})[0] == 400

    # Export, then import the file back into a policy without the rule: the expiry comes along,
    # and a line of the old form (no expiry column) still reads.
    status, exported = call(a, "GET", "/policy/export")
    line = f"p, user:rita, experiment:{experiment}, read, allow, 2999-01-01T00:00:00Z"
    assert status == 200 and line in exported.splitlines()
    assert call(a, "POST", "/policy/rules/delete", rule)[0] == 200  # whatever its expiry
    wait_for(lambda: status_of(b, experiment, rita) == 404, WITHIN, "removed on b")
    old_form = f"p, user:rita, experiment:{experiment}, edit, deny"
    csv = f"{line}\n{old_form}\n"
    status, answer = call(b, "POST", "/policy/import", {"csv": csv})
    assert status == 200 and answer["added"] == 2
    wait_for(lambda: len(call(a, "GET", query)[1]["rules"]) == 2, WITHIN, "imported on a")
    listed = call(a, "GET", query)[1]["rules"]
    assert {(r["action"], r["expires_at"]) for r in listed} == {
        ("read", "2999-01-01T00:00:00Z"),
        ("edit", None),
    }
    bad = call(a, "POST", "/policy/import", {"csv": f"{line}, extra\n"})
    assert bad[0] == 400 and "EXPIRES_AT" in bad[1]["message"]
    # The CLI reads the same file.
    export = a.cli("policy", "export").stdout
    assert line in export.splitlines() and old_form + ", allow" not in export
    assert a.cli("policy", "import", "-", input=export).stdout.startswith("imported: 0 added")


def test_history_as_text_and_json_newest_first(pair: tuple[Gateway, Gateway]) -> None:
    a, b = pair
    experiment = new_experiment(a)
    a.cli("policy", "add", "p", "rita", f"experiment:{experiment}", "edit")
    call(
        b,
        "POST",
        "/policy/rules/delete",
        {"subject": "user:rita", "object": f"experiment:{experiment}", "action": "edit"},
    )
    text = b.cli("policy", "history", "--limit", "2").stdout.splitlines()
    assert len(text) == 2
    newest, before = (line.split("\t") for line in text)
    assert int(newest[0]) == int(before[0]) + 1
    assert newest[2] == "admin" and before[2].startswith("cli:")
    assert newest[3] == f"- p, user:rita, experiment:{experiment}, edit, allow"
    assert before[3] == f"+ p, user:rita, experiment:{experiment}, edit, allow"
    datetime.fromisoformat(newest[1])

    entries = [json.loads(x) for x in a.cli("policy", "history", "--json").stdout.splitlines()]
    assert 2 < len(entries) <= 50  # the default limit: 50
    assert {"version", "time", "actor", "op", "line"} <= set(entries[0])
    assert [e["version"] for e in entries] == sorted((e["version"] for e in entries), reverse=True)
    assert entries[0]["op"] == "remove" and entries[1]["op"] == "add"
    api = call(a, "GET", "/policy/history?limit=2")[1]
    assert [c["line"] for c in api["changes"]] == [e["line"] for e in entries[:2]]
    diff = call(a, "GET", f"/policy/diff?from={newest[0]}&to={before[0]}")[1]
    assert [d["line"] for d in diff["added"]] == [newest[3][2:]] and diff["removed"] == []


def test_rollback_reaches_the_other_replica_and_refuses_an_unknown_version(
    pair: tuple[Gateway, Gateway], rita: dict[str, str]
) -> None:
    a, b = pair
    experiment = new_experiment(a)
    # The creator's owner rule is stored after the answer: the version to go back to has it.
    owner = f"p, user:admin, experiment:{experiment}, manage, allow"
    wait_for(lambda: owner in a.cli("policy", "list", "--subject", "admin").stdout, 5, "owner")
    version = int(a.cli("policy", "export").stdout.splitlines()[0].rsplit(" ", 1)[1])
    a.cli("policy", "add", "p", "rita", f"experiment:{experiment}", "read")
    wait_for(lambda: status_of(b, experiment, rita) == 200, WITHIN, "granted on b")

    out = a.cli("policy", "rollback", str(version)).stdout
    assert f"- p, user:rita, experiment:{experiment}, read, allow" in out
    assert f"rolled back to version {version} as version {version + 2}" in out
    wait_for(lambda: status_of(b, experiment, rita) == 404, WITHIN, "rolled back on b")
    rolled = json.loads(b.cli("policy", "history", "--json", "--limit", "1").stdout)
    assert rolled["version"] == version + 2 and rolled["op"] == "remove"
    assert rolled["actor"].startswith("cli:")

    # Through the API, on the other replica: back to the version that had the grant.
    status, answer = call(b, "POST", "/policy/rollback", {"version": version + 1})
    assert status == 200 and answer["version"] == version + 3
    assert [x["line"] for x in answer["added"]] == [
        f"p, user:rita, experiment:{experiment}, read, allow"
    ]
    wait_for(lambda: status_of(a, experiment, rita) == 200, WITHIN, "restored on a")
    events = security_events(a, "policy_rolled_back")
    assert {e["details"]["to_version"] for e in events} >= {version, version + 1}

    failed = run_cli("policy", "rollback", "999999", env=a.env)
    assert failed.returncode == 1
    assert "unknown policy version 999999: the history has versions 1 to" in failed.stderr
    status, answer = call(a, "POST", "/policy/rollback", {"version": 999999})
    assert status == 404 and "unknown policy version 999999" in answer["message"]
    assert "p, role:admin, *, *, allow" in a.cli("policy", "list").stdout
