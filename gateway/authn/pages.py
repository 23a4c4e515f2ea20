"""Sign-in and sign-out pages under /.gateway/ (server-rendered, no inline JS)."""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp_jinja2
from aiohttp import web

from gateway import paths
from gateway.audit.record import security_event
from gateway.audit.writer import AuditWriter
from gateway.authn.authenticator import Authenticator
from gateway.authn.credentials import STATE_TTL, IdentityProviderError, LoginRefused
from gateway.authn.csrf import origin_of, same_origin, session_form
from gateway.authn.redirects import safe_next
from gateway.authn.sessions import SessionData
from gateway.context import context_of
from gateway.store.users import StoreError

if TYPE_CHECKING:
    from gateway.authn.oidc import OidcClient

log = logging.getLogger(__name__)

STATE_COOKIE = "mlgw_oidc_state"
CALLBACK_PATH = paths.CALLBACK
SIGNED_OUT = paths.LOGIN + "?signed_out=1"


@dataclass(frozen=True)
class CookiePolicy:
    session_name: str
    secure: bool
    max_age: int


@dataclass(eq=False)
class AuthPages:
    auth: Authenticator
    oidc: OidcClient | None
    cookies: CookiePolicy
    public_url: str
    local_users: bool
    sso_name: str
    audit: AuditWriter
    public_origin: str = field(init=False)

    def __post_init__(self) -> None:
        self.public_url = self.public_url.rstrip("/")
        self.public_origin = origin_of(self.public_url)

    def _event(self, request: web.Request, kind: str, **details: Any) -> None:
        ctx = context_of(request)
        security_event(
            self.audit,
            kind,
            actor_principal=ctx.principal if ctx.principal.authenticated else None,
            subject=details.pop("subject", None),
            client_ip=ctx.client_ip,
            request_id=ctx.request_id,
            **details,
        )

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(paths.LOGIN, self.login_page),
            web.post(paths.LOGIN, self.login_submit),
            web.get(paths.LOGIN_SSO, self.sso_start),
            web.get(CALLBACK_PATH, self.sso_callback),
            web.get(paths.LOGOUT, self.logout_page),
            web.post(paths.LOGOUT, self.logout),
        ]

    # -- helpers ---------------------------------------------------------------------------------

    def page(
        self, request: web.Request, template: str, context: dict[str, Any], status: int = 200
    ) -> web.Response:
        """A gateway page: the signed-in person and the header's sign-out form, never cached."""
        ctx = context_of(request)
        principal = ctx.principal
        base = {
            "principal": principal if principal.authenticated else None,
            "sso_name": self.sso_name,
            # The page header's sign-out form, for a browser session.
            "csrf_token": ctx.session.csrf_token if ctx.session else "",
        }
        response = aiohttp_jinja2.render_template(
            template, request, {**base, **context}, status=status
        )
        response.headers["Cache-Control"] = "no-store"
        return response

    def _set_session_cookie(self, response: web.StreamResponse, session_id: str) -> None:
        response.set_cookie(
            self.cookies.session_name,
            session_id,
            max_age=self.cookies.max_age,
            path="/",
            httponly=True,
            secure=self.cookies.secure,
            samesite="Lax",
        )

    async def _start_session(
        self,
        request: web.Request,
        username: str,
        method: str,
        target: str,
        groups: tuple[str, ...] = (),
        id_token: str | None = None,
    ) -> web.Response:
        # A fresh id at every sign-in: a session id planted before sign-in is worthless after it.
        old = request.cookies.get(self.cookies.session_name)
        if old:
            await self.auth.end_session(old)
        session_id = await self.auth.sessions.create(username, method, groups, id_token)
        await self.auth.users.record_login(username)
        response = web.HTTPSeeOther(target)
        self._set_session_cookie(response, session_id)
        log.info("sign-in: %s via %s from %s", username, method, context_of(request).client_ip)
        self._event(request, "login", subject=username, method=method, groups=list(groups))
        return response

    # -- sign-in ---------------------------------------------------------------------------------

    async def login_page(self, request: web.Request) -> web.Response:
        target = safe_next(request.query.get("next"))
        if context_of(request).principal.method == "session":
            raise web.HTTPSeeOther(target)
        return self.page(
            request,
            "login.html",
            {
                "next": target,
                "sso": self.oidc is not None,
                "local_users": self.local_users,
                "error": request.query.get("error"),
                "signed_out": "signed_out" in request.query,
            },
        )

    async def login_submit(self, request: web.Request) -> web.Response:
        if not self.local_users:
            raise web.HTTPNotFound()
        form = await request.post()
        target = safe_next(str(form.get("next", "")))
        context = {"next": target, "sso": self.oidc is not None, "local_users": True}
        # Login CSRF: a foreign page must not sign the browser into someone else's account.
        if not same_origin(request, self.public_origin):
            context_of(request).auth_refusal = "cross-origin sign-in form"
            return self.page(
                request, "login.html", {**context, "error": "Please sign in from this page."}, 403
            )
        username = str(form.get("username", "")).strip()
        password = str(form.get("password", ""))
        if not username or not password:
            return self.page(
                request, "login.html", {**context, "error": "Enter a user name and password."}, 400
            )
        outcome = await self.auth.password(
            username, password, context_of(request).client_ip, method="session"
        )
        if outcome.failure is not None:
            context_of(request).auth_refusal = outcome.failure.reason
            self._event(
                request,
                "lockout" if outcome.failure.status == 429 else "login",
                subject=username,
                outcome="failure",
                method="password",
                reason=outcome.failure.reason,
            )
            response = self.page(
                request,
                "login.html",
                {**context, "error": outcome.failure.message, "username": username},
                outcome.failure.status,
            )
            if outcome.failure.retry_after is not None:
                response.headers["Retry-After"] = str(outcome.failure.retry_after)
            return response
        return await self._start_session(request, username, "password", target)

    async def sso_start(self, request: web.Request) -> web.Response:
        if self.oidc is None:
            raise web.HTTPNotFound()
        try:
            pending = await self.oidc.begin(safe_next(request.query.get("next")))
        except IdentityProviderError as exc:
            log.warning("identity provider unavailable: %s", exc)
            return self._sso_error(request, "The identity provider cannot be reached.", 502)
        response = web.HTTPFound(pending.authorization_url)
        # Binds the sign-in to this browser: a callback carrying someone else's state fails.
        response.set_cookie(
            STATE_COOKIE,
            pending.state,
            max_age=STATE_TTL,
            path=CALLBACK_PATH,
            httponly=True,
            secure=self.cookies.secure,
            samesite="Lax",
        )
        return response

    def _sso_error(self, request: web.Request, message: str, status: int) -> web.Response:
        context_of(request).auth_refusal = f"sso: {message}"
        self._event(request, "login", outcome="failure", method="oidc", reason=message)
        response = self.page(
            request,
            "login.html",
            {
                "next": "/",
                "sso": self.oidc is not None,
                "local_users": self.local_users,
                "error": message,
            },
            status,
        )
        response.del_cookie(STATE_COOKIE, path=CALLBACK_PATH)
        return response

    async def sso_callback(self, request: web.Request) -> web.Response:
        if self.oidc is None:
            raise web.HTTPNotFound()
        state = request.query.get("state", "")
        cookie_state = request.cookies.get(STATE_COOKIE, "")
        if not state or not hmac.compare_digest(state, cookie_state):
            return self._sso_error(request, "This sign-in was not started in this browser.", 400)
        if "error" in request.query:
            await self.oidc.discard(state)
            return self._sso_error(
                request, "The identity provider did not sign you in. Please try again.", 401
            )
        try:
            identity, target = await self.oidc.complete(state, request.query.get("code", ""))
            user = await self.auth.users.ensure_sso_user(identity.username, identity.email)
        except LoginRefused as exc:
            return self._sso_error(request, f"Sign-in refused: {exc}.", 401)
        except StoreError as exc:
            return self._sso_error(request, f"Sign-in refused: {exc}.", 403)
        except IdentityProviderError as exc:
            log.warning("identity provider failed during sign-in: %s", exc)
            return self._sso_error(request, "The identity provider cannot be reached.", 502)
        if user.disabled:
            return self._sso_error(request, "Your account is disabled.", 403)
        response = await self._start_session(
            request, user.username, "oidc", target, identity.groups, identity.id_token
        )
        response.del_cookie(STATE_COOKIE, path=CALLBACK_PATH)
        return response

    # -- sign-out --------------------------------------------------------------------------------

    async def _cookie_session(self, request: web.Request) -> tuple[str, SessionData | None]:
        # From the cookie itself: an Authorization header sent along does not hide the session.
        session_id = request.cookies.get(self.cookies.session_name, "")
        return session_id, (await self.auth.sessions.get(session_id) if session_id else None)

    async def logout_page(self, request: web.Request) -> web.Response:
        """A GET never signs out (any site can make a browser GET): it asks, with a form."""
        _, session = await self._cookie_session(request)
        return self.page(request, "logout.html", self._logout_context(session))

    @staticmethod
    def _logout_context(session: SessionData | None, error: str | None = None) -> dict[str, Any]:
        return {
            "signed_in": session is not None,
            "csrf_token": session.csrf_token if session else "",
            "error": error,
        }

    def _logout_refusal(
        self, request: web.Request, session: SessionData | None, form: Any
    ) -> str | None:
        if not same_origin(request, self.public_origin):
            return "cross-site sign-out"
        if session is not None and not session_form(session, form):
            return "sign-out without a valid CSRF token"
        return None

    async def logout(self, request: web.Request) -> web.Response:
        form = await request.post()
        session_id, session = await self._cookie_session(request)
        refusal = self._logout_refusal(request, session, form)
        if refusal is not None:
            return self._refuse_logout(request, session, refusal)
        if session is None:  # signed out already (or the session expired): nothing to end
            response = web.HTTPSeeOther(SIGNED_OUT)
            response.del_cookie(self.cookies.session_name, path="/")
            return response
        await self.auth.end_session(session_id)
        target = SIGNED_OUT
        if session.login_method == "oidc" and self.oidc is not None:
            idp_logout = await self.oidc.logout_url(session.id_token, self.public_url + SIGNED_OUT)
            target = idp_logout or target
        response = web.HTTPSeeOther(target)
        response.del_cookie(self.cookies.session_name, path="/")
        log.info("sign-out: %s", session.subject)
        self._event(request, "logout", subject=session.subject)
        return response

    def _refuse_logout(
        self, request: web.Request, session: SessionData | None, reason: str
    ) -> web.Response:
        context_of(request).auth_refusal = reason
        self._event(
            request,
            "logout",
            subject=session.subject if session else None,
            outcome="failure",
            reason=reason,
        )
        message = "This sign-out was not sent from this site's own page, so nothing changed" + (
            ": you are still signed in. To sign out, use the button below." if session else "."
        )
        return self.page(request, "logout.html", self._logout_context(session, message), 403)
