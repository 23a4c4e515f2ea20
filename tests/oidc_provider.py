"""A real OpenID provider for the tests: `node tests/oidc/provider.mjs` (npm `oidc-provider` v9).

Nothing here imports pytest at module level: `start_oidc_provider` and friends work from any
script. `require_e2e_tools()` is the pytest-facing part: it skips a test when node (or Chromium)
is missing on a developer machine, and fails it instead when `GATEWAY_TEST_REQUIRE_E2E=1` (CI).

The provider binds 127.0.0.1 only, on an ephemeral port unless one is given, and is configured
entirely by the `OIDC_CONFIG` JSON documented at the top of `tests/oidc/provider.mjs`.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from gateway.devstack import Child, start_child, stop_child

OIDC_DIR = Path(__file__).resolve().parent / "oidc"
PROVIDER_SCRIPT = OIDC_DIR / "provider.mjs"
REQUIRE_E2E_ENV = "GATEWAY_TEST_REQUIRE_E2E"
START_TIMEOUT = 30.0
NPM_TIMEOUT = 300.0
HTTP_TIMEOUT = 10.0

JsonDict = dict[str, Any]


class OidcProviderError(RuntimeError):
    pass


# --- tool checks ------------------------------------------------------------------------------


def node_binary() -> str | None:
    return shutil.which("node")


def npm_binary() -> str | None:
    return shutil.which("npm")


def node_available() -> bool:
    """node and npm are on PATH, and node is at least v20 (what oidc-provider v9 needs)."""
    node = node_binary()
    if node is None or npm_binary() is None:
        return False
    try:
        out = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    try:
        major = int(out.strip().lstrip("v").split(".")[0])
    except ValueError:
        return False
    return major >= 20


def e2e_required() -> bool:
    """True when missing end-to-end tools must fail the run instead of skipping (CI)."""
    return os.environ.get(REQUIRE_E2E_ENV, "").strip() == "1"


def missing_node_reason() -> str | None:
    if node_available():
        return None
    return "node >= 20 and npm are required for the OpenID provider (tests/oidc)"


def skip_or_fail(reason: str) -> NoReturn:
    """pytest.skip(reason) locally; pytest.fail(reason) when GATEWAY_TEST_REQUIRE_E2E=1."""
    import pytest

    if e2e_required():
        pytest.fail(f"{reason} ({REQUIRE_E2E_ENV}=1, so this is an error, not a skip)")
    pytest.skip(f"{reason} (set {REQUIRE_E2E_ENV}=1 to make this an error)")


def require_e2e_tools(*, node: bool = True, browser: bool = False) -> None:
    """Call at the top of a test or fixture: skip (locally) or fail (CI) if a tool is missing."""
    reasons: list[str] = []
    if node:
        reason = missing_node_reason()
        if reason:
            reasons.append(reason)
    if browser:
        from tests.browser import missing_browser_reason

        reason = missing_browser_reason()
        if reason:
            reasons.append(reason)
    if reasons:
        skip_or_fail("; ".join(reasons))


# --- npm dependencies -------------------------------------------------------------------------


def npm_deps_installed() -> bool:
    return (OIDC_DIR / "node_modules" / "oidc-provider" / "package.json").is_file()


def ensure_npm_deps() -> None:
    """`npm ci` in tests/oidc unless node_modules is already there (cross-process locked)."""
    if npm_deps_installed():
        return
    npm = npm_binary()
    if npm is None:
        raise OidcProviderError("npm is not on PATH")
    lock_path = Path(tempfile.gettempdir()) / "mlflow-gateway-tests-oidc-npm.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if npm_deps_installed():
            return
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=OIDC_DIR,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT,
            check=False,
        )
        if result.returncode != 0 or not npm_deps_installed():
            raise OidcProviderError(
                f"npm ci in {OIDC_DIR} failed ({result.returncode}):\n"
                f"{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
            )


# --- the provider -----------------------------------------------------------------------------


@dataclass
class OidcProvider:
    issuer: str
    port: int
    child: Child
    config: JsonDict = field(repr=False)
    _discovery: JsonDict | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return self.child.log_path

    def stop(self) -> None:
        stop_child(self.child, timeout=10)

    def discovery(self, *, refresh: bool = False) -> JsonDict:
        """The provider's `/.well-known/openid-configuration` (cached after the first fetch)."""
        if self._discovery is None or refresh:
            self._discovery = http_json(f"{self.issuer}/.well-known/openid-configuration")
        return self._discovery

    def endpoint(self, name: str) -> str:
        """A discovery URL, e.g. endpoint("token") -> discovery()["token_endpoint"]."""
        return str(self.discovery()[f"{name}_endpoint"])

    @property
    def jwks_uri(self) -> str:
        return str(self.discovery()["jwks_uri"])

    def jwks(self) -> JsonDict:
        return http_json(self.jwks_uri)

    def log_tail(self, lines: int = 40) -> str:
        return self.child.tail(lines)


