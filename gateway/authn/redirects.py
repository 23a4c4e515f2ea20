"""Where a browser may be sent after signing in: only a path on this site (no open redirect)."""

from __future__ import annotations

from urllib.parse import urlsplit

from gateway.paths import CALLBACK, LOGIN

DEFAULT_TARGET = "/"


def safe_next(candidate: str | None) -> str:
    """``candidate`` if it is a same-origin path, else the default target."""
    if not candidate or len(candidate) > 2048:
        return DEFAULT_TARGET
    # Browsers treat "\" like "/" and drop tabs/newlines, so "/\evil.com" or "/\t/evil.com" would
    # leave the site: refuse anything with them rather than try to normalise.
    if any(ch in candidate for ch in "\\\t\r\n") or any(ord(ch) < 0x20 for ch in candidate):
        return DEFAULT_TARGET
    parts = urlsplit(candidate)
    if parts.scheme or parts.netloc or not candidate.startswith("/") or candidate.startswith("//"):
        return DEFAULT_TARGET
    if candidate.startswith((LOGIN, CALLBACK)):
        return DEFAULT_TARGET
    return candidate
