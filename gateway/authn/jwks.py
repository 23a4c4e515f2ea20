"""Signing keys of the identity provider: discovery and JWKS fetched with aiohttp, cached; and
the one check of a token signed with them (`verify_signed`: bearer JWTs and OIDC ID tokens).

An unknown key id triggers one refresh (the IdP may have rotated keys), at most every
MIN_REFRESH_INTERVAL seconds so a flood of tokens with made-up key ids cannot hammer the IdP.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

import aiohttp
import jwt

from gateway.authn.credentials import IdentityProviderError

MIN_REFRESH_INTERVAL = 30.0
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=10)


async def fetch_json(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    try:
        async with session.get(url, timeout=HTTP_TIMEOUT) as response:
            if response.status != 200:
                raise IdentityProviderError(f"{url} answered HTTP {response.status}")
            data = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise IdentityProviderError(f"{url} unreachable: {type(exc).__name__}") from exc
    if not isinstance(data, dict):
        raise IdentityProviderError(f"{url} did not return a JSON object")
    return data


class Discovery:
    """The IdP's OpenID configuration, fetched once and then reused."""

    def __init__(self, session: Callable[[], aiohttp.ClientSession], issuer: str) -> None:
        self._session = session
        self.issuer = issuer.rstrip("/")
        self._document: dict[str, Any] | None = None
        self._lock = asyncio.Lock()

    async def document(self) -> dict[str, Any]:
        async with self._lock:
            if self._document is None:
                url = self.issuer + "/.well-known/openid-configuration"
                document = await fetch_json(self._session(), url)
                if document.get("issuer", "").rstrip("/") != self.issuer:
                    raise IdentityProviderError(
                        f"discovery at {url} names issuer {document.get('issuer')!r}, "
                        f"expected {self.issuer!r}"
                    )
                self._document = document
            return self._document

    async def endpoint(self, name: str) -> str:
        value = (await self.document()).get(name)
        if not isinstance(value, str):
            raise IdentityProviderError(f"the identity provider offers no {name}")
        return value


class JwksCache:
    def __init__(
        self, session: Callable[[], aiohttp.ClientSession], jwks_uri: Callable[[], Any]
    ) -> None:
        self._session = session
        self._jwks_uri = jwks_uri
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def _refresh(self) -> None:
        url = await self._jwks_uri()
        data = await fetch_json(self._session(), url)
        keys: dict[str, jwt.PyJWK] = {}
        for entry in data.get("keys", []):
            if entry.get("use", "sig") != "sig" or "kid" not in entry:
                continue
            try:
                keys[entry["kid"]] = jwt.PyJWK(entry)
            except jwt.PyJWKError:
                continue  # a key type we do not support cannot sign anything we accept
        self._keys = keys
        self._fetched_at = time.monotonic()

    async def key(self, kid: str) -> jwt.PyJWK | None:
        if kid in self._keys:
            return self._keys[kid]
        async with self._lock:
            if kid not in self._keys and time.monotonic() - self._fetched_at > MIN_REFRESH_INTERVAL:
                await self._refresh()
        return self._keys.get(kid)


class SignatureRefused(ValueError):
    """A signed token that is not accepted; the message completes "the token …"."""


async def verify_signed(
    token: str,
    keys: JwksCache,
    *,
    algorithms: Collection[str],
    audience: str,
    issuer: str,
    leeway: int,
    required: Sequence[str],
) -> dict[str, Any]:
    """The claims of ``token`` once its header, key, signature, audience, issuer, times and
    ``required`` claims hold. IdentityProviderError (keys unavailable) is the caller's to answer."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise SignatureRefused(f"is malformed ({exc})") from None
    algorithm = header.get("alg")
    if not isinstance(algorithm, str) or algorithm not in algorithms:
        raise SignatureRefused(f"uses a refused algorithm ({algorithm!r})")
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise SignatureRefused("has no key id")
    key = await keys.key(kid)
    if key is None:
        raise SignatureRefused(f"is signed with an unknown key ({kid!r})")
    try:
        return jwt.decode(
            token,
            key=key,
            algorithms=[algorithm],
            audience=audience,
            issuer=issuer,
            leeway=leeway,
            options={"require": list(required)},
        )
    except jwt.PyJWTError as exc:
        raise SignatureRefused(f"is not valid ({type(exc).__name__})") from None
