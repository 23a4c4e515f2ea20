"""The admin API's calls about the caller: who am I, and my own tokens (for anyone signed in)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.admin import fields as f
from gateway.admin.endpoints import CHANGE_ERRORS, Area, Call, Endpoint, Refused
from gateway.admin.fields import Field
from gateway.admin.shapes import right_json, token_json
from gateway.admin.tokens_api import REVOKE
from gateway.authz.explain import rights_of
from gateway.context import context_of
from gateway.errors import PERMISSION_DENIED
from gateway.scopes import TokenScope, parse_duration

if TYPE_CHECKING:
    from gateway.admin.service import AdminService
    from gateway.authz.enforcer import Enforcer

SCOPE_LIST = Field("item", pattern=f.SCOPE_ITEM, max_length=500)
TOKEN_FIELDS = (
    Field("name", pattern=f.NAME, required=True, description="A name to recognise it by."),
    Field(
        "expires_in",
        pattern=f.DURATION,
        max_length=8,
        description="30d, 12h, 90m; by default 30d, or when the token making the call expires",
    ),
    Field("read_only", "boolean"),
    Field("experiments", "array", item=SCOPE_LIST, description="experiment ids or patterns"),
    Field("registered_models", "array", item=SCOPE_LIST, description="model names or patterns"),
)


def _scope(body: dict[str, Any]) -> TokenScope:
    return TokenScope.parse(
        (["read-only"] if body.get("read_only") else [])
        + [f"experiment:{e}" for e in body.get("experiments", [])]
        + [f"registered_model:{m}" for m in body.get("registered_models", [])]
    )


class MeApi(Area):
    tag = "me"

    def __init__(self, service: AdminService[Enforcer]) -> None:
        self.service = service

    @Endpoint("GET", "/me", "Who am I: identity, groups, rights", access="self", response="Me")
    async def me(self, call: Call) -> dict[str, Any]:
        principal = call.principal
        session = context_of(call.request).session
        admin, rights = rights_of(self.service.policy.engine, principal)
        return {
            "username": principal.subject,
            "method": principal.method,
            "groups": sorted(principal.groups),
            "admin": admin,
            "service_account": principal.service,
            "token": (
                {
                    "id": principal.token_id,
                    "scope": principal.scope.words() if principal.scope else [],
                }
                if principal.token_id
                else None
            ),
            "rights": [right_json(r) for r in rights],
            # For the bar on MLflow's pages, whose sign-out form needs it; only this site's
            # scripts can read this answer.
            "csrf_token": session.csrf_token if session else None,
        }

    def _own(self, call: Call) -> str:
        if call.principal.service:
            raise Refused(PERMISSION_DENIED, "Service accounts have no personal tokens.")
        return call.principal.subject

    @Endpoint("GET", "/me/tokens", "My tokens", access="self", response="TokenList")
    async def list_my_tokens(self, call: Call) -> dict[str, Any]:
        self._own(call)
        tokens = await self.service.token_service.own(call.principal)
        return {"tokens": [token_json(t) for t in reversed(tokens)]}

    @Endpoint(
        "POST",
        "/me/tokens",
        "Create a token for myself",
        access="self",
        body=TOKEN_FIELDS,
        response="CreatedToken",
        status=201,
        errors=CHANGE_ERRORS,
        description="The secret is in the answer, and nowhere else.",
    )
    async def create_my_token(self, call: Call) -> dict[str, Any]:
        owner, body = self._own(call), call.body
        scope = _scope(body)
        expires_in = parse_duration(body["expires_in"]) if "expires_in" in body else None
        record, secret = await self.service.create_token(
            call.actor, owner, body["name"], expires_in, scope
        )
        return {"token": token_json(record), "secret": secret}

    @Endpoint("DELETE", "/me/tokens/{token_id}", "Revoke one of my tokens", access="self", **REVOKE)
    async def revoke_my_token(self, call: Call) -> dict[str, Any]:
        owner = self._own(call)
        record = await self.service.revoke_token(call.actor, call.path["token_id"], owner=owner)
        return {"token": token_json(record)}
