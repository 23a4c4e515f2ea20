"""Authentication of API clients and password sign-in; each refusal proven on the real stack."""

from __future__ import annotations

import base64
import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.helpers import Gateway, MlflowServer, RedisServer, start_gateway

mlflow = pytest.importorskip("mlflow")

SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"


def request(
    gw: Gateway,
    path: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 30,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error_code(body: bytes) -> str:
    return json.loads(body)["error_code"]


@pytest.fixture(scope="module")
def gw(
    mlflow_server: MlflowServer, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    # A Redis database of its own: this module's failed attempts must not lock out other tests.
    gateway = start_gateway(
        mlflow_server.url,
        redis_server.db_url(1),
        tmp_path_factory.mktemp("gw-authn"),
        GATEWAY_LOCKOUT_USER_THRESHOLD="3",
        GATEWAY_LOCKOUT_IP_THRESHOLD="1000",
        GATEWAY_LOCKOUT_SECONDS="3",
    )
    gateway.add_user("carol", "carol-password-1")
    yield gateway
    gateway.stop()


# -- API clients ---------------------------------------------------------------------------------


def test_no_credentials_is_401_with_a_challenge(gw: Gateway) -> None:
    status, headers, body = request(gw, SEARCH)
    assert status == 401
    assert error_code(body) == "UNAUTHENTICATED"
    assert "Bearer" in headers["WWW-Authenticate"]
    assert "Basic" in headers["WWW-Authenticate"]


def test_browser_navigation_without_session_goes_to_login(gw: Gateway) -> None:
    status, headers, _ = request(gw, "/?x=1&y=2", headers={"Accept": "text/html"})
    assert status == 302
    assert parse_qs(urlsplit(headers["Location"]).query) == {"next": ["/?x=1&y=2"]}
    assert headers["Location"].startswith("/.gateway/login?")


def test_basic_auth_and_wrong_password(gw: Gateway) -> None:
    assert request(gw, SEARCH, headers=basic("carol", "carol-password-1"))[0] == 200
    status, _, body = request(gw, SEARCH, headers=basic("carol", "not-her-password"))
    assert status == 401
    assert error_code(body) == "UNAUTHENTICATED"
    # Unknown users get the same answer as wrong passwords: nothing to learn about who exists.
    status, _, unknown = request(gw, SEARCH, headers=basic("nobody-here", "whatever-pass"))
    assert status == 401
    assert json.loads(unknown)["message"] == json.loads(body)["message"]


def test_password_change_takes_effect_at_once_despite_the_cache(gw: Gateway) -> None:
    gw.add_user("dave", "dave-password-1")
    assert request(gw, SEARCH, headers=basic("dave", "dave-password-1"))[0] == 200  # now cached
    gw.cli("users", "passwd", "dave", "--password-stdin", input="dave-password-2\n")
    assert request(gw, SEARCH, headers=basic("dave", "dave-password-1"))[0] == 401
    assert request(gw, SEARCH, headers=basic("dave", "dave-password-2"))[0] == 200


def test_disabled_user_is_refused_by_password_and_token(gw: Gateway) -> None:
    gw.add_user("erin", "erin-password-1")
    token = gw.token("erin", "erin-ci")
    assert request(gw, SEARCH, headers=basic("erin", "erin-password-1"))[0] == 200
    assert request(gw, SEARCH, headers=bearer(token))[0] == 200
    gw.cli("users", "disable", "erin")
    assert request(gw, SEARCH, headers=basic("erin", "erin-password-1"))[0] == 401
    assert request(gw, SEARCH, headers=bearer(token))[0] == 401
    gw.cli("users", "enable", "erin")
    assert request(gw, SEARCH, headers=bearer(token))[0] == 200


def test_tokens_work_as_bearer_and_as_basic_password(gw: Gateway) -> None:
    token = gw.token("carol", "carol-tool")
    assert token.startswith("mlgw_")
    assert request(gw, SEARCH, headers=bearer(token))[0] == 200
    assert request(gw, SEARCH, headers=basic("carol", token))[0] == 200
    listed = gw.cli("tokens", "list", "--user", "carol", "--json").stdout.splitlines()
    record = next(json.loads(line) for line in listed if json.loads(line)["name"] == "carol-tool")
    assert record["last_used_at"] is not None
    assert token not in "".join(listed)


def test_revoked_token_is_refused(gw: Gateway) -> None:
    token = gw.token("carol", "to-revoke")
    assert request(gw, SEARCH, headers=bearer(token))[0] == 200
    listed = [json.loads(line) for line in gw.cli("tokens", "list", "--json").stdout.splitlines()]
    token_id = next(t["id"] for t in listed if t["name"] == "to-revoke")
    gw.cli("tokens", "revoke", token_id)
    status, _, body = request(gw, SEARCH, headers=bearer(token))
    assert status == 401
    assert "revoked" in json.loads(body)["message"]


def test_expired_token_is_refused(gw: Gateway) -> None:
    token = gw.token("carol", "short-lived", "--expires-in", "2s")
    assert request(gw, SEARCH, headers=bearer(token))[0] == 200
    time.sleep(2.5)
    assert request(gw, SEARCH, headers=bearer(token))[0] == 401


def test_made_up_tokens_are_refused(gw: Gateway) -> None:
    assert request(gw, SEARCH, headers=bearer("mlgw_" + "A" * 43))[0] == 401
    assert request(gw, SEARCH, headers=bearer("not-a-token"))[0] == 401
    assert request(gw, SEARCH, headers={"Authorization": "Digest abc"})[0] == 401


def test_lockout_after_repeated_failures_even_for_the_right_password(gw: Gateway) -> None:
    gw.add_user("frank", "frank-password-1")
    for _ in range(2):
        assert request(gw, SEARCH, headers=basic("frank", "wrong-password"))[0] == 401
    status, headers, _ = request(gw, SEARCH, headers=basic("frank", "wrong-password"))
    assert status == 429
    assert 1 <= int(headers["Retry-After"]) <= 3
    # During the lock even the right password is refused.
    status, _, body = request(gw, SEARCH, headers=basic("frank", "frank-password-1"))
    assert status == 429
    assert "Try again" in json.loads(body)["message"]
    time.sleep(3.2)
    assert request(gw, SEARCH, headers=basic("frank", "frank-password-1"))[0] == 200
    # A second lockout lasts twice as long.
    for _ in range(3):
        request(gw, SEARCH, headers=basic("frank", "wrong-password"))
    _, headers, _ = request(gw, SEARCH, headers=basic("frank", "frank-password-1"))
    assert 4 <= int(headers["Retry-After"]) <= 6


# -- the real mlflow client ------------------------------------------------------------------------


@pytest.fixture
def clean_mlflow_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _log_a_run(gw: Gateway) -> str:
    mlflow.set_tracking_uri(gw.url)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("authn") or client.get_experiment(
        client.create_experiment("authn")
    )
    run = client.create_run(experiment.experiment_id)
    client.log_param(run.info.run_id, "p", "1")
    return client.get_run(run.info.run_id).info.user_id


def test_mlflow_client_with_token(gw: Gateway, clean_mlflow_env: pytest.MonkeyPatch) -> None:
    clean_mlflow_env.setenv("MLFLOW_TRACKING_TOKEN", gw.token("carol", "client"))
    assert _log_a_run(gw) == "carol"


def test_mlflow_client_with_username_and_password(
    gw: Gateway, clean_mlflow_env: pytest.MonkeyPatch
) -> None:
    clean_mlflow_env.setenv("MLFLOW_TRACKING_USERNAME", "carol")
    clean_mlflow_env.setenv("MLFLOW_TRACKING_PASSWORD", "carol-password-1")
    assert _log_a_run(gw) == "carol"


def test_mlflow_client_without_credentials_fails_with_401(
    gw: Gateway, clean_mlflow_env: pytest.MonkeyPatch
) -> None:
    from mlflow.exceptions import MlflowException

    clean_mlflow_env.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(gw.url)
    with pytest.raises(MlflowException) as caught:
        mlflow.MlflowClient().search_experiments()
    assert "401" in str(caught.value) or "UNAUTHENTICATED" in str(caught.value)


# -- identity stamping -----------------------------------------------------------------------------


def _own_experiment(gw: Gateway, auth: dict[str, str]) -> str:
    status, _, body = request(
        gw,
        "/api/2.0/mlflow/experiments/create",
        "POST",
        {**auth, "Content-Type": "application/json"},
        json.dumps({"name": f"carol-{time.time_ns()}"}).encode(),
    )
    assert status == 200, body
    return json.loads(body)["experiment_id"]


def test_client_cannot_claim_another_identity(gw: Gateway) -> None:
    auth = basic("carol", "carol-password-1")
    experiment_id = _own_experiment(gw, auth)
    status, _, body = request(
        gw,
        "/api/2.0/mlflow/runs/create",
        "POST",
        {**auth, "Content-Type": "application/json", "X-Remote-User": "admin"},
        json.dumps(
            {
                "experiment_id": experiment_id,
                "userId": "admin",
                "tags": [{"key": "mlflow.user", "value": "admin"}],
            }
        ).encode(),
    )
    assert status == 200
    run = json.loads(body)["run"]
    assert run["info"]["user_id"] == "carol"
    assert {"key": "mlflow.user", "value": "carol"} in run["data"]["tags"]
    assert {"key": "mlflow.user", "value": "admin"} not in run["data"]["tags"]

    run_id = run["info"]["run_id"]
    for path, payload in (
        ("set-tag", {"run_id": run_id, "key": "mlflow.user", "value": "admin"}),
        ("log-batch", {"run_id": run_id, "tags": [{"key": "mlflow.user", "value": "admin"}]}),
    ):
        status, _, body = request(
            gw, f"/api/2.0/mlflow/runs/{path}", "POST", auth, json.dumps(payload).encode()
        )
        assert status == 403, path
        assert error_code(body) == "PERMISSION_DENIED"


def test_ambiguous_create_run_body_is_refused(gw: Gateway) -> None:
    status, _, body = request(
        gw,
        "/api/2.0/mlflow/runs/create",
        "POST",
        basic("carol", "carol-password-1"),
        b'{"experiment_id": "0", "user_id": "carol", "user_id": "admin"}',
    )
    assert status == 400
    assert error_code(body) == "BAD_REQUEST"


# -- password sign-in in a browser session ---------------------------------------------------------


def login(gw: Gateway, user: str, password: str, next_path: str = "/", origin: str | None = None):
    form = urlencode({"username": user, "password": password, "next": next_path}).encode()
    return request(
        gw,
        "/.gateway/login",
        "POST",
        {"Content-Type": "application/x-www-form-urlencoded", "Origin": origin or gw.url},
        form,
    )


def session_cookie(headers: dict[str, str]) -> str:
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    return cookie.split(";", 1)[0]


def test_login_sets_an_opaque_session_cookie(gw: Gateway) -> None:
    status, headers, _ = login(gw, "carol", "carol-password-1", "/#/experiments/0")
    assert status == 303
    assert headers["Location"] == "/#/experiments/0"
    cookie = session_cookie(headers)
    assert cookie.startswith("mlgw_session=")
    assert "carol" not in cookie
    assert request(gw, SEARCH, headers={"Cookie": cookie})[0] == 200


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example/",
        "\\\\evil.example",
        "/\t/evil.example",
        "javascript:alert(1)",
        "http:evil.example",
    ],
)
def test_login_never_redirects_off_site(gw: Gateway, target: str) -> None:
    status, headers, _ = login(gw, "carol", "carol-password-1", target)
    assert status == 303
    assert headers["Location"] == "/"


