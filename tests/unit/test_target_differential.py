"""The gateway reads a request target exactly as MLflow's servers will read what it forwards.

A generated corpus of odd targets goes through aiohttp's own request parser (what the gateway's
server does), then the edge's parse. Whatever the edge does not refuse is forwarded as
``Target.upstream``; that text is then read by every reader MLflow's server may use:

- the aiohttp client the gateway forwards with (yarl), which must send it unchanged;
- uvicorn with h11 (MLflow's default) and uvicorn with httptools (``uvicorn[standard]``), as each
  builds the ASGI scope's path and query string;
- Starlette's query parser (MLflow's FastAPI routes) and Werkzeug's request (MLflow's Flask app,
  behind the WSGI bridge MLflow mounts).

Any difference between what the gateway judged and what one of them reads fails the test. The
raw targets are also read by those servers directly, to show that each refusal is needed: a
refused target is one that some reader reads differently (or that cannot be forwarded intact).
"""

from __future__ import annotations

import asyncio
import itertools
import urllib.parse
import warnings
from dataclasses import dataclass

import h11
import pytest
from aiohttp.http_parser import HttpRequestParser
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.datastructures import QueryParams
from werkzeug.wrappers import Request as WerkzeugRequest
from yarl import URL

from gateway.target import BadTarget, Target, parse_target, serialise

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # deprecated in Starlette, still what MLflow's bridge uses
    from starlette.middleware.wsgi import build_environ

httptools = pytest.importorskip("httptools")


@dataclass(frozen=True)
class Reading:
    """What one reader makes of a target: the routed path and the query's pairs."""

    path: str
    query: tuple[tuple[str, str], ...]


def _scope_h11(target: bytes) -> tuple[bytes, bytes, str]:
    """uvicorn's h11 protocol: the target as h11 gives it, split at the first '?'."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    event = conn.next_event()
    assert isinstance(event, h11.Request)
    raw_path, _, query_string = event.target.partition(b"?")
    return raw_path, query_string, urllib.parse.unquote(raw_path.decode("ascii"))


def _scope_httptools(target: bytes) -> tuple[bytes, bytes, str]:
    """uvicorn's httptools protocol: httptools.parse_url, then unquote when '%' is present."""
    parsed = httptools.parse_url(target)
    path = parsed.path.decode("ascii")
    if "%" in path:
        path = urllib.parse.unquote(path)
    return parsed.path, parsed.query or b"", path


def _readings(target: bytes) -> dict[str, Reading]:
    readings = {}
    for server, scope_of in (("h11", _scope_h11), ("httptools", _scope_httptools)):
        raw_path, query_string, path = scope_of(target)
        scope = {
            "type": "http",
            "method": "GET",
            "path": path,
            "raw_path": raw_path,
            "root_path": "",
            "query_string": query_string,
            "headers": [],
            "http_version": "1.1",
        }
        starlette = QueryParams(query_string)
        readings[f"uvicorn+{server}+starlette"] = Reading(path, tuple(starlette.multi_items()))
        werkzeug = WerkzeugRequest(build_environ(scope, b""))
        readings[f"uvicorn+{server}+werkzeug"] = Reading(
            werkzeug.path, tuple(werkzeug.args.items(multi=True))
        )
    return readings


def _aiohttp_server_reads(raw: bytes) -> str | None:
    """The target as the gateway's aiohttp server hands it over (request.raw_path), or None when
    aiohttp's parser refuses the request line itself."""
    loop = asyncio.new_event_loop()
    try:
        parser = HttpRequestParser(
            None, loop, 2**16, max_line_size=64 * 1024, max_field_size=16 * 1024
        )
        try:
            messages, _, _ = parser.feed_data(b"GET " + raw + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        except Exception:
            return None
        return messages[0][0].path
    finally:
        loop.close()


def _sent_by_client(upstream: str) -> str:
    """The request line's target the gateway's aiohttp client sends for ``upstream``."""
    return URL("http://mlflow:5000" + upstream, encoded=True).raw_path_qs


def _gateway(raw: bytes) -> Target | None:
    seen = _aiohttp_server_reads(raw)
    if seen is None:
        return None
    try:
        return parse_target(seen)
    except BadTarget:
        return None


def check(raw: bytes) -> None:
    target = _gateway(raw)
    if target is None:
        return
    judged = Reading(target.path, target.query)
    sent = _sent_by_client(target.upstream)
    assert sent == target.upstream, f"the aiohttp client would send {sent!r}"
    for reader, reading in _readings(sent.encode("ascii")).items():
        assert reading == judged, f"{raw!r}: {reader} reads {reading}, the gateway judged {judged}"


# -- the corpus -----------------------------------------------------------------------------------

PATHS = [
    b"/api/2.0/mlflow/runs/get",
    b"/api/2.0/mlflow%2Fruns%2Fget",
    b"/api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/a%20b%2Bc+d",
    b"/api/2.0/mlflow-artifacts/artifacts/1/%2e%2e/2/x",
    b"/a%00b",
    b"/a%0Ab",
    b"/a%FFb",
    b"/a%C3%A9",
    b"/a%e2%80%8b",
    b"/a%zz",
    b"/a%",
    b"/a;b=c",
    b"//api/2.0/mlflow/runs/get",
    b"/a%23b",
    b"/a%3Fb",
    b"/a%25%32%46b",
    b"/a/./b/../c",
    b"/caf\xc3\xa9",
    b"/a\\b",
]
QUERIES = [
    b"",
    b"?",
    b"?run_id=abc",
    b"?run_id=abc#x",
    b"?run_id=abc#",
    b"?run_id=abc%23x",
    b"?run_id=a&run_id=b",
    b"?run_id=a?run_id=b",
    b"?run_id=a;run_id=b",
    b"?run_id=a%00b",
    b"?run_id=a%0Ab",
    b"?name=a+b",
    b"?name=a%20b",
    b"?name=a%2Bb",
    b"?name=%FF",
    b"?name=%C3",
    b"?name=%C0%AF",
    b"?name=%zz",
    b"?name=%",
    b"?name=%EF%BC%A1",
    b"?name=e%CC%81",
    b"?name=%C3%A9",
    b"?name=\xc3\xa9",
    b"?name=a&&b=c",
    b"?=v",
    b"?k",
    b"?k=",
    b"?k%3Dx=v",
    b"?k=v%26w=x",
    b"?k=" + b"x" * 20_000,
    b"?filter=name+%3D+%27x%27",
    b"?name=a\x7fb",
    b"?a=1#?b=2",
    b'?name=[x]{y}|z^`"<>',
]


def corpus() -> list[bytes]:
    return [p + q for p, q in itertools.product(PATHS, QUERIES)]


@pytest.mark.parametrize("raw", corpus(), ids=lambda raw: repr(raw)[:80])
def test_every_forwarded_target_reads_alike_everywhere(raw: bytes) -> None:
    check(raw)


_PIECES = st.sampled_from(
    [
        "a", "Z", "0", "-", ".", "_", "~", "/", "?", "&", "=", "+", ";", ":", "@", "!", "$", "'",
        "(", ")", "*", ",", "#", "%", "%2", "%23", "%26", "%3D", "%2B", "%20", "%00", "%0A",
        "%FF", "%C3", "%C3%A9", "%E2%80%8B", "%EF%BC%A1", "%2F", "%25", "%3F", "[", "]", "\\",
    ]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES, max_size=24))