def gateway_client(gateway_url: str, client_id: str, secret: str) -> JsonDict:
    """The gateway as a confidential web client of the provider: code flow, its callback and
    sign-out return addresses, no consent screen."""
    return {
        "client_id": client_id,
        "client_secret": secret,
        "redirect_uris": [f"{gateway_url}/.gateway/callback"],
        "post_logout_redirect_uris": [f"{gateway_url}/.gateway/login?signed_out=1"],
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "client_secret_basic",
        "skip_consent": True,
    }


def start_oidc_provider(
    workdir: Path,
    clients: Sequence[Mapping[str, Any]],
    users: Sequence[Mapping[str, Any]],
    port: int | None = None,
    *,
    resources: Mapping[str, Mapping[str, Any]] | None = None,
    signing_jwks: Mapping[str, Any] | None = None,
    extra_config: Mapping[str, Any] | None = None,
    timeout: float = START_TIMEOUT,
) -> OidcProvider:
    """Start `node tests/oidc/provider.mjs` and wait until discovery answers.

    clients/users/resources: see the OIDC_CONFIG doc in provider.mjs (snake_case client metadata,
    plus `token_claims`/`skip_consent`; users {username, password, sub, email, name, groups}).
    port=None: an ephemeral port chosen by the provider (no race). signing_jwks: {"keys": [private
    RSA JWK with kid]} to sign with a known key; default a fresh key per start. The log (stdout
    and stderr) is workdir/oidc-provider.log. Call `.stop()` when done.
    """
    node = node_binary()
    if node is None:
        raise OidcProviderError("node is not on PATH")
    ensure_npm_deps()

    config: JsonDict = {"port": port or 0, "clients": list(clients), "users": list(users)}
    if resources is not None:
        config["resources"] = dict(resources)
    if signing_jwks is not None:
        config["jwks"] = dict(signing_jwks)
    if extra_config:
        config.update(extra_config)

    env = dict(os.environ)
    env["OIDC_CONFIG"] = json.dumps(config)
    env.setdefault("NODE_ENV", "development")
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "oidc-provider.log"
    offset = log_path.stat().st_size if log_path.exists() else 0
    child = start_child("oidc-provider", [node, str(PROVIDER_SCRIPT)], log_path, env)
    try:
        issuer = _wait_ready(child, offset, timeout)
        provider = OidcProvider(
            issuer=issuer, port=urllib.parse.urlsplit(issuer).port or 80, child=child, config=config
        )
        _wait_discovery(provider, timeout)
    except BaseException:
        stop_child(child, timeout=5)
        raise
    return provider


@contextlib.contextmanager
def running_oidc_provider(
    workdir: Path,
    clients: Sequence[Mapping[str, Any]],
    users: Sequence[Mapping[str, Any]],
    port: int | None = None,
    **kwargs: Any,
) -> Iterator[OidcProvider]:
    """`with running_oidc_provider(...) as provider:` — start_oidc_provider + stop."""
    provider = start_oidc_provider(workdir, clients, users, port, **kwargs)
    try:
        yield provider
    finally:
        provider.stop()