def test_login_form_from_another_site_is_refused(gw: Gateway) -> None:
    status, headers, body = login(gw, "carol", "carol-password-1", origin="https://evil.example")
    assert status == 403
    assert "Set-Cookie" not in headers
    assert b"Please sign in from this page" in body


def test_cross_origin_post_with_session_cookie_is_refused(gw: Gateway) -> None:
    _, headers, _ = login(gw, "carol", "carol-password-1")
    cookie = session_cookie(headers)
    create = json.dumps({"name": f"csrf-{time.time_ns()}"}).encode()
    status, _, body = request(
        gw,
        "/api/2.0/mlflow/experiments/create",
        "POST",
        {"Cookie": cookie, "Origin": "https://evil.example", "Content-Type": "application/json"},
        create,
    )
    assert status == 403
    assert error_code(body) == "PERMISSION_DENIED"
    # No Origin and no Referer: refused too.
    assert (
        request(gw, "/api/2.0/mlflow/experiments/create", "POST", {"Cookie": cookie}, create)[0]
        == 403
    )
    # The same request from the gateway's own origin works.
    status, _, _ = request(
        gw,
        "/api/2.0/mlflow/experiments/create",
        "POST",
        {"Cookie": cookie, "Origin": gw.url, "Content-Type": "application/json"},
        create,
    )
    assert status == 200