def test_generated_targets_read_alike_everywhere(pieces: list[str]) -> None:
    check(("/" + "".join(pieces)).encode("ascii"))


# -- each refusal is needed -------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"/api/2.0/mlflow/runs/get?run_id=abc#x",  # httptools and the client drop it, h11 keeps it
        b"/api/2.0/mlflow/runs/get?name=%FF",  # Werkzeug keeps "%FF", Starlette reads U+FFFD
        b"/api/2.0/mlflow/runs/get?name=%zz",  # a broken escape
        b"/api/2.0/mlflow/runs/get?run_id=a%00b",  # NUL
        b"/a%FF/b",  # a path that is not UTF-8
    ],
)
def test_targets_read_apart_are_refused(raw: bytes) -> None:
    with pytest.raises(BadTarget) as refused:
        parse_target(raw.decode("ascii"))
    assert str(refused.value)  # the caller is told what to change


def test_a_fragment_is_read_differently_by_the_servers_mlflow_uses() -> None:
    """Why '#' must be refused: h11 keeps it in the query, httptools drops it."""
    readings = _readings(b"/api/2.0/mlflow/runs/get?run_id=abc#x")
    assert readings["uvicorn+h11+starlette"].query == (("run_id", "abc#x"),)
    assert readings["uvicorn+httptools+starlette"].query == (("run_id", "abc"),)
    assert URL("http://m/api/x?run_id=abc#x", encoded=True).raw_path_qs == "/api/x?run_id=abc"


def test_an_escape_that_is_not_utf8_is_read_differently() -> None:
    readings = _readings(b"/x?name=%FF")
    assert readings["uvicorn+h11+starlette"].query == (("name", "\ufffd"),)
    assert readings["uvicorn+h11+werkzeug"].query == (("name", "%FF"),)


def test_ordinary_targets_pass_unchanged_in_meaning() -> None:
    target = parse_target("/api/2.0/mlflow/runs/get?run_id=0123abc&x=a+b%2Bc")
    assert target.path == "/api/2.0/mlflow/runs/get"
    assert target.query == (("run_id", "0123abc"), ("x", "a b+c"))
    assert parse_target(target.upstream) == target


def _quoting_every_part(path: str, query: list[tuple[str, str]]) -> str:
    quoted = urllib.parse.quote(path, safe="/!$&'()*+,;=:@-._~")
    if query:
        quoted += "?" + "&".join(
            urllib.parse.quote(k, safe="!$'()*,/:;@-._~")
            + "="
            + urllib.parse.quote(v, safe="!$'()*,/:;@-._~")
            for k, v in query
        )
    return quoted


@pytest.mark.parametrize(
    "char", [chr(c) for c in range(0x100)] + ["\u00e9", "\u200b", "\U0001f600"]
)
def test_each_character_is_written_anew_as_quoting_writes_it(char: str) -> None:
    """serialise() skips quote() for text it would leave unchanged: never for other text."""
    query = [(char, char), ("k" + char, char + "v")]
    assert serialise("/" + char, tuple(query)) == _quoting_every_part("/" + char, query)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=12), st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8))))
def test_the_target_written_anew_is_what_quoting_every_part_gives(
    path: str, query: list[tuple[str, str]]
) -> None:
    assert serialise("/" + path, tuple(query)) == _quoting_every_part("/" + path, query)
