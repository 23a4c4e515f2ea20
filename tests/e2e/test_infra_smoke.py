"""Smoke tests of the end-to-end infrastructure: a real OpenID provider and a real Chromium.

Locally these skip when node or Chromium is missing; with GATEWAY_TEST_REQUIRE_E2E=1 (CI) they
fail instead. Run: .venv/bin/python -m pytest tests/e2e/test_infra_smoke.py -q
"""

from __future__ import annotations

import secrets
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest

from tests.oidc_provider import (
    OidcProvider,
    TokenError,
    client_credentials_token,
    e2e_required,
    exchange_code,
    generate_rsa_jwk,
    pkce_pair,
    require_e2e_tools,
    start_oidc_provider,
    token_request,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

try:
    import jwt
except ImportError:  # PyJWT[crypto] is a dev dependency: only a half-installed venv lacks it
    if e2e_required():
        raise
    pytest.skip("PyJWT[crypto] is not installed", allow_module_level=True)

RESOURCE = "https://mlflow-gateway.test/api"
WEB_CLIENT = "web-app"
WEB_SECRET = "web-app-secret-0123456789abcdef0123456789"
FIRST_PARTY_CLIENT = "first-party"
FIRST_PARTY_SECRET = "first-party-secret-0123456789abcdef012345"
SVC_CLIENT = "ci-robot"
SVC_SECRET = "ci-robot-secret-0123456789abcdef0123456789"
SIGNING_KID = "smoke-test-key"
USERS: list[dict[str, Any]] = [
    {
        "username": "alice",
        "password": "alice-password",
        "email": "alice@example.test",
        "name": "Alice Liddell",
        "groups": ["ml-team", "gateway-admins"],
    },
    {
        "username": "bob",
        "sub": "user-bob-0001",
        "password": "bob-password",
        "email": "bob@example.test",
        "name": "Bob",
        "groups": ["viewers"],
    },
]
SCOPE = "openid email profile groups"
PAGE_TIMEOUT_MS = 15_000


# --- a tiny redirect target that records what the browser brings back -------------------------


@dataclass
class CallbackServer:
    server: ThreadingHTTPServer
    thread: threading.Thread
    hits: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def callback_url(self) -> str:
        return f"{self.base_url}/callback"

    @property
    def logged_out_url(self) -> str:
        return f"{self.base_url}/logged-out"


def _start_callback_server() -> CallbackServer:
    hits: list[tuple[str, dict[str, str]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urllib.parse.urlsplit(self.path)
            hits.append((parts.path, dict(urllib.parse.parse_qsl(parts.query))))
            body = f"<html><body><h1 id='landed'>{parts.path}</h1></body></html>".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="oidc-callback", daemon=True)
    thread.start()
    return CallbackServer(server, thread, hits)


@pytest.fixture(scope="module")
def callback_server() -> Iterator[CallbackServer]:
    server = _start_callback_server()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture(scope="module")
def signing_jwk() -> dict[str, Any]:
    return generate_rsa_jwk(SIGNING_KID)


@pytest.fixture(scope="module")
def provider(
    tmp_path_factory: pytest.TempPathFactory,
    callback_server: CallbackServer,
    signing_jwk: dict[str, Any],
) -> Iterator[OidcProvider]:
    require_e2e_tools(node=True)
    clients: list[dict[str, Any]] = [
        {
            "client_id": WEB_CLIENT,
            "client_secret": WEB_SECRET,
            "redirect_uris": [callback_server.callback_url],
            "post_logout_redirect_uris": [callback_server.logged_out_url],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_basic",
        },
        {
            "client_id": FIRST_PARTY_CLIENT,
            "client_secret": FIRST_PARTY_SECRET,
            "redirect_uris": [callback_server.callback_url],
            "post_logout_redirect_uris": [callback_server.logged_out_url],
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_post",
            "skip_consent": True,
        },
        {
            "client_id": SVC_CLIENT,
            "client_secret": SVC_SECRET,
            "grant_types": ["client_credentials"],
            "response_types": [],
            "token_endpoint_auth_method": "client_secret_basic",
            "token_claims": {"groups": ["ml-robots"]},
        },
    ]
    oidc = start_oidc_provider(
        tmp_path_factory.mktemp("oidc"),
        clients,
        USERS,
        resources={RESOURCE: {"scope": "mlflow:read mlflow:write"}},
        signing_jwks={"keys": [signing_jwk]},
    )
    yield oidc
    oidc.stop()


def _verify(provider: OidcProvider, token: str, audience: str) -> dict[str, Any]:
    jwks = jwt.PyJWKClient(provider.jwks_uri, cache_keys=False)
    key = jwks.get_signing_key_from_jwt(token)
    return dict(
        jwt.decode(token, key.key, algorithms=["RS256"], audience=audience, issuer=provider.issuer)
    )


def _authorization_url(
    provider: OidcProvider, client_id: str, redirect_uri: str, **extra: str
) -> tuple[str, str, str, str]:
    """(authorization URL with state/nonce/S256 challenge, code_verifier, state, nonce)."""
    verifier, challenge = pkce_pair()
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    params = {
        "client_id": client_id,
        "response_type": "code",
        "scope": SCOPE,
        "redirect_uri": redirect_uri,
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    url = f"{provider.endpoint('authorization')}?{urllib.parse.urlencode(params)}"
    return url, verifier, state, nonce


def _submit_login(page: Page, username: str, password: str) -> int | None:
    page.fill("input[name=login]", username)
    page.fill("input[name=password]", password)
    with page.expect_navigation() as nav:
        page.click("button[type=submit]")
    response = nav.value
    return response.status if response is not None else None


def _landed_query(page: Page, url_prefix: str) -> dict[str, str]:
    page.wait_for_url(f"{url_prefix}**")
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(page.url).query))


# --- (a) discovery -----------------------------------------------------------------------------


def test_discovery(provider: OidcProvider) -> None:
    meta = provider.discovery()
    assert meta["issuer"] == provider.issuer
    assert provider.issuer.startswith("http://127.0.0.1:")
    for name in ("authorization", "token", "end_session", "userinfo"):
        assert meta[f"{name}_endpoint"].startswith(provider.issuer + "/"), name
    assert meta["jwks_uri"].startswith(provider.issuer + "/")
    assert "S256" in meta["code_challenge_methods_supported"]
    assert "plain" not in meta["code_challenge_methods_supported"]
    assert {"openid", "email", "profile", "groups", "offline_access"} <= set(
        meta["scopes_supported"]
    )
    assert {"groups", "email", "preferred_username"} <= set(meta["claims_supported"])
    assert "client_credentials" in meta["grant_types_supported"]
    # The configured fixed key is the one published.
    assert [k["kid"] for k in provider.jwks()["keys"]] == [SIGNING_KID]
    assert all("d" not in k for k in provider.jwks()["keys"]), "private key material published"


# --- (b) client_credentials with a resource -> verifiable JWT ----------------------------------


def test_client_credentials_jwt(provider: OidcProvider, signing_jwk: dict[str, Any]) -> None:
    token = client_credentials_token(
        provider, SVC_CLIENT, SVC_SECRET, RESOURCE, scope="mlflow:read"
    )
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256"
    assert header["kid"] == SIGNING_KID
    claims = _verify(provider, token, RESOURCE)
    assert claims["aud"] == RESOURCE
    assert claims["iss"] == provider.issuer
    assert claims["sub"] == SVC_CLIENT
    assert claims["client_id"] == SVC_CLIENT
    assert claims["groups"] == ["ml-robots"]
    assert claims["scope"] == "mlflow:read"
    assert claims["exp"] > claims["iat"]

    # The test holds the provider's key, so it can mint tokens itself...
    own = jwt.encode(
        {**claims, "groups": ["forged"]},
        jwt.PyJWK(signing_jwk).key,
        algorithm="RS256",
        headers={"kid": SIGNING_KID},
    )
    assert _verify(provider, own, RESOURCE)["groups"] == ["forged"]

    # ...and a token signed by an unknown key with the provider's kid does not verify.
    stranger = jwt.PyJWK(generate_rsa_jwk(SIGNING_KID)).key
    forged = jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": SIGNING_KID})
    with pytest.raises(jwt.InvalidSignatureError):
        _verify(provider, forged, RESOURCE)


def test_client_credentials_rejections(provider: OidcProvider) -> None:
    with pytest.raises(TokenError) as wrong_secret:
        client_credentials_token(provider, SVC_CLIENT, "not-the-secret", RESOURCE)
    assert wrong_secret.value.status == 401
    assert wrong_secret.value.body["error"] == "invalid_client"

    with pytest.raises(TokenError) as unknown_resource:
        client_credentials_token(provider, SVC_CLIENT, SVC_SECRET, "https://elsewhere.test/")
    assert unknown_resource.value.body["error"] == "invalid_target"


# --- (c) a real browser: authorization code + PKCE through the login form ----------------------


def test_browser_authorization_code_pkce(
    provider: OidcProvider, callback_server: CallbackServer, page: Page
) -> None:
    redirect_uri = callback_server.callback_url
    url, verifier, state, nonce = _authorization_url(provider, WEB_CLIENT, redirect_uri)

    page.goto(url)
    page.wait_for_selector("input[name=login]")

    # A wrong password is refused, and the form can be used again afterwards.
    assert _submit_login(page, "alice", "wrong-password") == 401
    assert "Invalid username or password" in page.inner_text("#error")
    with page.expect_navigation():
        page.click("#retry")
    page.wait_for_selector("input[name=password]")
    assert _submit_login(page, "alice", "alice-password") == 200

    # First authorization of this client: oidc-provider's consent page.
    assert page.locator("button:has-text('Continue')").count() == 1
    page.click("button:has-text('Continue')")
    query = _landed_query(page, redirect_uri)
    assert query["state"] == state
    assert query["iss"] == provider.issuer
    assert callback_server.hits[-1] == ("/callback", query)

    tokens = exchange_code(provider, WEB_CLIENT, WEB_SECRET, query["code"], redirect_uri, verifier)
    claims = _verify(provider, tokens["id_token"], WEB_CLIENT)
    assert claims["nonce"] == nonce
    assert claims["sub"] == "alice"
    assert claims["email"] == "alice@example.test"
    assert claims["email_verified"] is True
    assert claims["groups"] == ["ml-team", "gateway-admins"]
    assert claims["preferred_username"] == "alice"
    assert claims["name"] == "Alice Liddell"

    # The code is single-use, and a wrong verifier would not have worked either.
    with pytest.raises(TokenError) as reused:
        exchange_code(provider, WEB_CLIENT, WEB_SECRET, query["code"], redirect_uri, verifier)
    assert reused.value.body["error"] == "invalid_grant"


def test_browser_pkce_is_required(
    provider: OidcProvider, callback_server: CallbackServer, page: Page
) -> None:
    params = {
        "client_id": WEB_CLIENT,
        "response_type": "code",
        "scope": SCOPE,
        "redirect_uri": callback_server.callback_url,
        "state": "s",
        "nonce": "n",
    }
    page.goto(f"{provider.endpoint('authorization')}?{urllib.parse.urlencode(params)}")
    query = _landed_query(page, callback_server.callback_url)
    assert query["error"] == "invalid_request"
    assert "PKCE" in query["error_description"]


def test_browser_resource_token_and_logout(
    provider: OidcProvider, callback_server: CallbackServer, page: Page
) -> None:
    """skip_consent client, a `resource` at authorization -> JWT access token; then RP logout."""
    redirect_uri = callback_server.callback_url
    url, verifier, state, nonce = _authorization_url(
        provider, FIRST_PARTY_CLIENT, redirect_uri, resource=RESOURCE
    )
    page.goto(url)
    page.wait_for_selector("input[name=login]")
    _submit_login(page, "bob", "bob-password")
    query = _landed_query(page, redirect_uri)  # no consent page for this client
    assert query["state"] == state

    # client_secret_post: the secret goes in the form body.
    status, tokens = token_request(
        provider,
        {
            "grant_type": "authorization_code",
            "code": query["code"],
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
            "client_id": FIRST_PARTY_CLIENT,
            "client_secret": FIRST_PARTY_SECRET,
        },
    )
    assert status == 200, tokens
    id_claims = _verify(provider, tokens["id_token"], FIRST_PARTY_CLIENT)
    assert id_claims["sub"] == "user-bob-0001"
    assert id_claims["nonce"] == nonce
    assert id_claims["groups"] == ["viewers"]
    access = _verify(provider, tokens["access_token"], RESOURCE)
    assert access["sub"] == "user-bob-0001"
    assert access["client_id"] == FIRST_PARTY_CLIENT
    assert access["groups"] == ["viewers"]
    assert access["preferred_username"] == "bob"

    # RP-initiated logout over plain http: confirmation page, then back to the RP.
    logout_params = {
        "id_token_hint": tokens["id_token"],
        "post_logout_redirect_uri": callback_server.logged_out_url,
        "state": "bye",
    }
    page.goto(f"{provider.endpoint('end_session')}?{urllib.parse.urlencode(logout_params)}")
    page.click("button[name=logout]")
    assert _landed_query(page, callback_server.logged_out_url) == {"state": "bye"}

    # The session is gone: a new authorization asks for the login again.
    url, *_ = _authorization_url(provider, FIRST_PARTY_CLIENT, redirect_uri)
    page.goto(url)
    page.wait_for_selector("input[name=login]")