def test_session_of_disabled_user_stops_working(gw: Gateway) -> None:
    gw.add_user("gina", "gina-password-1")
    _, headers, _ = login(gw, "gina", "gina-password-1")
    cookie = session_cookie(headers)
    assert request(gw, SEARCH, headers={"Cookie": cookie})[0] == 200
    gw.cli("users", "disable", "gina")
    assert request(gw, SEARCH, headers={"Cookie": cookie})[0] == 401


def test_logout_ends_the_session(gw: Gateway) -> None:
    # The whole of signing out (GET only asks, CSRF, cross-site) is in test_logout.py.
    _, headers, _ = login(gw, "carol", "carol-password-1")
    cookie = session_cookie(headers)
    csrf = json.loads(request(gw, "/.gateway/api/me", headers={"Cookie": cookie})[2])["csrf_token"]
    status, headers, _ = request(
        gw,
        "/.gateway/logout",
        "POST",
        {
            "Cookie": cookie,
            "Origin": gw.url,
            "Content-Type": "application/x-www-form-urlencoded",
        },
        urlencode({"csrf_token": csrf}).encode(),
    )
    assert status == 303
    assert headers["Location"] == "/.gateway/login?signed_out=1"
    assert request(gw, SEARCH, headers={"Cookie": cookie})[0] == 401


