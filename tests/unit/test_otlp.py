"""Trace ids read from OTLP exports exactly as MLflow's /v1/traces derives them."""

from __future__ import annotations

import gzip
import json
import secrets

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from gateway.authz.canonical import Ambiguous
from gateway.authz.otlp import mlflow_trace_ids


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
    assert mlflow_trace_ids(body, "application/x-protobuf", None) == expected
    assert mlflow_trace_ids(gzip.compress(body), "application/x-protobuf", "gzip") == expected


def test_json_hex_ids() -> None:
    trace_id = secrets.token_hex(16)
    body = json.dumps(
        {
            "resourceSpans": [
                {"scopeSpans": [{"spans": [{"traceId": trace_id, "spanId": "00" * 8}]}]}
            ]
        }
    )
    assert mlflow_trace_ids(body.encode(), "application/json; charset=utf-8", None) == {
        f"tr-{trace_id}"
    }


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
        mlflow_trace_ids(body, content_type, encoding)
