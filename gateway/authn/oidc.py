"""OpenID Connect browser login: authorization code flow with PKCE (S256), state and nonce.

Authlib has no aiohttp integration, so aiohttp does the HTTP and Authlib supplies the primitives
(random tokens, the S256 code challenge, URL building). ID tokens are verified with PyJWT against
the IdP's JWKS; `iss`, `aud`, `exp` and `nonce` are checked explicitly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from authlib.common.security import generate_token
from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from gateway.authn.credentials import (
    STATE_TTL,
    SUPPORTED_ALGORITHMS,
    IdentityProviderError,
    LoginRefused,
)
from gateway.authn.jwks import HTTP_TIMEOUT, Discovery, JwksCache, SignatureRefused, verify_signed
from gateway.authn.jwt_bearer import claim_groups

_STATE_PREFIX = "mlgw:oidc:state:"


@dataclass(frozen=True)
class OidcSettings:
    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str
    scopes: str
    username_claim: str
    groups_claim: str
    allowed_email_domains: tuple[str, ...]
    required_groups: tuple[str, ...]
    leeway: int


@dataclass(frozen=True)
class PendingLogin:
    state: str
    authorization_url: str


@dataclass(frozen=True)
class OidcIdentity:
    username: str
    email: str | None
    groups: tuple[str, ...]
    id_token: str


@dataclass(frozen=True)
class OidcClient:
    settings: OidcSettings
    discovery: Discovery
    keys: JwksCache
    # The app's HTTP session for the IdP (made at start, so asked for when needed).
    session: Callable[[], aiohttp.ClientSession]
    # Pending logins (state, nonce, PKCE verifier) until the IdP sends the browser back.
    redis: aioredis.Redis

    async def begin(self, next_path: str) -> PendingLogin:
        state = generate_token(43)
        nonce = generate_token(43)
        verifier = generate_token(64)
        pending = {"nonce": nonce, "verifier": verifier, "next": next_path}
        await self.redis.set(_STATE_PREFIX + state, json.dumps(pending), ex=STATE_TTL)
        url = add_params_to_uri(
            await self.discovery.endpoint("authorization_endpoint"),
            {
                "response_type": "code",
                "client_id": self.settings.client_id,
                "redirect_uri": self.settings.redirect_uri,
                "scope": self.settings.scopes,
                "state": state,
                "nonce": nonce,
                "code_challenge": create_s256_code_challenge(verifier),
                "code_challenge_method": "S256",
            },
        )
        return PendingLogin(state, url)

    async def discard(self, state: str) -> None:
        await self.redis.delete(_STATE_PREFIX + state)

    async def complete(self, state: str, code: str) -> tuple[OidcIdentity, str]:
        """Check the callback, redeem the code, verify the ID token. Returns identity and next."""
        raw = await self.redis.getdel(_STATE_PREFIX + state) if state else None
        if raw is None:
            raise LoginRefused("this sign-in link is unknown, expired or already used")
        pending = json.loads(raw)
        tokens = await self._redeem(code, pending["verifier"])
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise LoginRefused("the identity provider returned no ID token")
        claims = await self._verify_id_token(id_token, pending["nonce"])
        return self._identity(claims, id_token), pending["next"]

    async def _redeem(self, code: str, verifier: str) -> dict[str, Any]:
        endpoint = await self.discovery.endpoint("token_endpoint")
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.settings.redirect_uri,
            "code_verifier": verifier,
        }
        auth = aiohttp.BasicAuth(self.settings.client_id, self.settings.client_secret)
        try:
            async with self.session().post(
                endpoint, data=form, auth=auth, timeout=HTTP_TIMEOUT
            ) as response:
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise IdentityProviderError(f"token endpoint failed: {type(exc).__name__}") from exc
        if response.status != 200 or not isinstance(body, dict):
            error = body.get("error") if isinstance(body, dict) else None
            raise LoginRefused(f"the identity provider refused the sign-in ({error or 'error'})")
        return body

    async def _verify_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        try:
            claims = await verify_signed(
                id_token,
                self.keys,
                algorithms=SUPPORTED_ALGORITHMS,
                audience=self.settings.client_id,
                issuer=self.discovery.issuer,
                leeway=self.settings.leeway,
                required=("exp", "iat", "iss", "aud", "sub"),
            )
        except SignatureRefused as exc:
            raise LoginRefused(f"the ID token {exc}") from None
        if claims.get("nonce") != nonce:
            raise LoginRefused("the ID token does not belong to this sign-in (nonce mismatch)")
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self.settings.client_id:
            raise LoginRefused("the ID token was issued to another party (azp)")
        return claims

    def _identity(self, claims: dict[str, Any], id_token: str) -> OidcIdentity:
        email = claims.get("email") if isinstance(claims.get("email"), str) else None
        username = next(
            (
                claims[name]
                for name in (self.settings.username_claim, "email", "sub")
                if isinstance(claims.get(name), str) and claims[name]
            ),
            None,
        )
        if username is None:
            raise LoginRefused("the identity provider sent no usable user name")
        if self.settings.allowed_email_domains:
            domain = email.rsplit("@", 1)[-1].lower() if email else None
            if domain not in self.settings.allowed_email_domains:
                raise LoginRefused("your e-mail domain is not allowed to sign in here")
            if claims.get("email_verified") is False:
                raise LoginRefused("your e-mail address is not verified")
        groups = claim_groups(claims, self.settings.groups_claim)
        if self.settings.required_groups and not set(groups) & set(self.settings.required_groups):
            raise LoginRefused("you are not in a group that may sign in here")
        return OidcIdentity(username=username, email=email, groups=groups, id_token=id_token)

    async def logout_url(self, id_token: str | None, return_to: str) -> str | None:
        """RP-initiated logout at the IdP, when it offers it."""
        try:
            endpoint = (await self.discovery.document()).get("end_session_endpoint")
        except IdentityProviderError:
            return None
        if not isinstance(endpoint, str):
            return None
        params = {"post_logout_redirect_uri": return_to, "client_id": self.settings.client_id}
        if id_token:
            params["id_token_hint"] = id_token
        return add_params_to_uri(endpoint, params)
