"""Small shared pieces of the identity-provider code that must not pull in JOSE libraries.

PyJWT, cryptography and Authlib cost ~10 MiB of memory; they are imported only when SSO or IdP
JWTs are configured, so a gateway without them stays small.
"""

from __future__ import annotations

# Asymmetric algorithms only: a symmetric (HS*) one would let anyone holding the public key sign.
SUPPORTED_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
# Seconds a started sign-in (state, nonce, PKCE verifier) stays redeemable.
STATE_TTL = 600


class CredentialRefused(Exception):
    """A bearer credential is not acceptable; the message says why (for the audit log)."""


class LoginRefused(Exception):
    """The login cannot complete; the message is safe to show the person."""


class IdentityProviderError(RuntimeError):
    """The identity provider could not be reached or answered nonsense."""


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2
