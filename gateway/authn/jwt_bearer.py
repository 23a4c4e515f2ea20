"""Bearer JWTs issued by the identity provider (service accounts, workload identity)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from gateway.authn.credentials import CredentialRefused, IdentityProviderError
from gateway.authn.jwks import JwksCache
from gateway.authn.principal import Principal


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


class JwtValidator:
    def __init__(self, settings: JwtSettings, keys: JwksCache) -> None:
        self.settings = settings
        self._keys = keys

    async def principal(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise CredentialRefused(f"malformed JWT: {exc}") from None
        algorithm = header.get("alg")
        if algorithm not in self.settings.algorithms:
            raise CredentialRefused(f"JWT algorithm {algorithm!r} is not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise CredentialRefused("JWT has no key id")
        try:
            key = await self._keys.key(kid)
        except IdentityProviderError as exc:
            raise CredentialRefused(f"cannot fetch the IdP's keys: {exc}") from None
        if key is None:
            raise CredentialRefused(f"JWT signed with unknown key {kid!r}")
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
            raise CredentialRefused(f"JWT rejected: {type(exc).__name__}: {exc}") from None
        subject = claims.get(self.settings.subject_claim)
        if not isinstance(subject, str) or not subject:
            raise CredentialRefused(f"JWT has no {self.settings.subject_claim!r} claim")
        return Principal(
            subject=subject,
            method="jwt",
            groups=frozenset(claim_groups(claims, self.settings.groups_claim)),
            service=True,
        )
