"""Cross-site request checks for requests authenticated by a browser cookie."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from gateway.authn.sessions import SessionData

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def same_origin(request: web.Request, public_origin: str) -> bool:
    """The request says it comes from our own pages: Origin, or failing that Referer, matches."""
    origin = request.headers.get("Origin")
    if origin is not None:
        return origin.lower() == public_origin
    referer = request.headers.get("Referer")
    if referer is not None:
        return origin_of(referer) == public_origin
    return False


def form_token_matches(expected: str, submitted: str | None) -> bool:
    return submitted is not None and hmac.compare_digest(expected, submitted)


def session_form(session: SessionData | None, form: Mapping[str, Any]) -> bool:
    """The form was sent from one of our pages in this browser session: it carries the session's
    CSRF token (a page on another site cannot read it). The check of every gateway form."""
    submitted = form.get("csrf_token")
    return session is not None and form_token_matches(
        session.csrf_token, submitted if isinstance(submitted, str) else None
    )


def cross_site(request: web.Request, public_origin: str) -> bool:
    """A browser says this request comes from another site (programs send no Origin at all)."""
    origin = request.headers.get("Origin")
    if origin is not None:
        return origin.lower() != public_origin
    return request.headers.get("Sec-Fetch-Site") == "cross-site"
