"""The console's "My account" page, for everyone signed in: rights (with when each expires), and
their own tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.admin.console_frame import Frame, Pages, form_post, page, text
from gateway.admin.service import Actor
from gateway.admin.shapes import token_json
from gateway.admin.tokens_page import form_duration, form_scope_words
from gateway.authz.explain import rights_of
from gateway.context import context_of
from gateway.policy_lines import now_text
from gateway.scopes import TokenScope
from gateway.store.users import StoreError

if TYPE_CHECKING:
    from gateway.admin.service import AdminService
    from gateway.authz.enforcer import Enforcer


class AccountPages(Pages):
    def __init__(self, frame: Frame, service: AdminService[Enforcer], tracking_uri: str) -> None:
        super().__init__(frame)
        self.service = service
        self.tracking_uri = tracking_uri

    @page("/account", admin=False)
    async def account(
        self, request: web.Request, created: tuple[str, str] | None = None
    ) -> web.Response:
        principal = context_of(request).principal
        admin, rights = rights_of(self.service.policy.engine, principal)
        tokens = [] if principal.service else await self.service.token_service.own(principal)
        return self.frame.render(
            request,
            "admin/account.html",
            {
                "admin": admin,
                "rights": rights,
                "now": now_text(),
                "tokens": [token_json(t) for t in reversed(tokens)],
                "tracking_uri": self.tracking_uri,
                "created": created,
            },
        )

    @form_post("/account/tokens", admin=False)
    async def create_own_token(self, request: web.Request, form: Any, actor: Actor) -> web.Response:
        principal = actor.principal
        if principal.service:
            raise StoreError("service accounts have no personal tokens")
        record, secret = await self.service.create_token(
            actor,
            principal.subject,
            text(form, "name"),
            form_duration(form),
            TokenScope.parse(form_scope_words(form)),
        )
        # Shown once, on this answer only: never in a cookie, a URL or a later page.
        return await self.account(request, created=(record.name, secret))

    @form_post("/account/tokens/{token_id}/revoke", admin=False)
    async def revoke_own_token(self, request: web.Request, form: Any, actor: Actor) -> str:
        record = await self.service.revoke_token(
            actor, request.match_info["token_id"], owner=actor.principal.subject
        )
        return f"Token “{record.name}” revoked."
