"""The request target, parsed once, the way MLflow's servers will read what the gateway sends.

MLflow runs under uvicorn (h11, or httptools when installed). The path is percent-decoded once
(UTF-8) and routed by Starlette; the query string goes to Starlette's parser or, through the WSGI
bridge, to Werkzeug's. These readers disagree on a few spellings: httptools (and the aiohttp client
the gateway forwards with) drops a fragment while h11 keeps it in the query; Werkzeug keeps an
escape that is not UTF-8 as the text ``%FF`` where Starlette reads U+FFFD; bytes outside ASCII
are refused by one reader and decoded by another. A target with any of these is refused here, so
the rest of the gateway judges exactly what MLflow will act on. What goes upstream is written anew
from the parse that was judged (``Target.upstream``), never the raw bytes beside it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

# What h11 accepts in a target (visible ASCII). A space, a control or a byte outside ASCII never
# reaches the gateway's handler (aiohttp's parser refuses them), but this check does not rely on it.
_TARGET_CHARS = re.compile(r"[\x21-\x7e]*\Z")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# Decoded characters no MLflow name, id or path contains, and readers treat differently
# (NUL ends strings in C drivers; controls in a path are not routable).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# Kept as they are when the gateway writes a target anew; everything else is percent-encoded.
_PATH_SAFE = "/!$&'()*+,;=:@-._~"
_QUERY_SAFE = "!$'()*,/:;@-._~"


def _unchanged_by_quote(safe: str) -> re.Pattern[str]:
    """Text that quote(text, safe=safe) returns as it is: letters, digits, what quote() always
    keeps, and ``safe``. Most targets are such text; the regex says so in a fraction of quote()'s
    time."""
    return re.compile("[A-Za-z0-9_.~" + re.escape(safe) + "-]*\\Z")


_UNCHANGED = {safe: _unchanged_by_quote(safe) for safe in (_PATH_SAFE, _QUERY_SAFE)}


class BadTarget(ValueError):
    """The target could be read differently by MLflow; the message says what to change."""


@dataclass(frozen=True)
class Target:
    path: str  # decoded once, as MLflow routes it
    query: tuple[
        tuple[str, str], ...
    ]  # decoded pairs in order, as Starlette and Werkzeug read them
    upstream: str  # path and query written anew from the two above: what MLflow receives

    @property
    def query_string(self) -> str:
        return self.upstream.partition("?")[2]


def _decode(text: str, what: str, plus_is_space: bool) -> str:
    if plus_is_space:
        text = text.replace("+", " ")
    if "%" not in text:
        return text  # ASCII without escapes (the target passed _TARGET_CHARS) decodes to itself
    try:
        return unquote_to_bytes(text).decode("utf-8")
    except UnicodeDecodeError:
        raise BadTarget(f"the {what} has a percent-escape that is not UTF-8") from None


def _query_pairs(query: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    # Like parse_qsl (Starlette and Werkzeug both use it): "&" separates, empty parts are skipped,
    # a part without "=" is a key with an empty value.
    for part in query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        pairs.append((_decode(key, "query string", True), _decode(value, "query string", True)))
    for key, value in pairs:
        if "\x00" in key or "\x00" in value:
            raise BadTarget("the query string contains a NUL character (%00)")
    return tuple(pairs)


def serialise(path: str, query: tuple[tuple[str, str], ...]) -> str:
    """A target whose every reader decodes to ``path`` and ``query``."""
    target = _quoted(path, _PATH_SAFE)
    if query:
        target += "?" + "&".join(
            f"{_quoted(k, _QUERY_SAFE)}={_quoted(v, _QUERY_SAFE)}" for k, v in query
        )
    return target


def _quoted(text: str, safe: str) -> str:
    """quote(text, safe=safe), without calling it where it would change nothing."""
    return text if _UNCHANGED[safe].match(text) else quote(text, safe=safe)


def parse_target(raw: str) -> Target:
    """The target as MLflow will read it, or BadTarget when two readers could read it apart."""
    if not raw.startswith("/"):
        raise BadTarget("the request target must be a path starting with '/'")
    if "#" in raw:
        raise BadTarget(
            "the request target contains '#' (a fragment is never sent to a server; "
            "percent-encode it as %23 if it is part of a value)"
        )
    if not _TARGET_CHARS.match(raw):
        raise BadTarget("the request target contains a character that must be percent-encoded")
    if _BAD_ESCAPE.search(raw):
        raise BadTarget("the request target has a '%' that is not followed by two hex digits")
    raw_path, _, raw_query = raw.partition("?")
    path = _decode(raw_path, "path", False)
    if _CONTROL.search(path):
        raise BadTarget("the path contains a control character")
    if path.startswith("//"):
        # Werkzeug routes "//x" as "/x", Starlette as "//x".
        raise BadTarget("the path must not start with '//'")
    query = _query_pairs(raw_query)
    return Target(path, query, serialise(path, query))
