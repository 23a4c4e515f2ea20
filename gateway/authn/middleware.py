"""The authentication stage: every request leaves it with a Principal, or is refused here.

Browsers navigating without a session are sent to the login page; API clients get 401 in MLflow's
error shape with a WWW-Authenticate challenge. Cookie-authenticated unsafe requests must come from
our own origin (CSRF).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import quote

from aiohttp import web

from gateway import paths
from gateway.authn.authenticator import Authenticator, AuthFailure
from gateway.authn.csrf import SAFE_METHODS, cross_site, same_origin
from gateway.context import context_of
from gateway.errors import PERMISSION_DENIED, UNAUTHENTICATED, mlflow_error

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Reachable without signing in: probes, metrics, and the sign-in flow itself.
PUBLIC_PATHS = frozenset(
    {
        *paths.PROBES,
        paths.LOGIN,
        paths.LOGIN_SSO,
        paths.CALLBACK,
        paths.LOGOUT,
        paths.OPENAPI,
    }
)
PUBLIC_PREFIXES = (paths.STATIC,)
CHALLENGE = 'Bearer realm="mlflow-gateway", Basic realm="mlflow-gateway", charset="UTF-8"'
LOGIN_PATH = paths.LOGIN


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def wants_html(request: web.Request) -> bool:
    return request.method in {"GET", "HEAD"} and "text/html" in request.headers.get("Accept", "")


def login_redirect(request: web.Request) -> web.HTTPFound:
    return web.HTTPFound(f"{LOGIN_PATH}?next={quote(request.path_qs, safe='/')}")


def _refusal(failure: AuthFailure) -> web.Response:
    headers = {"WWW-Authenticate": CHALLENGE, paths.REFUSED_HEADER: "authentication"}
    if failure.retry_after is not None:
        headers["Retry-After"] = str(failure.retry_after)
        return web.json_response(
            {"error_code": "RESOURCE_EXHAUSTED", "message": failure.message},
            status=failure.status,
            headers=headers,
        )
    return mlflow_error(UNAUTHENTICATED, failure.message, headers=headers)


def authn_middleware(
    authenticator: Authenticator, public_origin: str
) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        ctx = context_of(request)
        outcome = await authenticator.authenticate(
            request.headers.get("Authorization"),
            request.cookies.get(authenticator.session_cookie),
            ctx.client_ip,
        )
        ctx.principal = outcome.principal
        ctx.session = outcome.session
        if is_public(request.path):
            return await handler(request)
        if outcome.failure is not None:
            ctx.auth_refusal = outcome.failure.reason
            return _refusal(outcome.failure)
        if not outcome.principal.authenticated:
            ctx.auth_refusal = "no credentials"
            if wants_html(request):
                raise login_redirect(request)
            return _refusal(AuthFailure("no credentials", "Authentication required."))
        # A browser sends its session cookie, and basic credentials it has cached, along with
        # requests that other sites make it send: changes must come from this site's pages.
        method = outcome.principal.method
        if request.method not in SAFE_METHODS and (
            (method == "session" and not same_origin(request, public_origin))
            or (method == "password" and cross_site(request, public_origin))
        ):
            ctx.auth_refusal = f"cross-origin request with {method} credentials"
            return mlflow_error(
                PERMISSION_DENIED,
                "Cross-origin request refused: changes made with a browser's session or "
                "saved password must come from this site's own pages.",
                headers={paths.REFUSED_HEADER: "authentication"},
            )
        return await handler(request)

    return authenticate
