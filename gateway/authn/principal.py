"""The one answer authentication gives: who is making this request, and how they proved it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from gateway.scopes import TokenScope

# "cli": a local admin at the shell (`mlflow-gateway users|groups|tokens|policy`), never a request.
AuthMethod = Literal["session", "password", "token", "jwt", "anonymous", "cli"]

AUTHENTICATED_GROUP = "authenticated"


@dataclass(frozen=True)
class Principal:
    subject: str
    method: AuthMethod
    groups: frozenset[str] = field(default_factory=frozenset)
    is_admin: bool = False
    token_id: str | None = None
    scope: TokenScope | None = None
    # A service account from the IdP (JWT) rather than a person with a local record.
    service: bool = False

    @property
    def authenticated(self) -> bool:
        return self.method != "anonymous"

    def describe(self) -> str:
        via = f"token {self.token_id}" if self.token_id else self.method
        return f"{self.subject} ({via})"


ANONYMOUS = Principal(subject="anonymous", method="anonymous")
