"""Trace ids read from OTLP exports exactly as MLflow's /v1/traces derives them."""

from __future__ import annotations

import gzip
import json
import secrets
import zlib

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from gateway.authz.canonical import Ambiguous
from gateway.authz.otlp import MAX_DECOMPRESSED, decompress, mlflow_trace_ids


def trace_ids(body: bytes, content_type: str, encoding: str | None) -> set[str]:
    return mlflow_trace_ids(decompress(body, encoding), content_type)


def _request(trace_ids: list[bytes]) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    resource.resource.attributes.add(key="service.name").value.string_value = "svc"
    for index, trace_id in enumerate(trace_ids):
        scope = resource.scope_spans.add()
        span = scope.spans.add()
        span.trace_id, span.span_id, span.name = trace_id, secrets.token_bytes(8), f"s{index}"
        span.attributes.add(key="mlflow.traceRequestId").value.string_value = '"tr-forged"'
    return request


def test_protobuf_and_gzip() -> None:
    ids = [secrets.token_bytes(16), secrets.token_bytes(16)]
    body = _request(ids).SerializeToString()
    expected = {"tr-" + i.hex() for i in ids}
    assert trace_ids(body, "application/x-protobuf", None) == expected
    assert trace_ids(gzip.compress(body), "application/x-protobuf", "gzip") == expected


def test_every_gzip_member_is_read_as_mlflow_reads_them() -> None:
    """gzip.decompress (what MLflow calls) reads members back to back: a second member's spans
    are judged too."""
    first, second = _request([secrets.token_bytes(16)]), _request([secrets.token_bytes(16)])
    one, two = first.SerializeToString(), second.SerializeToString()
    body = gzip.compress(one) + gzip.compress(two)
    assert decompress(body, "gzip") == gzip.decompress(body) == one + two
    expected = {"tr-" + s.trace_id.hex() for r in (first, second) for s in _spans(r)}
    assert trace_ids(body, "application/x-protobuf", "GZIP") == expected


def _spans(request: ExportTraceServiceRequest) -> list:
    return [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]


def test_deflate_zlib_and_raw_as_mlflow_accepts() -> None:
    body = _request([secrets.token_bytes(16)]).SerializeToString()
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    assert decompress(zlib.compress(body), "deflate") == body
    assert decompress(raw.compress(body) + raw.flush(), "deflate") == body


def test_decompression_is_bounded() -> None:
    bomb = gzip.compress(b"\0" * (MAX_DECOMPRESSED + 1))
    with pytest.raises(Ambiguous, match="too large"):
        decompress(bomb, "gzip")
    half = gzip.compress(b"\0" * (MAX_DECOMPRESSED // 2 + 1))
    with pytest.raises(Ambiguous, match="too large"):
        decompress(half + half, "gzip")


def test_trailing_garbage_after_a_member_is_refused() -> None:
    with pytest.raises(Ambiguous):
        decompress(gzip.compress(b"x") + b"junk", "gzip")
    with pytest.raises(Ambiguous):
        decompress(b"", "gzip")


def test_json_hex_ids() -> None:
    trace_id = secrets.token_hex(16)
    body = json.dumps(
        {
            "resourceSpans": [
                {"scopeSpans": [{"spans": [{"traceId": trace_id, "spanId": "00" * 8}]}]}
            ]
        }
    )
    assert trace_ids(body.encode(), "application/json; charset=utf-8", None) == {f"tr-{trace_id}"}


@pytest.mark.parametrize(
    ("body", "content_type", "encoding"),
    [
        (b"\xff\xff\xff", "application/x-protobuf", None),
        (b"{}", "text/plain", None),
        (b"not gzip", "application/x-protobuf", "gzip"),
        (b"{}", "application/json", "br"),
        (
            json.dumps(
                {"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": "00"}]}]}]}
            ).encode(),
            "application/json",
            None,
        ),
    ],
)
def test_unreadable_exports_are_refused(
    body: bytes, content_type: str, encoding: str | None
) -> None:
    with pytest.raises(Ambiguous):
        trace_ids(body, content_type, encoding)
