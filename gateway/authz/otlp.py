"""The trace ids inside an OTLP export, read as MLflow's /v1/traces will read them.

MLflow files every span under the trace `tr-<hex of the OTLP trace id>` (it does not trust a
client-sent request id), merging into that trace if it exists. So each trace id in the body must be
judged: an existing trace belongs to an experiment whose owner must allow the write. The body is
protobuf (`application/x-protobuf`) or JSON, possibly gzip- or deflate-compressed; only the fields
on the path to `Span.trace_id` are read.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Iterator
from typing import Any

from gateway.authz.canonical import Ambiguous

MAX_DECOMPRESSED = 64 * 1024 * 1024
# ExportTraceServiceRequest.resource_spans = 1, ResourceSpans.scope_spans = 2,
# ScopeSpans.spans = 2, Span.trace_id = 1.
_PATH = (1, 2, 2)
_TRACE_ID = 1


def _inflate(body: bytes, wbits: int, limit: int) -> tuple[bytes, bytes]:
    """One compressed stream: its data, and the bytes after its end."""
    decoder = zlib.decompressobj(wbits)
    data = decoder.decompress(body, limit + 1)
    if len(data) > limit or decoder.unconsumed_tail:
        raise Ambiguous("the decompressed body is too large")
    if not decoder.eof:
        raise zlib.error("truncated")
    return data, decoder.unused_data


def decompress(body: bytes, encoding: str | None) -> bytes:
    """The body as MLflow's /v1/traces decompresses it (``gzip.decompress``: every member, back
    to back; deflate: zlib, else raw deflate), bounded. A body is returned as is when it is not
    compressed."""
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    try:
        if encoding == "gzip":
            members, rest = [], body
            while rest:
                data, rest = _inflate(rest, 16 + zlib.MAX_WBITS, MAX_DECOMPRESSED)
                members.append(data)
                if sum(map(len, members)) > MAX_DECOMPRESSED:
                    raise Ambiguous("the decompressed body is too large")
            if not members:
                raise zlib.error("empty")
            return b"".join(members)
        if encoding == "deflate":
            for wbits in (zlib.MAX_WBITS, -zlib.MAX_WBITS):
                try:
                    data, rest = _inflate(body, wbits, MAX_DECOMPRESSED)
                except zlib.error:
                    continue
                if not rest:  # zlib.decompress refuses bytes after the stream
                    return data
            raise zlib.error("not deflate")
    except zlib.error:
        raise Ambiguous("the compressed body is corrupt") from None
    raise Ambiguous(f"unsupported Content-Encoding {encoding!r}")


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise Ambiguous("malformed protobuf")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int, bytes | int]]:
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, wire, value
        elif wire == 1:
            pos += 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise Ambiguous("malformed protobuf")
            yield number, wire, data[pos : pos + length]
            pos += length
        elif wire == 5:
            pos += 4
        else:
            raise Ambiguous("malformed protobuf")
        if pos > len(data):
            raise Ambiguous("malformed protobuf")


def _protobuf_trace_ids(data: bytes, depth: int = 0) -> Iterator[bytes]:
    for number, wire, value in _fields(data):
        if wire != 2 or not isinstance(value, bytes):
            continue
        if depth == len(_PATH):
            if number == _TRACE_ID:
                yield value
        elif number == _PATH[depth]:
            yield from _protobuf_trace_ids(value, depth + 1)


def _member(obj: Any, snake: str, camel: str) -> Any:
    if not isinstance(obj, dict):
        return None
    if snake != camel and snake in obj and camel in obj:
        raise Ambiguous(f"the body spells {snake!r} two ways")
    return obj.get(snake, obj.get(camel))


def _json_trace_ids(body: bytes) -> Iterator[bytes]:
    try:
        data = json.loads(body)
    except ValueError:
        raise Ambiguous("the body is not JSON") from None
    for resource in _member(data, "resource_spans", "resourceSpans") or []:
        for scope in _member(resource, "scope_spans", "scopeSpans") or []:
            for span in scope.get("spans") or [] if isinstance(scope, dict) else []:
                raw = _member(span, "trace_id", "traceId")
                if not isinstance(raw, str):
                    raise Ambiguous("every span needs a traceId")
                yield _json_id(raw)


def _json_id(raw: str) -> bytes:
    # OTLP/JSON uses hex; MLflow also accepts base64 (what protobuf's JSON mapping uses).
    try:
        return bytes.fromhex(raw) if len(raw) == 32 else base64.b64decode(raw, validate=True)
    except (ValueError, binascii.Error):
        raise Ambiguous("invalid traceId") from None


def mlflow_trace_ids(data: bytes, content_type: str | None) -> set[str]:
    """The traces a (decompressed) export adds spans to."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media == "application/json":
        raw_ids = list(_json_trace_ids(data))
    elif media == "application/x-protobuf":
        raw_ids = list(_protobuf_trace_ids(data))
    else:
        raise Ambiguous("OTLP bodies are application/x-protobuf or application/json")
    ids = set()
    for raw in raw_ids:
        if len(raw) != 16:
            raise Ambiguous("OTLP trace ids are 16 bytes")
        ids.add("tr-" + raw.hex())
    return ids
