"""Signing out on the real stack: a GET only asks, a POST needs this site's page and the session's
CSRF token, and a sign-out that goes through ends the session in Redis for good."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
import redis

from tests.helpers import Gateway, MlflowServer, RedisServer, start_gateway
from tests.integration.test_admin_api import security_events
from tests.integration.test_authn import login, request, session_cookie

REDIS_DB = 5
PASSWORD = "logout-password-1"
ME = "/.gateway/api/me"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture(scope="module")
def gw(
    mlflow_server: MlflowServer, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    gateway = start_gateway(
        mlflow_server.url,
        redis_server.db_url(REDIS_DB),
        tmp_path_factory.mktemp("gw-logout"),
        GATEWAY_LOCKOUT_IP_THRESHOLD="1000",
    )
    gateway.add_user("lena", PASSWORD)
    yield gateway
    gateway.stop()


def signed_in(gw: Gateway) -> tuple[str, str]:
    """A fresh session: its cookie header and its CSRF token (as the bar gets it)."""
    status, headers, _ = login(gw, "lena", PASSWORD)
    assert status == 303
    cookie = session_cookie(headers)
    status, _, body = request(gw, ME, headers={"Cookie": cookie})
    assert status == 200
    return cookie, json.loads(body)["csrf_token"]


def still_signed_in(gw: Gateway, cookie: str) -> bool:
    status, _, body = request(gw, ME, headers={"Cookie": cookie})
    return status == 200 and json.loads(body)["username"] == "lena"


def post_logout(
    gw: Gateway, cookie: str, fields: dict[str, str], **headers: str
) -> tuple[int, dict[str, str], bytes]:
    sent = {"Cookie": cookie, "Content-Type": FORM, "Origin": gw.url, **headers}
    return request(gw, "/.gateway/logout", "POST", sent, urlencode(fields).encode())


def session_key(cookie: str) -> str:
    session_id = cookie.split("=", 1)[1]
    return "mlgw:session:" + hashlib.sha256(session_id.encode()).hexdigest()


def logout_event(gw: Gateway, outcome: str, reason: str | None = None) -> dict[str, Any]:
    """lena's sign-out event with this outcome (and reason), once the audit trail has it."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for event in security_events(gw, "logout"):
            if (
                event["outcome"] == outcome
                and event["actor"]["subject"] == "lena"
                and event["details"].get("reason") == reason
            ):
                return event
        time.sleep(0.2)
    raise AssertionError(f"no {outcome} logout event ({reason})")


def test_a_get_only_asks_and_signs_nobody_out(gw: Gateway) -> None:
    cookie, csrf = signed_in(gw)
    status, headers, body = request(gw, "/.gateway/logout", headers={"Cookie": cookie})
    assert status == 200
    page = body.decode()
    assert 'method="post" action="/.gateway/logout"' in page
    assert f'name="csrf_token" value="{csrf}"' in page
    assert "<script" not in page
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["Cache-Control"] == "no-store"
    assert still_signed_in(gw, cookie)


def test_the_confirm_page_without_a_session_offers_sign_in(gw: Gateway) -> None:
    status, _, body = request(gw, "/.gateway/logout")
    assert status == 200
    assert "not signed in" in body.decode() and "csrf_token" not in body.decode()


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(
    redis_server: RedisServer, gw: Gateway
) -> None:
    cookie, csrf = signed_in(gw)
    for fields in ({}, {"csrf_token": "not-the-token"}, {"csrf_token": csrf[:-1]}):
        status, _, body = post_logout(gw, cookie, fields)
        assert status == 403, fields
        assert "nothing changed" in body.decode() and "still signed in" in body.decode()
    assert still_signed_in(gw, cookie)
    assert redis.Redis.from_url(redis_server.db_url(REDIS_DB)).exists(session_key(cookie))
    event = logout_event(gw, "failure", "sign-out without a valid CSRF token")
    assert event["actor"]["method"] == "session"


def test_a_cross_site_post_is_refused_even_with_the_token(gw: Gateway) -> None:
    cookie, csrf = signed_in(gw)
    status, _, body = post_logout(gw, cookie, {"csrf_token": csrf}, Origin="https://evil.example")
    assert status == 403 and "not sent from this site" in body.decode()
    # Neither Origin nor Referer: a browser always sends one of them with a form post.
    sent = {"Cookie": cookie, "Content-Type": FORM}
    assert request(gw, "/.gateway/logout", "POST", sent, f"csrf_token={csrf}".encode())[0] == 403
    assert still_signed_in(gw, cookie)
    logout_event(gw, "failure", "cross-site sign-out")


def test_a_post_with_the_token_ends_the_session(redis_server: RedisServer, gw: Gateway) -> None:
    cookie, csrf = signed_in(gw)
    status, headers, _ = post_logout(gw, cookie, {"csrf_token": csrf})
    assert status == 303
    assert headers["Location"] == "/.gateway/login?signed_out=1"
    assert 'mlgw_session=""' in headers["Set-Cookie"] and "Max-Age=0" in headers["Set-Cookie"]
    assert not redis.Redis.from_url(redis_server.db_url(REDIS_DB)).exists(session_key(cookie))
    # The old cookie is worth nothing: the API says who, MLflow asks for credentials.
    status, _, body = request(gw, ME, headers={"Cookie": cookie})
    assert status == 401 and json.loads(body)["error_code"] == "UNAUTHENTICATED"
    search = "/api/2.0/mlflow/experiments/search?max_results=1"
    assert request(gw, search, headers={"Cookie": cookie})[0] == 401
    logout_event(gw, "success")
    # Signing out again with the stale page: nothing left to end, the browser lands signed out.
    status, headers, _ = post_logout(gw, cookie, {"csrf_token": csrf})
    assert status == 303 and headers["Location"] == "/.gateway/login?signed_out=1"


def test_pages_and_the_bar_carry_the_token_only_for_sessions(gw: Gateway) -> None:
    cookie, csrf = signed_in(gw)
    _, _, page = request(gw, "/.gateway/tokens", headers={"Cookie": cookie})
    header = page.decode().split("</header>", 1)[0]
    assert 'action="/.gateway/logout"' in header and f'value="{csrf}"' in header
    # A token is not a browser session: no CSRF token, and no sign-out form to show.
    status, _, body = request(gw, ME, headers=gw.auth)
    assert status == 200 and json.loads(body)["csrf_token"] is None
    _, _, page = request(gw, "/.gateway/tokens", headers=gw.auth)
    assert 'action="/.gateway/logout"' not in page.decode()
