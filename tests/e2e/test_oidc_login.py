"""SSO through a real OpenID provider in a real browser, and IdP-issued bearer JWTs.

Locally these skip when node or Chromium is missing; in CI (GATEWAY_TEST_REQUIRE_E2E=1) they fail.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.parse
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import jwt
import pytest
import redis
from cryptography.hazmat.primitives import serialization

from gateway.devstack import free_port
from tests.helpers import Gateway, MlflowServer, RedisServer, start_gateway
from tests.integration.test_authn import bearer, request
from tests.oidc_provider import (
    OidcProvider,
    client_credentials_token,
    gateway_client,
    generate_rsa_jwk,
    require_e2e_tools,
    start_oidc_provider,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

CLIENT_ID = "mlflow-gateway"
CLIENT_SECRET = "gateway-client-secret-0123456789abcdef0123"
ROBOT_ID = "ci-robot"
ROBOT_SECRET = "ci-robot-secret-0123456789abcdef0123456789"
AUDIENCE = "https://mlflow-gateway.test"
OTHER_AUDIENCE = "https://another-service.test"
SIGNING_KID = "idp-key-1"
REDIS_DB = 2
SEARCH = "/api/2.0/mlflow/experiments/search?max_results=5"
USERS: list[dict[str, Any]] = [
    {
        "username": "alice",
        "password": "alice-idp-password",
        "email": "alice@example.test",
        "name": "Alice",
        "groups": ["team-a", "ml"],
    },
    # An IdP account that tries to take the name of the gateway's local bootstrap admin.
    {"username": "admin", "password": "admin-idp-password", "email": "admin@evil.test"},
]


@pytest.fixture(scope="module")
def signing_jwk() -> dict[str, Any]:
    return generate_rsa_jwk(SIGNING_KID)


@pytest.fixture(scope="module")
def gateway_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def provider(
    tmp_path_factory: pytest.TempPathFactory, gateway_port: int, signing_jwk: dict[str, Any]
) -> Iterator[OidcProvider]:
    require_e2e_tools(node=True)
    clients: list[dict[str, Any]] = [
        gateway_client(f"http://127.0.0.1:{gateway_port}", CLIENT_ID, CLIENT_SECRET),
        {
            "client_id": ROBOT_ID,
            "client_secret": ROBOT_SECRET,
            "grant_types": ["client_credentials"],
            "response_types": [],
            "token_endpoint_auth_method": "client_secret_basic",
            "token_claims": {"groups": ["ml-robots"]},
        },
    ]
    oidc = start_oidc_provider(
        tmp_path_factory.mktemp("idp"),
        clients,
        USERS,
        resources={AUDIENCE: {"scope": "mlflow"}, OTHER_AUDIENCE: {"scope": "other"}},
        signing_jwks={"keys": [signing_jwk]},
    )
    yield oidc
    oidc.stop()


@pytest.fixture(scope="module")
def gw(
    provider: OidcProvider,
    gateway_port: int,
    mlflow_server: MlflowServer,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gateway]:
    gateway = start_gateway(
        mlflow_server.url,
        redis_server.db_url(REDIS_DB),
        tmp_path_factory.mktemp("gw-oidc"),
        port=gateway_port,
        GATEWAY_OIDC_ISSUER=provider.issuer,
        GATEWAY_OIDC_CLIENT_ID=CLIENT_ID,
        GATEWAY_OIDC_CLIENT_SECRET=CLIENT_SECRET,
        GATEWAY_OIDC_SCOPES="openid email profile groups",
        GATEWAY_OIDC_DISPLAY_NAME="Example SSO",
        GATEWAY_JWT_AUDIENCE=AUDIENCE,
        GATEWAY_LOCKOUT_IP_THRESHOLD="1000",
    )
    # Groups from the IdP meet the gateway's policy: team-a reads the Default experiment, the
    # service account's group may log runs into it.
    gateway.cli("policy", "add", "p", "group:team-a", "experiment:0", "read")
    gateway.cli("policy", "add", "p", "group:ml-robots", "experiment:0", "edit")
    yield gateway
    gateway.stop()


def _idp_login(page: Page, username: str, password: str) -> None:
    page.wait_for_selector("input[name=login]")
    page.fill("input[name=login]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def _sso(page: Page, gw: Gateway, next_path: str = "/") -> None:
    page.goto(f"{gw.url}/.gateway/login?next={urllib.parse.quote(next_path)}")
    page.click("text=Sign in with Example SSO")


# -- browser sign-in ----------------------------------------------------------------------


def test_sso_sign_in_lands_on_the_mlflow_ui_and_sign_out_ends_both_sessions(
    gw: Gateway, page: Page, provider: OidcProvider
) -> None:
    page.goto(f"{gw.url}/")
    # Not signed in: the gateway sends the browser to its login page.
    page.wait_for_url(f"{gw.url}/.gateway/login?next=/")
    page.click("text=Sign in with Example SSO")
    assert page.url.startswith(provider.issuer)
    _idp_login(page, "alice", "alice-idp-password")

    # Back through the callback to the MLflow UI, which loads its data through the gateway.
    page.wait_for_url(f"{gw.url}/**")
    page.get_by_text("Default", exact=True).first.wait_for()
    assert page.title().endswith("MLflow")

    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["mlgw_session"]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Lax"

    page.goto(f"{gw.url}/.gateway/tokens")
    assert page.locator(".who").inner_text() == "alice"

    page.click("text=Sign out")
    # RP-initiated logout at the IdP, then back to the gateway's login page.
    page.wait_for_selector("button[name=logout]")
    page.click("button[name=logout]")
    page.wait_for_url(f"{gw.url}/.gateway/login?signed_out=1")
    assert "You are signed out" in page.content()
    status, _, _ = request(gw, SEARCH, headers={"Cookie": f"mlgw_session={session['value']}"})
    assert status == 401

    # The IdP session is gone too: signing in again asks for the password.
    _sso(page, gw)
    page.wait_for_selector("input[name=login]")


def test_sso_next_target_never_leaves_the_site(gw: Gateway, page: Page) -> None:
    _sso(page, gw, "https://evil.example/steal")
    _idp_login(page, "alice", "alice-idp-password")
    page.wait_for_url(f"{gw.url}/**")
    assert urllib.parse.urlsplit(page.url).netloc == f"127.0.0.1:{gw.port}"


def test_callback_with_a_state_this_browser_did_not_start_is_refused(
    gw: Gateway, page: Page
) -> None:
    response = page.goto(f"{gw.url}/.gateway/callback?state=forged&code=whatever")
    assert response is not None
    assert response.status == 400
    assert "not started in this browser" in page.content()
    assert "mlgw_session" not in {c["name"] for c in page.context.cookies()}


def test_replayed_authorization_code_is_refused(gw: Gateway, page: Page) -> None:
    callbacks: list[str] = []
    page.on(
        "request",
        lambda r: callbacks.append(r.url) if "/.gateway/callback?" in r.url else None,
    )
    _sso(page, gw)
    _idp_login(page, "alice", "alice-idp-password")
    page.wait_for_url(f"{gw.url}/**")
    assert callbacks, "the browser never came back through the callback"
    first_session = {c["name"]: c["value"] for c in page.context.cookies()}["mlgw_session"]

    # Replay the same callback, with its state cookie put back as an attacker would.
    state = urllib.parse.parse_qs(urllib.parse.urlsplit(callbacks[0]).query)["state"][0]
    page.context.add_cookies(
        [{"name": "mlgw_oidc_state", "value": state, "url": f"{gw.url}/.gateway/callback"}]
    )
    response = page.goto(callbacks[0])
    assert response is not None
    assert response.status == 401
    assert "already used" in page.content()
    assert {c["name"]: c["value"] for c in page.context.cookies()}["mlgw_session"] == first_session


def test_id_token_with_a_wrong_nonce_is_refused(
    gw: Gateway, page: Page, redis_server: RedisServer
) -> None:
    store = redis.Redis.from_url(redis_server.db_url(REDIS_DB))
    for leftover in store.scan_iter("mlgw:oidc:state:*"):  # sign-ins other tests left unfinished
        store.delete(leftover)
    _sso(page, gw)
    page.wait_for_selector("input[name=login]")
    # The IdP will put the nonce it was sent into the ID token; change what the gateway expects.
    pending = [k for k in store.scan_iter("mlgw:oidc:state:*")]
    assert len(pending) == 1
    data = json.loads(store.get(pending[0]))
    data["nonce"] = "a-nonce-this-login-never-sent"
    store.set(pending[0], json.dumps(data), keepttl=True)

    _idp_login(page, "alice", "alice-idp-password")
    page.wait_for_url(f"{gw.url}/.gateway/callback**")
    assert "nonce mismatch" in page.content()
    assert "mlgw_session" not in {c["name"] for c in page.context.cookies()}


def test_sso_cannot_take_over_a_local_account(gw: Gateway, page: Page) -> None:
    _sso(page, gw)
    _idp_login(page, "admin", "admin-idp-password")
    page.wait_for_url(f"{gw.url}/.gateway/callback**")
    assert "is a local account" in page.content()
    assert "mlgw_session" not in {c["name"] for c in page.context.cookies()}


# -- bearer JWTs from the IdP --------------------------------------------------------------


def _claims(provider: OidcProvider, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": provider.issuer,
        "aud": AUDIENCE,
        "sub": ROBOT_ID,
        "client_id": ROBOT_ID,
        "iat": now,
        "exp": now + 300,
        "groups": ["ml-robots"],
    }
    claims.update(changes)
    return claims


def _sign(claims: dict[str, Any], jwk: dict[str, Any], kid: str = SIGNING_KID) -> str:
    return jwt.encode(claims, jwt.PyJWK(jwk).key, algorithm="RS256", headers={"kid": kid})


def test_service_account_jwt_from_the_idp_is_accepted(gw: Gateway, provider: OidcProvider) -> None:
    token = client_credentials_token(provider, ROBOT_ID, ROBOT_SECRET, AUDIENCE)
    assert request(gw, SEARCH, headers=bearer(token))[0] == 200
    status, _, body = request(
        gw,
        "/api/2.0/mlflow/runs/create",
        "POST",
        {**bearer(token), "Content-Type": "application/json"},
        b'{"experiment_id": "0"}',
    )
    assert status == 200
    assert json.loads(body)["run"]["info"]["user_id"] == ROBOT_ID


def test_jwt_for_another_audience_is_refused(gw: Gateway, provider: OidcProvider) -> None:
    token = client_credentials_token(provider, ROBOT_ID, ROBOT_SECRET, OTHER_AUDIENCE)
    assert request(gw, SEARCH, headers=bearer(token))[0] == 401


def test_forged_jwts_are_refused(
    gw: Gateway, provider: OidcProvider, signing_jwk: dict[str, Any]
) -> None:
    # Control: signed with the IdP's real key and right claims, a token is accepted — so each
    # refusal below is about the one thing changed.
    assert request(gw, SEARCH, headers=bearer(_sign(_claims(provider), signing_jwk)))[0] == 200

    now = int(time.time())
    public_pem = (
        jwt.PyJWK(signing_jwk)
        .key.public_key()
        .public_bytes(
            encoding=serialization.Encoding.PEM,
            format=serialization.PublicFormat.SubjectPublicKeyInfo,
        )
    )
    unsigned_header = {"alg": "none", "typ": "JWT", "kid": SIGNING_KID}
    refused = {
        "wrong issuer": _sign(_claims(provider, iss="https://evil.example"), signing_jwk),
        "wrong audience": _sign(_claims(provider, aud=OTHER_AUDIENCE), signing_jwk),
        "expired": _sign(_claims(provider, iat=now - 3600, exp=now - 600), signing_jwk),
        "not yet valid": _sign(_claims(provider, nbf=now + 600), signing_jwk),
        "unknown key": _sign(_claims(provider), generate_rsa_jwk("unknown-kid"), "unknown-kid"),
        "right kid, other key": _sign(_claims(provider), generate_rsa_jwk(SIGNING_KID)),
        "alg none": jwt.encode(_claims(provider), None, algorithm="none", headers=unsigned_header),
        "HS256 with the public key": _hs256_with(public_pem, _claims(provider)),
    }
    for case, token in refused.items():
        status, _, body = request(gw, SEARCH, headers=bearer(token))
        assert status == 401, case
        assert json.loads(body)["error_code"] == "UNAUTHENTICATED", case


def _hs256_with(secret: bytes, claims: dict[str, Any]) -> str:
    # PyJWT refuses to HMAC-sign with a PEM key, so build the token by hand as an attacker would.
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": SIGNING_KID}).encode())
    payload = b64(json.dumps(claims).encode())
    signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"