def _wait_ready(child: Child, offset: int, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), child.log_path.open("rb") as log:
            log.seek(offset)
            for raw in log.read().decode(errors="replace").splitlines():
                if raw.startswith("READY "):
                    return raw.removeprefix("READY ").strip()
        if child.process.poll() is not None:
            raise OidcProviderError(f"the OpenID provider exited early:\n{child.tail(40)}")
        time.sleep(0.05)
    raise OidcProviderError(f"the OpenID provider was not READY in {timeout}s:\n{child.tail(40)}")


def _wait_discovery(provider: OidcProvider, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if provider.child.process.poll() is not None:
            raise OidcProviderError(f"the OpenID provider exited:\n{provider.log_tail()}")
        try:
            if provider.discovery(refresh=True).get("issuer") == provider.issuer:
                return
            last = "discovery names another issuer"
        except (OSError, ValueError) as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise OidcProviderError(f"no discovery from {provider.issuer} in {timeout}s: {last}")


# --- HTTP helpers (stdlib only, so they work in sync tests) -----------------------------------


class TokenError(OidcProviderError):
    def __init__(self, status: int, body: JsonDict) -> None:
        super().__init__(f"token endpoint answered HTTP {status}: {body}")
        self.status = status
        self.body = body


def http_json(url: str, timeout: float = HTTP_TIMEOUT) -> JsonDict:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        data = json.load(response)
    if not isinstance(data, dict):
        raise ValueError(f"{url} did not answer a JSON object")
    return data


def basic_auth(client_id: str, secret: str) -> str:
    def quote(value: str) -> str:
        # RFC 6749 2.3.1: form-urlencode both parts before base64.
        return urllib.parse.quote_plus(value)

    raw = f"{quote(client_id)}:{quote(secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def token_request(
    provider: OidcProvider,
    form: Mapping[str, str],
    client_id: str | None = None,
    secret: str | None = None,
) -> tuple[int, JsonDict]:
    """POST a form to the token endpoint (client_secret_basic when secret is given).

    Returns (HTTP status, JSON body) and never raises for an OAuth error answer.
    """
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Accept": "application/json",
    }
    if client_id is not None and secret is not None:
        headers["Authorization"] = basic_auth(client_id, secret)
    request = urllib.request.Request(
        provider.endpoint("token"),
        data=urllib.parse.urlencode(dict(form)).encode(),
        headers=headers,
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        raw = exc.read().decode(errors="replace")
        try:
            body = json.loads(raw)
        except ValueError:
            body = {"error": "non_json_answer", "body": raw}
        return exc.code, body if isinstance(body, dict) else {"body": body}


def client_credentials_token(
    provider: OidcProvider,
    client_id: str,
    secret: str,
    resource: str,
    scope: str | None = None,
) -> str:
    """A client_credentials access token for `resource`: an RS256 JWT whose `aud` is `resource`."""
    form = {"grant_type": "client_credentials", "resource": resource}
    if scope:
        form["scope"] = scope
    status, body = token_request(provider, form, client_id, secret)
    if status != 200 or "access_token" not in body:
        raise TokenError(status, body)
    return str(body["access_token"])


def exchange_code(
    provider: OidcProvider,
    client_id: str,
    secret: str | None,
    code: str,
    redirect_uri: str,
    code_verifier: str,
) -> JsonDict:
    """Authorization code + PKCE verifier -> token response (id_token, access_token, ...)."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": code_verifier,
    }
    if secret is None:
        form["client_id"] = client_id
    status, body = token_request(provider, form, client_id, secret)
    if status != 200:
        raise TokenError(status, body)
    return body


# --- keys and PKCE, for building requests and forging tokens in tests -------------------------


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge)."""
    import hashlib
    import secrets

    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return verifier, challenge


def generate_rsa_jwk(kid: str) -> JsonDict:
    """A private RSA-2048 JWK (needs `cryptography`): pass {"keys": [it]} as signing_jwks, or sign
    forged tokens with it (jwt.PyJWK(it).key)."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk: JsonDict = json.loads(RSAAlgorithm.to_jwk(key))
    # PyJWT writes key_ops ["sign"]; oidc-provider then refuses the key for verifying its own ID
    # tokens (id_token_hint at logout): "no applicable key found". `use` alone is enough.
    jwk.pop("key_ops", None)
    jwk.update({"kid": kid, "alg": "RS256", "use": "sig"})
    return jwk
