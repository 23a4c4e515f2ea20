"""Bearer JWTs issued by the identity provider (service accounts, workload identity)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.authn.credentials import CredentialRefused, IdentityProviderError
from gateway.authn.jwks import JwksCache, SignatureRefused, verify_signed
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
            claims = await verify_signed(
                token,
                self._keys,
                algorithms=self.settings.algorithms,
                audience=self.settings.audience,
                issuer=self.settings.issuer,
                leeway=self.settings.leeway,
                required=("exp", "iss", "aud", "iat"),
            )
        except SignatureRefused as exc:
            raise CredentialRefused(f"JWT {exc}") from None
        except IdentityProviderError as exc:
            raise CredentialRefused(f"cannot fetch the IdP's keys: {exc}") from None
        subject = claims.get(self.settings.subject_claim)
        if not isinstance(subject, str) or not subject:
            raise CredentialRefused(f"JWT has no {self.settings.subject_claim!r} claim")
        return Principal(
            subject=subject,
            method="jwt",
            groups=frozenset(claim_groups(claims, self.settings.groups_claim)),
            service=True,
        )
