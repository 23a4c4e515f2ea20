"""Each signed-in person's own tokens, at /.gateway/tokens: list, create, revoke.

Every change goes through the TokenService, like the console's and the API's (one set of rules:
a token mints only narrower, shorter-lived tokens; a scoped token sees and revokes only itself).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from gateway.admin.service import Actor, NotPermitted, TokenService
from gateway.authn.csrf import session_form
from gateway.context import context_of
from gateway.paths import TOKENS
from gateway.scopes import TokenScope, parse_duration
from gateway.store.users import StoreError

log = logging.getLogger(__name__)

Render = Callable[[web.Request, str, dict[str, Any], int], web.Response]


def form_scope_words(form: Any) -> list[str]:
    """A token form's scope fields as scope words (`read-only`, `experiment:12`, ...)."""
    words = ["read-only"] if form.get("read_only") else []
    for field, prefix in (("experiments", "experiment:"), ("models", "registered_model:")):
        words += [
            prefix + item.strip()
            for item in str(form.get(field, "")).replace("\n", ",").split(",")
            if item.strip()
        ]
    return words


def form_duration(form: Any) -> timedelta | None:
    """A token form's lifetime; None when the form names none (the token service decides)."""
    value = str(form.get("expires_in", "")).strip()
    return parse_duration(value) if value else None


class TokensPage:
    def __init__(self, token_service: TokenService, render: Render, public_url: str) -> None:
        self.token_service = token_service
        self._render = render
        self.public_url = public_url.rstrip("/")

    def render(
        self, request: web.Request, template: str, context: dict[str, Any], status: int = 200
    ) -> web.Response:
        return self._render(request, template, context, status)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(TOKENS, self.tokens_page),
            web.post(TOKENS, self.tokens_create),
            web.post(TOKENS + "/{token_id}/revoke", self.tokens_revoke),
        ]

    def _tokens_owner(self, request: web.Request) -> str:
        principal = context_of(request).principal
        if principal.service:
            raise web.HTTPForbidden(text="Service accounts have no personal tokens.")
        return principal.subject

    def _actor(self, request: web.Request) -> Actor:
        ctx = context_of(request)
        return Actor(ctx.principal, ctx.client_ip, ctx.request_id)

    async def _tokens_context(self, request: web.Request) -> dict[str, Any]:
        self._tokens_owner(request)
        now = datetime.now(UTC)
        tokens = await self.token_service.own(context_of(request).principal)
        session = context_of(request).session
        return {
            "tokens": [(t, t.state(now)) for t in reversed(tokens)],
            "csrf_token": session.csrf_token if session else "",
            "tracking_uri": self.public_url,
        }

    async def tokens_page(self, request: web.Request) -> web.Response:
        return self.render(request, "tokens.html", await self._tokens_context(request))

    async def _check_form(self, request: web.Request) -> Any:
        form = await request.post()
        ctx = context_of(request)
        if ctx.principal.method == "session" and not session_form(ctx.session, form):
            ctx.auth_refusal = "token form without a valid CSRF token"
            raise web.HTTPForbidden(text="The form expired. Reload the page and try again.")
        return form

    async def _tokens_error(self, request: web.Request, error: str, status: int) -> web.Response:
        context = await self._tokens_context(request)
        return self.render(request, "tokens.html", {**context, "error": error}, status)

    async def tokens_create(self, request: web.Request) -> web.Response:
        owner = self._tokens_owner(request)
        form = await self._check_form(request)
        name = str(form.get("name", "")).strip()
        try:
            record, secret = await self.token_service.create(
                self._actor(request),
                owner,
                name,
                TokenScope.parse(form_scope_words(form)),
                form_duration(form),
            )
        except NotPermitted as exc:
            context_of(request).authz_refusal = str(exc)
            return await self._tokens_error(request, str(exc), 403)
        except (ValueError, StoreError) as exc:
            return await self._tokens_error(request, str(exc), 400)
        log.info("token created: %s for %s", record.id, owner)
        context = await self._tokens_context(request)
        return self.render(request, "tokens.html", {**context, "created": record, "secret": secret})

    async def tokens_revoke(self, request: web.Request) -> web.Response:
        owner = self._tokens_owner(request)
        await self._check_form(request)
        token_id = request.match_info["token_id"]
        try:
            record = await self.token_service.revoke(self._actor(request), token_id, owner)
        except NotPermitted as exc:
            context_of(request).authz_refusal = str(exc)
            return await self._tokens_error(request, str(exc), 403)
        except StoreError as exc:
            raise web.HTTPNotFound(text=str(exc)) from None
        log.info("token revoked: %s by %s", record.id, owner)
        raise web.HTTPSeeOther(TOKENS)