def test_login_page_lockout_message(gw: Gateway) -> None:
    gw.add_user("hank", "hank-password-1")
    for _ in range(2):
        assert login(gw, "hank", "bad-password-x")[0] == 401
    status, headers, body = login(gw, "hank", "bad-password-x")
    assert status == 429
    assert "Retry-After" in headers
    assert b"Too many failed attempts" in body
    assert login(gw, "hank", "hank-password-1")[0] == 429


def test_tokens_page_creates_and_revokes_with_csrf_protection(gw: Gateway) -> None:
    _, headers, _ = login(gw, "carol", "carol-password-1")
    cookie = session_cookie(headers)
    status, headers, page = request(gw, "/.gateway/tokens", headers={"Cookie": cookie})
    assert status == 200
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    csrf = page.decode().split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    form_headers = {
        "Cookie": cookie,
        "Origin": gw.url,
        "Content-Type": "application/x-www-form-urlencoded",
    }

    # Without the form's CSRF token: refused.
    form = urlencode({"name": "from-page", "expires_in": "7d"}).encode()
    assert request(gw, "/.gateway/tokens", "POST", form_headers, form)[0] == 403

    form = urlencode({"name": "from-page", "expires_in": "7d", "csrf_token": csrf}).encode()
    status, _, page = request(gw, "/.gateway/tokens", "POST", form_headers, form)
    assert status == 200
    secret = page.decode().split('id="new-token" class="mono" readonly value="', 1)[1].split('"')[0]
    assert request(gw, SEARCH, headers=bearer(secret))[0] == 200
    # Shown once: the list page does not carry it.
    assert secret not in request(gw, "/.gateway/tokens", headers={"Cookie": cookie})[2].decode()

    listed = [json.loads(line) for line in gw.cli("tokens", "list", "--json").stdout.splitlines()]
    token_id = next(t["id"] for t in listed if t["name"] == "from-page")
    revoke = urlencode({"csrf_token": csrf}).encode()
    status, headers, _ = request(
        gw, f"/.gateway/tokens/{token_id}/revoke", "POST", form_headers, revoke
    )
    assert status == 303
    assert request(gw, SEARCH, headers=bearer(secret))[0] == 401


def test_cli_prints_the_token_alone_on_the_last_line(gw: Gateway) -> None:
    result = gw.cli("tokens", "create", "ci", "--user", "carol", "--scope", "read-only")
    lines = result.stdout.strip().splitlines()
    assert lines[-1].startswith("mlgw_")
    assert lines[-1] == lines[-1].strip()
    assert "read-only" in gw.cli("tokens", "list", "--user", "carol").stdout


def test_users_cli(gw: Gateway, tmp_path: Path) -> None:
    gw.add_user("ivan", "ivan-password-1", "team-a")
    gw.cli("groups", "add-member", "team-b", "ivan")
    gw.cli("groups", "remove-member", "team-a", "ivan")
    users = {
        u["username"]: u
        for u in map(json.loads, gw.cli("users", "list", "--json").stdout.splitlines())
    }
    assert users["ivan"]["groups"] == ["team-b"]
    assert users["admin"]["admin"] is True
    result = gw.cli("users", "list")
    assert "ivan" in result.stdout
    too_short = __import__("subprocess").run(
        [gw.child.process.args[0], "users", "add", "judy", "--password-stdin"],
        input="short\n",
        capture_output=True,
        text=True,
        env=gw.env,
    )
    assert too_short.returncode != 0
    assert "at least 12 characters" in too_short.stderr
    assert urlsplit(gw.url).hostname == "127.0.0.1"


def test_failures_from_one_client_ip_lock_that_ip_out(
    mlflow_server: MlflowServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    gateway = start_gateway(
        mlflow_server.url,
        redis_server.db_url(3),
        tmp_path,
        GATEWAY_LOCKOUT_IP_THRESHOLD="4",
        GATEWAY_LOCKOUT_SECONDS="30",
    )
    try:
        good = gateway.token("admin", "good")
        # Guessing tokens and passwords for many different users from one address...
        for attempt in range(3):
            assert (
                request(gateway, SEARCH, headers=bearer("mlgw_" + "B" * 42 + str(attempt)))[0]
                == 401
            )
        assert request(gateway, SEARCH, headers=basic("someone", "guess-password"))[0] == 429
        # ...locks the address out, valid credentials included, with a Retry-After to honour.
        status, headers, _ = request(gateway, SEARCH, headers=bearer(good))
        assert status == 429
        assert 20 <= int(headers["Retry-After"]) <= 30
    finally:
        gateway.stop()
