"""Cross-site request checks for requests authenticated by a browser cookie."""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from aiohttp import web

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


def cross_site(request: web.Request, public_origin: str) -> bool:
    """A browser says this request comes from another site (programs send no Origin at all)."""
    origin = request.headers.get("Origin")
    if origin is not None:
        return origin.lower() != public_origin
    return request.headers.get("Sec-Fetch-Site") == "cross-site"
