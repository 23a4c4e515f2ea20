"""Security headers for the gateway's own pages (MLflow's responses keep MLflow's headers)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.paths import PREFIX

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def content_security_policy(form_targets: tuple[str, ...]) -> str:
    # form-action must also allow the IdP: Chrome applies it to redirects after a form post
    # (signing out redirects to the IdP's logout endpoint).
    return "; ".join(
        [
            "default-src 'none'",
            "style-src 'self'",
            "img-src 'self'",
            "script-src 'self'",
            "connect-src 'self'",
            "form-action " + " ".join(("'self'", *form_targets)),
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ]
    )


def page_headers_middleware(
    form_targets: tuple[str, ...],
) -> Callable[..., Awaitable[web.StreamResponse]]:
    policy = content_security_policy(form_targets)

    @web.middleware
    async def add_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if request.path.startswith(PREFIX):
                _apply(exc, policy)
            raise
        if request.path.startswith(PREFIX) and not response.prepared:
            _apply(response, policy)
        return response

    return add_headers


def _apply(response: web.StreamResponse, policy: str) -> None:
    response.headers.setdefault("Content-Security-Policy", policy)
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
