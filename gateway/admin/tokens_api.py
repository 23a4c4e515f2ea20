"""The admin API's view of everyone's tokens: list them, revoke any."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.admin import fields as f
from gateway.admin.endpoints import CHANGE_ERRORS, Area, Call, Endpoint
from gateway.admin.fields import Field
from gateway.admin.shapes import token_json

if TYPE_CHECKING:
    from gateway.admin.service import AdminService
    from gateway.authz.enforcer import Enforcer

TOKEN = Field("token_id", pattern=f.TOKEN_ID, max_length=12, required=True)
# What revoking a token takes and answers, everyone's (admins) or one's own.
REVOKE: dict[str, Any] = {
    "path_fields": (TOKEN,),
    "response": "TokenAnswer",
    "errors": CHANGE_ERRORS,
}
TOKEN_FILTERS = (
    Field("owner", pattern=f.NAME),
    Field("state", choices=("active", "expired", "revoked")),
)


class TokensApi(Area):
    tag = "tokens"

    def __init__(self, service: AdminService[Enforcer]) -> None:
        self.service = service

    @Endpoint("GET", "/tokens", "Everyone's tokens", query=TOKEN_FILTERS, response="TokenList")
    async def list_tokens(self, call: Call) -> dict[str, Any]:
        tokens = [token_json(t) for t in await self.service.tokens.list(call.query.get("owner"))]
        state = call.query.get("state")
        return {"tokens": [t for t in reversed(tokens) if not state or t["state"] == state]}

    @Endpoint("DELETE", "/tokens/{token_id}", "Revoke any token", **REVOKE)
    async def revoke_token(self, call: Call) -> dict[str, Any]:
        return {
            "token": token_json(await self.service.revoke_token(call.actor, call.path["token_id"]))
        }
