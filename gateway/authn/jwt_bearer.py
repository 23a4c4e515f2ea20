"""Bearer JWTs issued by the identity provider (service accounts, workload identity)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from gateway.authn.jwks import IdentityProviderError, JwksCache
from gateway.authn.principal import Principal

# Asymmetric algorithms only: a symmetric (HS*) one would let anyone holding the public key sign.
SUPPORTED_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


class JwtRefused(Exception):
    """The token is not acceptable; the message says why (for the audit log, not the client)."""


@dataclass(frozen=True)
class JwtSettings:
    issuer: str
    audience: str
    algorithms: tuple[str, ...]
    subject_claim: str
    groups_claim: str
    leeway: int


def claim_groups(claims: dict[str, Any], name: str) -> tuple[str, ...]:
    value = claims.get(name)
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Sequence):
        return tuple(sorted({g for g in value if isinstance(g, str) and g}))
    return ()


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


class JwtValidator:
    def __init__(self, settings: JwtSettings, keys: JwksCache) -> None:
        self.settings = settings
        self._keys = keys

    async def principal(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise JwtRefused(f"malformed JWT: {exc}") from None
        algorithm = header.get("alg")
        if algorithm not in self.settings.algorithms:
            raise JwtRefused(f"JWT algorithm {algorithm!r} is not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise JwtRefused("JWT has no key id")
        try:
            key = await self._keys.key(kid)
        except IdentityProviderError as exc:
            raise JwtRefused(f"cannot fetch the IdP's keys: {exc}") from None
        if key is None:
            raise JwtRefused(f"JWT signed with unknown key {kid!r}")
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[algorithm],
                audience=self.settings.audience,
                issuer=self.settings.issuer,
                leeway=self.settings.leeway,
                options={"require": ["exp", "iss", "aud", "iat"]},
            )
        except jwt.PyJWTError as exc:
            raise JwtRefused(f"JWT rejected: {type(exc).__name__}: {exc}") from None
        subject = claims.get(self.settings.subject_claim)
        if not isinstance(subject, str) or not subject:
            raise JwtRefused(f"JWT has no {self.settings.subject_claim!r} claim")
        return Principal(
            subject=subject,
            method="jwt",
            groups=frozenset(claim_groups(claims, self.settings.groups_claim)),
            service=True,
        )
