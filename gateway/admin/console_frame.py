"""What every console page shares: rendering with the signed-in person and a one-time notice, the
admin guard, and the form POST that changes something and comes back (post/redirect/get)."""

from __future__ import annotations

import base64
import binascii
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import aiohttp_jinja2
from aiohttp import web
from redis.exceptions import RedisError

from gateway.admin.fields import BadInput
from gateway.admin.service import Actor, admin_refusal
from gateway.authn.csrf import session_form
from gateway.authn.principal import Principal
from gateway.authz.resolve import LookupFailed
from gateway.context import context_of
from gateway.policy_lines import PolicyError
from gateway.store.users import StoreError

if TYPE_CHECKING:
    from gateway.authz.enforcer import Enforcer

log = logging.getLogger(__name__)

PREFIX = "/.gateway/admin"
FLASH_COOKIE = "mlgw_flash"
Page = Callable[[web.Request], Awaitable[web.StreamResponse]]
# A change: the request, its form, who makes it → the notice to show, or a page of its own.
Change = Callable[[web.Request, Any, Actor], Awaitable[str | web.Response]]
H = TypeVar("H", bound=Callable[..., Any])


@dataclass(frozen=True)
class Route:
    """A console route, written as the decorator of what answers it: GET a page, POST a change
    (a form, see `Frame.change`); ``admin``: for admins only."""

    method: Literal["GET", "POST"]
    path: str  # below PREFIX
    admin: bool = True

    def __call__(self, handler: H) -> H:
        _ROUTES.setdefault(handler, []).append(self)
        return handler


def page(path: str, admin: bool = True) -> Route:
    return Route("GET", path, admin)


def form_post(path: str, admin: bool = True) -> Route:
    return Route("POST", path, admin)


# The routes each page or change function was decorated with, in the order written.
_ROUTES: dict[object, list[Route]] = {}


class Frame:
    def __init__(self, enforcer: Enforcer) -> None:
        self.enforcer = enforcer

    def admin_refusal(self, request: web.Request) -> str | None:
        return admin_refusal(self.enforcer, context_of(request).principal)

    def _administers(self, principal: Principal) -> bool:
        return admin_refusal(self.enforcer, principal) is None

    def render(
        self, request: web.Request, template: str, context: dict[str, Any], status: int = 200
    ) -> web.Response:
        ctx = context_of(request)
        base = {
            "principal": ctx.principal,
            "csrf_token": ctx.session.csrf_token if ctx.session else "",
            "flash": _read_flash(request),
            "path": request.path,
            "here": request.path_qs,
            # The admin tabs and links follow the same rule as the pages behind them.
            "is_admin": self._administers,
        }
        response = aiohttp_jinja2.render_template(
            template, request, {**base, **context}, status=status
        )
        response.headers["Cache-Control"] = "no-store"
        if base["flash"]:
            response.del_cookie(FLASH_COOKIE, path=PREFIX)
        return response

    def denied(self, request: web.Request, why: str) -> web.Response:
        context_of(request).authz_refusal = why
        return self.render(request, "admin/denied.html", {"why": why}, status=403)

    def admin(self, page: Page) -> Page:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if why := self.admin_refusal(request):
                return self.denied(request, why)
            return await page(request)

        return guarded

    def change(self, action: Change, admin: bool = True) -> Page:
        """A form POST: session + CSRF token (+ admin), then the action, then back with a notice."""

        async def handle(request: web.Request) -> web.StreamResponse:
            ctx = context_of(request)
            if admin and (why := self.admin_refusal(request)):
                return self.denied(request, why)
            form = await request.post()
            if not session_form(ctx.session, form):
                # Without a session, a browser's cached basic credentials would ride along on a
                # forged cross-site form: changes from the console need a signed-in session.
                return self.denied(
                    request, "The form expired or was not sent from this console. Reload the page."
                )
            back = _back(form.get("back"))
            actor = Actor(ctx.principal, ctx.client_ip, ctx.request_id)
            try:
                outcome = await action(request, form, actor)
                if isinstance(outcome, web.Response):
                    return outcome
                notice, kind = outcome, "ok"
            except (StoreError, PolicyError, BadInput, ValueError) as exc:
                notice, kind = str(exc), "error"
            except (RedisError, LookupFailed) as exc:
                log.warning("console change failed: %s", exc)
                notice, kind = "A backing service is unreachable; nothing was changed.", "error"
            response = web.HTTPSeeOther(back)
            _set_flash(response, kind, notice)
            return response

        return handle


class Pages:
    """The pages of one part of the console, each decorated with its `Route`."""

    def __init__(self, frame: Frame) -> None:
        self.frame = frame

    def routes(self) -> list[web.RouteDef]:
        """This part's routes, in the order its pages are written."""
        found = []
        for name, member in vars(type(self)).items():
            for route in _ROUTES.get(member, []) if inspect.isfunction(member) else []:
                found.append(self._route(route, getattr(self, name)))
        return found

    def _route(self, route: Route, answer: Any) -> web.RouteDef:
        if route.method == "POST":
            return web.post(PREFIX + route.path, self.frame.change(answer, route.admin))
        return web.get(PREFIX + route.path, self.frame.admin(answer) if route.admin else answer)


def text(form: Any, name: str, default: str = "") -> str:
    """A form field as the console reads it: a string, trimmed."""
    return str(form.get(name, default)).strip()


def _back(candidate: Any) -> str:
    """Where a form returns to: the console page it names, never anywhere else."""
    if (
        isinstance(candidate, str)
        and candidate.startswith(PREFIX + "/")
        and len(candidate) < 2048
        and not any(ch in candidate for ch in "\\\r\n\t")
        and "//" not in candidate
    ):
        return candidate
    return PREFIX + "/"


def _set_flash(response: web.StreamResponse, kind: str, notice: str) -> None:
    payload = base64.urlsafe_b64encode(json.dumps([kind, notice[:2000]]).encode()).decode()
    response.set_cookie(
        FLASH_COOKIE, payload, path=PREFIX, max_age=60, httponly=True, samesite="Strict"
    )


def _read_flash(request: web.Request) -> dict[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        kind, notice = json.loads(base64.urlsafe_b64decode(raw.encode()))
    except (ValueError, binascii.Error, TypeError):
        return None
    return {"kind": "error" if kind == "error" else "ok", "text": str(notice)}
