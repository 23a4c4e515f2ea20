"""The attack catalogue: every `Attack` team B (or another principal) tries, with the outcome it
must have, and the helpers that build the requests. Pure data: see `tests.attacks` for how the
cases are run and how to add one."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

DENIED, ALLOWED, NO_LEAK = "denied", "allowed", "no-leak"
JSON = "application/json"


@dataclass(frozen=True)
class Step:
    """A request around an attack: set-up before it (outcome not judged), or a check after it."""

    method: str
    path: str
    body: Any = None
    who: str = "admin"
    status: int | None = None  # for checks after the attack: the status it must get


@dataclass(frozen=True)
class Attack:
    name: str
    method: str
    path: str
    # dict/list: sent as JSON; str: sent as text (placeholders filled); None: no body.
    body: Any = None
    headers: tuple[tuple[str, str], ...] = ()
    # bob (team B), alice (team A), carol (reads every experiment but A's, by a deny rule),
    # admin, anonymous, or mlflow (straight to MLflow, no gateway: proves what MLflow does).
    who: str = "bob"
    expect: str = DENIED
    status: int | None = None  # the exact status, where it matters
    content_type: str | None = JSON  # None: no Content-Type header at all
    # Applied to the encoded body, in order: json-string (double encoding), utf-16, bom, gzip.
    wrap: tuple[str, ...] = ()
    before: tuple[Step, ...] = ()
    after: tuple[Step, ...] = ()
    twin: bool = True  # also run the /ajax-api twin of an /api path
    regression: str | None = None


def _otlp(trace_hex: str) -> dict[str, Any]:
    """An OTLP/JSON export with one root span in the trace ``trace_hex``."""
    span = {
        "traceId": trace_hex,
        "spanId": "<new.span>",
        "name": "injected-by-bob",
        "kind": 1,
        "startTimeUnixNano": "1767225600000000000",
        "endTimeUnixNano": "1767225605000000000",
        "status": {},
    }
    return {"resourceSpans": [{"resource": {}, "scopeSpans": [{"scope": {}, "spans": [span]}]}]}


def _trace(trace_id: str, experiment: str, **info: Any) -> dict[str, Any]:
    location = {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment}}
    trace_info = {
        "trace_id": trace_id,
        "trace_location": location,
        "request_time": "2026-01-01T00:00:00Z",
        "state": "OK",
        **info,
    }
    return {"trace": {"trace_info": trace_info}}


def _gql(query: str, **extra: Any) -> dict[str, Any]:
    return {"query": query, **extra}


def _token(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode()


def _q(text: str) -> str:
    return quote(text, safe="<>.")


E = "/api/2.0/mlflow/experiments/get?experiment_id="
ART = "/api/2.0/mlflow-artifacts/artifacts/"
A_FILE = "<a.exp>/<a.run>/artifacts/secret.txt"
SET_TAG = "/api/2.0/mlflow/runs/set-tag"
A_TAG = {"run_id": "<a.run>", "key": "pwned", "value": "by-bob"}
B_TAG = {"run_id": "<b.run>", "key": "harmless", "value": "bob"}
RM, MV = "/api/2.0/mlflow/registered-models", "/api/2.0/mlflow/model-versions"
TRACES_V3 = "/api/3.0/mlflow/traces"
GRAPHQL = "/graphql"
RUN_FIELDS = "run { info { runId experimentId } }"
TRACE_LOCATION_TAG = "mlflow-artifacts:/<a.exp>/traces/<a.trace>/artifacts"


def _stage(model: str, stage: Any) -> dict[str, Any]:
    return {"name": model, "version": "1", "stage": stage, "archive_existing_versions": False}


def _loc(experiment: str) -> dict[str, Any]:
    return {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment}}


CASES: list[Attack] = [
    # -- paths: encodings, double encodings, dot segments, slashes, case, parameters, methods -----
    Attack("path baseline", "GET", E + "<a.exp>"),
    Attack("path %2F", "GET", "/api/2.0/mlflow%2Fexperiments%2Fget?experiment_id=<a.exp>"),
    Attack(
        "path %2f lower-case hex",
        "GET",
        "/api/2.0/mlflow%2fexperiments%2fget?experiment_id=<a.exp>",
    ),
    Attack(
        "path %252F double", "GET", "/api/2.0/mlflow%252Fexperiments%252Fget?experiment_id=<a.exp>"
    ),
    Attack(
        "path letters encoded, mixed hex",
        "GET",
        "/api/2.0/m%6Cflow/experiments/g%65t?experiment_id=<a.exp>",
    ),
    Attack("path .. raw", "GET", "/api/2.0/mlflow/runs/../experiments/get?experiment_id=<a.exp>"),
    Attack(
        "path %2e%2e", "GET", "/api/2.0/mlflow/runs/%2e%2e/experiments/get?experiment_id=<a.exp>"
    ),
    Attack(
        "path %2E%2e mixed",
        "GET",
        "/api/2.0/mlflow/runs/%2E%2e/experiments/get?experiment_id=<a.exp>",
    ),
    Attack(
        "path %252e%252e double",
        "GET",
        "/api/2.0/mlflow/runs/%252e%252e/experiments/get?experiment_id=<a.exp>",
    ),
    Attack("path ..%2F", "GET", "/api/2.0/mlflow/runs/..%2Fexperiments/get?experiment_id=<a.exp>"),
    Attack("path // leading", "GET", "//api/2.0/mlflow/experiments/get?experiment_id=<a.exp>"),
    Attack("path // inside", "GET", "/api/2.0//mlflow/experiments/get?experiment_id=<a.exp>"),
    Attack("path /./", "GET", "/api/2.0/mlflow/./experiments/get?experiment_id=<a.exp>"),
    Attack("path /./ leading", "GET", "/./api/2.0/mlflow/experiments/get?experiment_id=<a.exp>"),
    Attack("path /API/", "GET", "/API/2.0/mlflow/experiments/get?experiment_id=<a.exp>"),
    Attack("path /Api/", "GET", "/Api/2.0/mlflow/experiments/get?experiment_id=<a.exp>"),
    Attack(
        "path upper-case operation", "GET", "/api/2.0/mlflow/experiments/GET?experiment_id=<a.exp>"
    ),
    Attack("path trailing slash", "GET", "/api/2.0/mlflow/experiments/get/?experiment_id=<a.exp>"),
    Attack("path ;params", "GET", "/api/2.0/mlflow/experiments/get;x=1?experiment_id=<a.exp>"),
    Attack(
        "path ;params in a segment",
        "GET",
        "/api/2.0/mlflow;v=2/experiments/get?experiment_id=<a.exp>",
    ),
    Attack("path %3B", "GET", "/api/2.0/mlflow/experiments/get%3Bx=1?experiment_id=<a.exp>"),
    Attack(
        "path %3F query inside the path",
        "GET",
        "/api/2.0/mlflow/experiments/get%3Fexperiment_id=<a.exp>",
    ),
    Attack("path %00", "GET", "/api/2.0/mlflow/experiments/get%00?experiment_id=<a.exp>"),
    Attack("path backslash", "GET", "/api/2.0/mlflow\\experiments/get?experiment_id=<a.exp>"),
    Attack("path %5C", "GET", "/api/2.0/mlflow%5Cexperiments/get?experiment_id=<a.exp>"),
    Attack("fragment hides a second id", "GET", E + "<b.exp>#&experiment_id=<a.exp>"),
    Attack("absolute-form target", "GET", "http://127.0.0.1:<gw.port>" + E + "<a.exp>"),
    Attack(
        "UI static route traversal",
        "GET",
        "/static-files/../api/2.0/mlflow/experiments/get?experiment_id=<a.exp>",
    ),
    Attack(
        "UI static route %2e%2e",
        "GET",
        "/static-files/%2e%2e/api/2.0/mlflow/experiments/get?experiment_id=<a.exp>",
    ),
    Attack(
        "UI build route ..%2F",
        "GET",
        "/build/..%2F..%2Fapi/2.0/mlflow/experiments/get?experiment_id=<a.exp>",
    ),
    Attack("HEAD experiment", "HEAD", E + "<a.exp>"),
    Attack("HEAD run", "HEAD", "/api/2.0/mlflow/runs/get?run_id=<a.run>"),
    Attack("HEAD run, body A", "HEAD", "/api/2.0/mlflow/runs/get", {"run_id": "<a.run>"}),
    Attack(
        "HEAD run, query B, body A",
        "HEAD",
        "/api/2.0/mlflow/runs/get?run_id=<b.run>",
        {"run_id": "<a.run>"},
    ),
    Attack("OPTIONS experiment", "OPTIONS", E + "<a.exp>"),
    Attack("query key encoded", "GET", "/api/2.0/mlflow/experiments/get?experiment%5Fid=<a.exp>"),
    Attack("query id with leading zero", "GET", E + "0<a.exp>"),
    Attack("query id with %0A", "GET", E + "<a.exp>%0A"),
    Attack("query id with +", "GET", E + "%2B<a.exp>"),
    Attack("path param trace encoded", "GET", "/api/3.0/mlflow/traces/%74r-<a.trace_hex>"),
    Attack(
        "path param logged model via %2F..",
        "GET",
        "/api/2.0/mlflow/logged-models/<b.lm>%2F..%2F<a.lm>",
    ),
    Attack("path param trace v2 info", "GET", "/api/2.0/mlflow/traces/<a.trace>/info"),
    Attack(
        "get-by-name", "GET", "/api/2.0/mlflow/experiments/get-by-name?experiment_name=<a.name>"
    ),
    Attack("model name in upper case", "GET", RM + "/get?name=<a.model_upper>"),
    Attack("model name with a trailing space", "GET", RM + "/get?name=<a.model>%20"),
    Attack(
        "experiment name in upper case",
        "GET",
        "/api/2.0/mlflow/experiments/get-by-name?experiment_name=<a.name_upper>",
    ),
    # -- method override headers: MLflow runs the method on the request line, nothing else ------
    Attack(
        "override DELETE on an allowed POST alias",
        "POST",
        RM + "/alias",
        {"name": "<b.model>", "alias": "tmp", "version": "1"},
        headers=(("X-HTTP-Method-Override", "DELETE"),),
        expect=ALLOWED,
        after=(Step("GET", RM + "/alias?name=<b.model>&alias=tmp", status=200),),
    ),
    Attack(
        "X-Method-Override DELETE on an allowed PATCH",
        "PATCH",
        "/api/2.0/mlflow/logged-models/<b.fresh_lm>",
        {"model_id": "<b.fresh_lm>", "status": "LOGGED_MODEL_READY"},
        headers=(("X-Method-Override", "DELETE"),),
        expect=ALLOWED,
        after=(Step("GET", "/api/2.0/mlflow/logged-models/<b.fresh_lm>", status=200),),
    ),
    Attack(
        "X-HTTP-Method DELETE on an allowed set-tag",
        "POST",
        SET_TAG,
        B_TAG,
        headers=(("X-HTTP-Method", "DELETE"), ("X-HTTP-Method-Override", "DELETE")),
        expect=ALLOWED,
        after=(Step("GET", "/api/2.0/mlflow/runs/get?run_id=<b.run>", status=200),),
    ),
    Attack(
        "override DELETE on a GET of A's model",
        "GET",
        RM + "/get?name=<a.model>",
        headers=(("X-HTTP-Method-Override", "DELETE"),),
    ),
    Attack(
        "override DELETE on a POST to delete A's model",
        "POST",
        RM + "/delete",
        {"name": "<a.model>"},
        headers=(("X-HTTP-Method-Override", "DELETE"), ("X-Method-Override", "DELETE")),
    ),
    Attack(
        "MLflow itself ignores X-HTTP-Method-Override",
        "POST",
        RM + "/delete",
        {"name": "<new.name>"},
        headers=(("X-HTTP-Method-Override", "DELETE"),),
        who="mlflow",
        status=405,
        twin=False,
    ),
    Attack(
        "MLflow itself ignores X-Method-Override",
        "POST",
        RM + "/delete",
        {"name": "<new.name>"},
        headers=(("X-Method-Override", "DELETE"), ("X-HTTP-Method", "DELETE")),
        who="mlflow",
        status=405,
        twin=False,
    ),
    # -- parameter source confusion -----------------------------------------------------------
    Attack("GET query B, body A", "GET", E + "<b.exp>", {"experiment_id": "<a.exp>"}),
    Attack("GET query A, body B", "GET", E + "<a.exp>", {"experiment_id": "<b.exp>"}),
    Attack(
        "GET body A only", "GET", "/api/2.0/mlflow/experiments/get", {"experiment_id": "<a.exp>"}
    ),
    Attack(
        "GET empty query '?&', body A",
        "GET",
        "/api/2.0/mlflow/experiments/get?&",
        {"experiment_id": "<a.exp>"},
    ),
    Attack(
        "GET bare '?', body A",
        "GET",
        "/api/2.0/mlflow/experiments/get?",
        {"experiment_id": "<a.exp>"},
    ),
    Attack(
        "GET unrelated query, body A", "GET", "/api/2.0/mlflow/runs/get?x=1", {"run_id": "<a.run>"}
    ),
    Attack("GET model: query B, body A", "GET", RM + "/get?name=<b.model>", {"name": "<a.model>"}),
    Attack("POST query A, body B", "POST", SET_TAG + "?run_id=<a.run>", B_TAG),
    Attack("POST query B, body A", "POST", SET_TAG + "?run_id=<b.run>", A_TAG),
    Attack("POST text/plain body", "POST", SET_TAG, A_TAG, content_type="text/plain"),
    Attack("POST without Content-Type", "POST", SET_TAG, A_TAG, content_type=None),
    Attack(
        "POST form-encoded body",
        "POST",
        SET_TAG,
        "run_id=<a.run>&key=pwned&value=by-bob",
        content_type="application/x-www-form-urlencoded",
    ),
    Attack("POST double-encoded JSON", "POST", SET_TAG, A_TAG, wrap=("json-string",)),
    Attack("POST triple-encoded JSON", "POST", SET_TAG, A_TAG, wrap=("json-string", "json-string")),
    Attack("POST JSON array", "POST", SET_TAG, [A_TAG]),
    Attack("POST JSON null", "POST", SET_TAG, "null"),
    Attack("POST two JSON documents", "POST", SET_TAG, json.dumps(B_TAG) + json.dumps(A_TAG)),
    Attack("POST UTF-16 JSON", "POST", SET_TAG, A_TAG, wrap=("utf-16",)),
    Attack("POST UTF-8 BOM JSON", "POST", SET_TAG, A_TAG, wrap=("bom",)),
    Attack(
        "POST gzip body",
        "POST",
        SET_TAG,
        A_TAG,
        headers=(("Content-Encoding", "gzip"),),
        wrap=("gzip",),
    ),
    Attack("DELETE with the name in the query", "DELETE", RM + "/delete?name=<a.model>"),
    Attack(
        "DELETE query B, body A", "DELETE", RM + "/delete?name=<b.model>", {"name": "<a.model>"}
    ),
    Attack(
        "DELETE query A, body B",
        "DELETE",
        RM + "/delete-tag?name=<a.model>",
        {"name": "<b.model>", "key": "k"},
    ),
    # ... and the same tricks on B's own things pass: the gateway reads bodies like MLflow does
    Attack(
        # MLflow itself requires application/json on a POST: the gateway forwards the request as
        # it was sent (headers untouched) and MLflow refuses it, exactly as without the gateway.
        "own: text/plain body",
        "POST",
        SET_TAG,
        B_TAG,
        content_type="text/plain",
        expect=DENIED,
        status=400,
    ),
    Attack(
        "own: no Content-Type", "POST", SET_TAG, B_TAG, content_type=None, expect=DENIED, status=400
    ),
    Attack(
        "own: double-encoded JSON", "POST", SET_TAG, B_TAG, wrap=("json-string",), expect=ALLOWED
    ),
    Attack("own: UTF-16 JSON", "POST", SET_TAG, B_TAG, wrap=("utf-16",), expect=ALLOWED),
    Attack(
        "own: GET body, no query",
        "GET",
        "/api/2.0/mlflow/experiments/get",
        {"experiment_id": "<b.exp>"},
        expect=ALLOWED,
    ),
    # -- lowerCamel twins, legacy names, duplicate keys and parameters --------------------------
    Attack("runId alone", "POST", SET_TAG, {"runId": "<a.run>", "key": "k", "value": "v"}),
    Attack(
        "run_id B + runId A",
        "POST",
        SET_TAG,
        {"run_id": "<b.run>", "runId": "<a.run>", "key": "k", "value": "v"},
    ),
    Attack(
        "runId B + run_id A",
        "POST",
        SET_TAG,
        {"runId": "<b.run>", "run_id": "<a.run>", "key": "k", "value": "v"},
    ),
    Attack("run_uuid alone", "POST", SET_TAG, {"run_uuid": "<a.run>", "key": "k", "value": "v"}),
    Attack("runUuid alone", "POST", SET_TAG, {"runUuid": "<a.run>", "key": "k", "value": "v"}),
    Attack(
        "run_id B + run_uuid A",
        "POST",
        SET_TAG,
        {"run_id": "<b.run>", "run_uuid": "<a.run>", "key": "k", "value": "v"},
    ),
    Attack(
        "run_id B + runUuid A",
        "POST",
        SET_TAG,
        {"run_id": "<b.run>", "runUuid": "<a.run>", "key": "k", "value": "v"},
    ),
    Attack(
        "GET run_id B + run_uuid A",
        "GET",
        "/api/2.0/mlflow/runs/get?run_id=<b.run>&run_uuid=<a.run>",
    ),
    Attack("GET run_uuid A", "GET", "/api/2.0/mlflow/runs/get?run_uuid=<a.run>"),
    Attack(
        "experimentId alone", "POST", "/api/2.0/mlflow/runs/create", {"experimentId": "<a.exp>"}
    ),
    Attack(
        "experiment_id B + experimentId A",
        "POST",
        "/api/2.0/mlflow/runs/create",
        {"experiment_id": "<b.exp>", "experimentId": "<a.exp>"},
    ),
    Attack(
        "experiment id as a JSON number",
        "POST",
        "/api/2.0/mlflow/runs/create",
        '{"experiment_id": <a.exp>}',
    ),
    Attack(
        "experiment id as a list",
        "POST",
        "/api/2.0/mlflow/runs/create",
        {"experiment_id": ["<b.exp>", "<a.exp>"]},
    ),
    Attack(
        "duplicate JSON key, A last",
        "POST",
        SET_TAG,
        '{"run_id": "<b.run>", "run_id": "<a.run>", "key": "k", "value": "v"}',
    ),
    Attack(
        "duplicate JSON key, A first",
        "POST",
        SET_TAG,
        '{"run_id": "<a.run>", "run_id": "<b.run>", "key": "k", "value": "v"}',
    ),
    Attack(
        "duplicate JSON key, nested",
        "POST",
        TRACES_V3 + "/search",
        '{"locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": '
        '{"experiment_id": "<b.exp>", "experiment_id": "<a.exp>"}}]}',
    ),
    Attack(
        "nested lowerCamel",
        "POST",
        TRACES_V3 + "/search",
        {
            "locations": [
                {"type": "MLFLOW_EXPERIMENT", "mlflowExperiment": {"experimentId": "<a.exp>"}}
            ]
        },
    ),
    Attack(
        "nested both spellings",
        "POST",
        TRACES_V3 + "/search",
        {
            "locations": [
                {
                    "mlflow_experiment": {"experiment_id": "<b.exp>"},
                    "mlflowExperiment": {"experimentId": "<a.exp>"},
                }
            ]
        },
    ),
    Attack("duplicate query param, A last", "GET", E + "<b.exp>&experiment_id=<a.exp>"),
    Attack("duplicate query param, A first", "GET", E + "<a.exp>&experiment_id=<b.exp>"),
    Attack(
        "query experimentId A, experiment_id B",
        "GET",
        "/api/2.0/mlflow/experiments/get?experimentId=<a.exp>&experiment_id=<b.exp>",
        expect=NO_LEAK,
    ),
    Attack(
        "query experimentId A alone", "GET", "/api/2.0/mlflow/experiments/get?experimentId=<a.exp>"
    ),
    Attack("duplicate query param on a model", "GET", RM + "/get?name=<b.model>&name=<a.model>"),
    # -- foreign ids hidden in batch calls ------------------------------------------------------
    Attack(
        "runs/search [B, A]",
        "POST",
        "/api/2.0/mlflow/runs/search",
        {"experiment_ids": ["<b.exp>", "<a.exp>"]},
    ),
    Attack(
        "runs/search [A, B]",
        "POST",
        "/api/2.0/mlflow/runs/search",
        {"experiment_ids": ["<a.exp>", "<b.exp>"]},
    ),
    Attack(
        "runs/search ids as a string",
        "POST",
        "/api/2.0/mlflow/runs/search",
        {"experiment_ids": "<a.exp>"},
    ),
    Attack(
        "runs/search experimentIds",
        "POST",
        "/api/2.0/mlflow/runs/search",
        {"experimentIds": ["<b.exp>", "<a.exp>"]},
    ),
    Attack(
        "logged-models/search [B, A]",
        "POST",
        "/api/2.0/mlflow/logged-models/search",
        {"experiment_ids": ["<b.exp>", "<a.exp>"]},
    ),
    Attack(
        "traces v2 search [B, A]",
        "GET",
        "/api/2.0/mlflow/traces?experiment_ids=<b.exp>&experiment_ids=<a.exp>",
    ),
    Attack(
        "traces v3 search [B, A]",
        "POST",
        TRACES_V3 + "/search",
        {"locations": [_loc("<b.exp>"), _loc("<a.exp>")]},
    ),
    Attack(
        "get-history-bulk-interval B and A",
        "GET",
        "/api/2.0/mlflow/metrics/get-history-bulk-interval?run_ids=<b.run>&run_ids=<a.run>&metric_key=m",
    ),
    Attack(
        "get-history-bulk B and A",
        "GET",
        "/ajax-api/2.0/mlflow/metrics/get-history-bulk?run_id=<b.run>&run_id=<a.run>&metric_key=m",
    ),
    Attack(
        "traces batchGet B and A",
        "GET",
        TRACES_V3 + "/batchGet?trace_ids=<b.trace>&trace_ids=<a.trace>",
    ),
    Attack(
        "traces batchGetInfos B and A",
        "POST",
        TRACES_V3 + "/batchGetInfos",
        {"trace_ids": ["<b.trace>", "<a.trace>"]},
    ),
    Attack(
        "link A's traces to B's run",
        "POST",
        "/api/2.0/mlflow/traces/link-to-run",
        {"run_id": "<b.run>", "trace_ids": ["<a.trace>"]},
    ),
    Attack(
        "link B's traces to A's run",
        "POST",
        "/api/2.0/mlflow/traces/link-to-run",
        {"run_id": "<a.run>", "trace_ids": ["<b.trace>"]},
    ),
    Attack(
        "delete-traces v2: A's ids under B",
        "POST",
        "/api/2.0/mlflow/traces/delete-traces",
        {"experiment_id": "<b.exp>", "request_ids": ["<a.trace>"]},
    ),
    Attack(
        "delete-traces v3: A's ids under B",
        "POST",
        "/api/3.0/mlflow/traces/delete-traces",
        {"experiment_id": "<b.exp>", "request_ids": ["<a.trace>"]},
    ),
    Attack(
        "log-inputs with A's logged model",
        "POST",
        "/api/2.0/mlflow/runs/log-inputs",
        {"run_id": "<b.run>", "models": [{"model_id": "<a.lm>"}]},
    ),
    Attack(
        "log-outputs with A's logged model",
        "POST",
        "/api/2.0/mlflow/runs/outputs",
        {"run_id": "<b.run>", "models": [{"model_id": "<a.lm>", "step": 0}]},
    ),
    Attack(
        "model version from A's run",
        "POST",
        MV + "/create",
        {"name": "<b.model>", "source": "runs:/<a.run>/model", "run_id": "<a.run>"},
    ),
    Attack(
        "model version, source A's run, no run_id",
        "POST",
        MV + "/create",
        {"name": "<b.model>", "source": "runs:/<a.run>/model"},
    ),
    Attack(
        "model version, source A's artifacts",
        "POST",
        MV + "/create",
        {
            "name": "<b.model>",
            "source": "mlflow-artifacts:/<a.exp>/<a.run>/artifacts/model",
            "run_id": "<b.run>",
        },
    ),
    Attack(
        "model version, source traverses from B",
        "POST",
        MV + "/create",
        {
            "name": "<b.model>",
            "source": "mlflow-artifacts:/<b.exp>/../<a.exp>/<a.run>/artifacts",
            "run_id": "<b.run>",
        },
    ),
    Attack(
        "model version, runs:/ B/../A",
        "POST",
        MV + "/create",
        {
            "name": "<b.model>",
            "source": "runs:/<b.run>/../../<a.run>/artifacts/model",
            "run_id": "<b.run>",
        },
    ),
    Attack(
        "model version, runs:/ B%2F..%2FA",
        "POST",
        MV + "/create",
        {
            "name": "<b.model>",
            "source": "runs:/<b.run>%2F..%2F..%2F<a.run>/model",
            "run_id": "<b.run>",
        },
    ),
    Attack(
        "model version, source models:/A/1",
        "POST",
        MV + "/create",
        {"name": "<b.model>", "source": "models:/<a.model>/1"},
    ),
    Attack(
        "model version, source models:/A@champion",
        "POST",
        MV + "/create",
        {"name": "<b.model>", "source": "models:/<a.model>@champion"},
    ),
    Attack(
        "model version, source A's logged model",
        "POST",
        MV + "/create",
        {"name": "<b.model>", "source": "models:/<a.lm>", "model_id": "<a.lm>"},
    ),
    Attack(
        "model version, B's run with A's model_id",
        "POST",
        MV + "/create",
        {
            "name": "<b.model>",
            "source": "runs:/<b.run>/model",
            "run_id": "<b.run>",
            "model_id": "<a.lm>",
        },
    ),
    Attack(
        "model version, upper-case RUNS:/",
        "POST",
        MV + "/create",
        {"name": "<b.model>", "source": "RUNS:/<a.run>/model", "run_id": "<b.run>"},
    ),
    Attack(
        "model version, file:// source",
        "POST",
        MV + "/create",
        {
            "name": "<b.model>",
            "source": "file:///tmp/<a.exp>/<a.run>/artifacts",
            "run_id": "<b.run>",
        },
    ),
    Attack(
        "logged model with A's source run",
        "POST",
        "/api/2.0/mlflow/logged-models",
        {"experiment_id": "<b.exp>", "name": "x", "source_run_id": "<a.run>"},
    ),
    Attack(
        "dataset: add A's experiment to B's dataset",
        "POST",
        "/api/3.0/mlflow/datasets/<b.ds>/add-experiments",
        {"experiment_ids": ["<a.exp>"]},
    ),
    Attack(
        "dataset: add B's experiment to A's dataset",
        "POST",
        "/api/3.0/mlflow/datasets/<a.ds>/add-experiments",
        {"experiment_ids": ["<b.exp>"]},
    ),
    Attack(
        "dataset: create in B and A",
        "POST",
        "/api/3.0/mlflow/datasets/create",
        {"name": "<new.name>", "experiment_ids": ["<b.exp>", "<a.exp>"]},
    ),
    Attack("dataset: read A's", "GET", "/api/3.0/mlflow/datasets/<a.ds>"),
    Attack(
        "experiment created inside A's artifacts",
        "POST",
        "/api/2.0/mlflow/experiments/create",
        {"name": "<new.name>", "artifact_location": "mlflow-artifacts:/<a.exp>"},
    ),
    Attack(
        "experiment created inside A's artifacts (camel)",
        "POST",
        "/api/2.0/mlflow/experiments/create",
        {"name": "<new.name>", "artifactLocation": "mlflow-artifacts:/<a.exp>"},
    ),
    # -- searches return nothing of A's -------------------------------------------------------
    Attack(
        "experiments/search name = A",
        "GET",
        "/api/2.0/mlflow/experiments/search?filter=" + _q("name = '<a.name>'"),
        expect=NO_LEAK,
    ),
    Attack(
        "experiments/search POST name = A, all",
        "POST",
        "/api/2.0/mlflow/experiments/search",
        {"filter": "name = '<a.name>'", "view_type": "ALL"},
        expect=NO_LEAK,
    ),
    Attack(
        "experiments/search LIKE, one per page",
        "GET",
        "/api/2.0/mlflow/experiments/search?max_results=1&filter=" + _q("name LIKE 'team-a%'"),
        expect=NO_LEAK,
    ),
    Attack(
        "registered-models/search name = A",
        "GET",
        RM + "/search?filter=" + _q("name = '<a.model>'"),
        expect=NO_LEAK,
    ),
    Attack(
        "registered-models/search LIKE %",
        "GET",
        RM + "/search?filter=" + _q("name LIKE '%'"),
        expect=NO_LEAK,
    ),
    Attack(
        "model-versions/search run_id = A's run",
        "GET",
        MV + "/search?filter=" + _q("run_id = '<a.run>'"),
        expect=NO_LEAK,
    ),
    Attack(
        "model-versions/search run_id = B's run",
        "GET",
        MV + "/search?filter=" + _q("run_id = '<b.run>'"),
        expect=NO_LEAK,
    ),
    Attack(
        "model-versions/search name = A",
        "GET",
        MV + "/search?filter=" + _q("name = '<a.model>'"),
        expect=NO_LEAK,
    ),
    Attack(
        "model-versions/search name = A, body",
        "GET",
        MV + "/search",
        {"filter": "name = '<a.model>'"},
        expect=NO_LEAK,
    ),
    Attack(
        "page token: null, 0",
        "GET",
        RM + "/search?page_token=" + _token({"u": None, "s": 0}),
        expect=NO_LEAK,
    ),
    Attack(
        "page token: garbage upstream",
        "GET",
        RM + "/search?page_token=" + _token({"u": "garbage", "s": 0}),
        expect=NO_LEAK,
    ),
    Attack(
        "page token: negative skip",
        "GET",
        RM + "/search?page_token=" + _token({"u": None, "s": -5}),
        expect=NO_LEAK,
    ),
    Attack("page token: not base64", "GET", RM + "/search?page_token=%21%21%21", expect=NO_LEAK),
    Attack(
        "page token: experiments, huge skip",
        "GET",
        "/api/2.0/mlflow/experiments/search?page_token=" + _token({"u": None, "s": 10**9}),
        expect=NO_LEAK,
    ),
    Attack(
        "page token twice",
        "GET",
        f"{RM}/search?page_token={_token({'u': None, 's': 0})}&page_token=x",
        expect=NO_LEAK,
    ),
    Attack(
        "runs/search in B naming A's run",
        "POST",
        "/api/2.0/mlflow/runs/search",
        {"experiment_ids": ["<b.exp>"], "filter": "attributes.run_id = '<a.run>'"},
        expect=NO_LEAK,
    ),
    # -- GraphQL ------------------------------------------------------------------------------
    Attack(
        "graphql A's run",
        "POST",
        GRAPHQL,
        _gql(f'{{ mlflowGetRun(input: {{runId: "<a.run>"}}) {{ {RUN_FIELDS} }} }}'),
    ),
    Attack(
        "graphql own run, nested experiment",
        "POST",
        GRAPHQL,
        _gql(
            '{ mlflowGetRun(input: {runId: "<b.run>"}) { run { info { runId } experiment { name } } } }'
        ),
        expect=ALLOWED,
    ),
    Attack(
        "graphql own run, nested modelVersions reach A's model",
        "POST",
        GRAPHQL,
        _gql(
            '{ mlflowGetRun(input: {runId: "<b.run>"}) { run { modelVersions { name version } } } }'
        ),
    ),
    Attack(
        "graphql own run, modelVersions behind a fragment",
        "POST",
        GRAPHQL,
        _gql(
            '{ mlflowGetRun(input: {runId: "<b.run>"}) { ...R } } '
            "fragment R on MlflowGetRunResponse { r: run { ... on MlflowRunExtension "
            "{ mv: modelVersions { name } } } }"
        ),
    ),
    Attack(
        "graphql searchRuns in B, nested modelVersions reach A's model",
        "POST",
        GRAPHQL,
        _gql(
            '{ mlflowSearchRuns(input: {experimentIds: ["<b.exp>"]}) '
            "{ runs { info { runId } modelVersions { name version source } } } }"
        ),
        regression=(
            "fixed: graphql._nested_model_versions only looks under mlflowGetRun; "
            "mlflowSearchRuns returns MlflowRunExtension too, whose modelVersions resolver lists "
            "every registered model version made from the run (A's model, version, source), "
            "judged only on experimentIds=[B]."
        ),
    ),
    Attack(
        "graphql aliases",
        "POST",
        GRAPHQL,
        _gql(
            f'{{ mine: mlflowGetRun(input: {{runId: "<b.run>"}}) {{ {RUN_FIELDS} }} theirs: mlflowGetRun(input: {{runId: "<a.run>"}}) {{ {RUN_FIELDS} }} }}'
        ),
    ),
    Attack(
        "graphql fragment",
        "POST",
        GRAPHQL,
        _gql(
            'query { ...F } fragment F on Query { mlflowGetExperiment(input: {experimentId: "<a.exp>"}) { experiment { name } } }'
        ),
    ),
    Attack(
        "graphql inline fragment",
        "POST",
        GRAPHQL,
        _gql(
            f'{{ ... on Query {{ mlflowGetRun(input: {{runId: "<a.run>"}}) {{ {RUN_FIELDS} }} }} }}'
        ),
    ),
    Attack(
        "graphql variables",
        "POST",
        GRAPHQL,
        _gql(
            f"query Q($id: String) {{ mlflowGetRun(input: {{runId: $id}}) {{ {RUN_FIELDS} }} }}",
            variables={"id": "<a.run>"},
        ),
    ),
    Attack(
        "graphql input object variable",
        "POST",
        GRAPHQL,
        _gql(
            f"query Q($i: MlflowGetRunInput) {{ mlflowGetRun(input: $i) {{ {RUN_FIELDS} }} }}",
            variables={"i": {"runId": "<a.run>"}},
        ),
    ),
    Attack(
        "graphql two operations",
        "POST",
        GRAPHQL,
        _gql(
            f'query Mine {{ mlflowGetRun(input: {{runId: "<b.run>"}}) {{ {RUN_FIELDS} }} }} query Theirs {{ mlflowGetRun(input: {{runId: "<a.run>"}}) {{ {RUN_FIELDS} }} }}',
            operationName="Theirs",
        ),
    ),
    Attack(
        "graphql runId vs runUuid",
        "POST",
        GRAPHQL,
        _gql(
            f'{{ mlflowGetRun(input: {{runId: "<b.run>", runUuid: "<a.run>"}}) {{ {RUN_FIELDS} }} }}'
        ),
    ),
    Attack(
        "graphql @skip does not hide a field",
        "POST",
        GRAPHQL,
        _gql(f'{{ mlflowGetRun(input: {{runId: "<a.run>"}}) @skip(if: true) {{ {RUN_FIELDS} }} }}'),
    ),
    Attack(
        "graphql experiment id as an int",
        "POST",
        GRAPHQL,
        _gql("{ mlflowGetExperiment(input: {experimentId: <a.exp>}) { experiment { name } } }"),
    ),
    Attack(
        "graphql searchModelVersions run_id",
        "POST",
        GRAPHQL,
        _gql(
            "{ mlflowSearchModelVersions(input: {filter: \"run_id='<a.run>'\"}) { modelVersions { name } } }"
        ),
    ),
    Attack(
        "graphql searchModelVersions name = A",
        "POST",
        GRAPHQL,
        _gql(
            "{ mlflowSearchModelVersions(input: {filter: \"name='<a.model>'\"}) { modelVersions { name } } }"
        ),
    ),
    Attack(
        "graphql searchModelVersions name B OR A",
        "POST",
        GRAPHQL,
        _gql(
            "{ mlflowSearchModelVersions(input: {filter: \"name='<b.model>' OR name='<a.model>'\"}) { modelVersions { name } } }"
        ),
    ),
    Attack(
        "graphql searchRuns [B, A]",
        "POST",
        GRAPHQL,
        _gql(
            '{ mlflowSearchRuns(input: {experimentIds: ["<b.exp>", "<a.exp>"]}) { runs { info { runId } } } }'
        ),
    ),
    Attack(
        "graphql metric history B and A",
        "POST",
        GRAPHQL,
        _gql(
            '{ mlflowGetMetricHistoryBulkInterval(input: {runIds: ["<b.run>", "<a.run>"], metricKey: "m"}) { metrics { key } } }'
        ),
    ),
    Attack(
        "graphql listArtifacts A",
        "POST",
        GRAPHQL,
        _gql('{ mlflowListArtifacts(input: {runId: "<a.run>"}) { files { path } } }'),
    ),
    Attack(
        "graphql in the query string",
        "GET",
        GRAPHQL
        + "?query="
        + _q(f'{{ mlflowGetRun(input: {{runId: "<a.run>"}}) {{ {RUN_FIELDS} }} }}'),
        content_type=None,
    ),
    Attack(
        "graphql double-encoded body",
        "POST",
        GRAPHQL,
        _gql(f'{{ mlflowGetRun(input: {{runId: "<a.run>"}}) {{ {RUN_FIELDS} }} }}'),
        wrap=("json-string",),
    ),
    Attack(
        "graphql duplicate query key",
        "POST",
        GRAPHQL,
        '{"query": "{ test(inputString: \\"x\\") { output } }", "query": "{ mlflowGetRun(input: {runId: \\"<a.run>\\"}) { run { info { runId } } } }"}',
    ),
    Attack(
        "graphql batch array",
        "POST",
        GRAPHQL,
        [_gql(f'{{ mlflowGetRun(input: {{runId: "<a.run>"}}) {{ {RUN_FIELDS} }} }}')],
    ),
    # -- artifacts ----------------------------------------------------------------------------
    Attack("artifact: A's file", "GET", ART + A_FILE),
    Attack("artifact: HEAD A's file", "HEAD", ART + A_FILE),
    Attack("artifact: B/../A", "GET", ART + "<b.exp>/../" + A_FILE),
    Attack("artifact: B/%2e%2e/A", "GET", ART + "<b.exp>/%2e%2e/" + A_FILE),
    Attack("artifact: B/%2E%2e/A", "GET", ART + "<b.exp>/%2E%2e/" + A_FILE),
    Attack("artifact: B/..%2fA", "GET", ART + "<b.exp>/..%2f" + A_FILE),
    Attack("artifact: B%2F..%2FA", "GET", ART + "<b.exp>%2F..%2F" + A_FILE),
    Attack("artifact: B/%252e%252e/A", "GET", ART + "<b.exp>/%252e%252e/" + A_FILE),
    Attack("artifact: B/%25252e%25252e/A", "GET", ART + "<b.exp>/%25252e%25252e/" + A_FILE),
    Attack("artifact: B/.%2e/A", "GET", ART + "<b.exp>/.%2e/" + A_FILE),
    Attack("artifact: B/<run>/../../A", "GET", ART + "<b.exp>/<b.run>/../../" + A_FILE),
    Attack("artifact: ./A", "GET", ART + "./" + A_FILE),
    Attack("artifact: x/../A", "GET", ART + "x/../" + A_FILE),
    Attack("artifact: leading zero", "GET", ART + "0" + A_FILE),
    Attack("artifact: space before id", "GET", ART + "%20" + A_FILE),
    Attack("artifact: absolute //etc/passwd", "GET", ART + "/etc/passwd"),
    Attack("artifact: absolute %2Fetc%2Fpasswd", "GET", ART + "%2Fetc%2Fpasswd"),
    Attack("artifact: absolute %252F double", "GET", ART + "%252Fetc%252Fpasswd"),
    Attack("artifact: file:// URI", "GET", ART + "file:%2F%2F%2Fetc%2Fpasswd"),
    Attack(
        "artifact: backslashes", "GET", ART + "<b.exp>\\..\\<a.exp>\\<a.run>\\artifacts\\secret.txt"
    ),
    Attack("artifact: %5C backslashes", "GET", ART + "<b.exp>%5C..%5C" + A_FILE),
    Attack("artifact: non-numeric first segment", "GET", ART + "mlflow/" + A_FILE),
    Attack("artifact list: the whole store", "GET", "/api/2.0/mlflow-artifacts/artifacts?path="),
    Attack("artifact list: no path", "GET", "/api/2.0/mlflow-artifacts/artifacts"),
    Attack("artifact list: path=.", "GET", "/api/2.0/mlflow-artifacts/artifacts?path=."),
    Attack("artifact list: path=/", "GET", "/api/2.0/mlflow-artifacts/artifacts?path=%2F"),
    Attack("artifact list: A", "GET", "/api/2.0/mlflow-artifacts/artifacts?path=<a.exp>"),
    Attack("artifact list: B/..", "GET", "/api/2.0/mlflow-artifacts/artifacts?path=<b.exp>%2F.."),
    Attack(
        "artifact list: path twice",
        "GET",
        "/api/2.0/mlflow-artifacts/artifacts?path=<b.exp>&path=<a.exp>",
    ),
    Attack(
        "artifact upload: overwrite A's file",
        "PUT",
        ART + A_FILE,
        "pwned",
        content_type="text/plain",
    ),
    Attack(
        "artifact upload: traversal from B",
        "PUT",
        ART + "<b.exp>/../" + A_FILE,
        "pwned",
        content_type="text/plain",
    ),
    Attack(
        "artifact upload: %2e%2e from B",
        "PUT",
        ART + "<b.exp>/%2e%2e/" + A_FILE,
        "pwned",
        content_type="text/plain",
    ),
    Attack("artifact delete: A's file", "DELETE", ART + A_FILE),
    Attack("artifact delete: traversal from B", "DELETE", ART + "<b.exp>/%2e%2e/" + A_FILE),
    Attack(
        "multipart create in A",
        "POST",
        "/api/2.0/mlflow-artifacts/mpu/create/<a.exp>/<a.run>/artifacts/big.bin",
        {"path": "big.bin", "num_parts": 1},
    ),
    Attack(
        "multipart create via traversal",
        "POST",
        "/api/2.0/mlflow-artifacts/mpu/create/<b.exp>/%2e%2e/<a.exp>/<a.run>/artifacts/big.bin",
        {"path": "big.bin", "num_parts": 1},
    ),
    Attack(
        "multipart abort in A",
        "POST",
        "/api/2.0/mlflow-artifacts/mpu/abort/<a.exp>/<a.run>/artifacts/big.bin",
        {"path": "big.bin", "upload_id": "x"},
    ),
    Attack("presigned download path in A", "GET", "/api/2.0/mlflow-artifacts/presigned/" + A_FILE),
    Attack(
        "presigned download URL for A's run",
        "POST",
        "/api/2.0/mlflow/artifacts/presigned-download-url",
        {"run_id": "<a.run>", "path": "secret.txt"},
    ),
    Attack(
        "presigned upload URL for A's run",
        "POST",
        "/api/2.0/mlflow/artifacts/presigned-upload-url",
        {"run_id": "<a.run>", "path": "x.txt"},
    ),
    Attack("get-artifact run_id A", "GET", "/get-artifact?run_id=<a.run>&path=secret.txt"),
    Attack("get-artifact run_uuid A", "GET", "/get-artifact?run_uuid=<a.run>&path=secret.txt"),
    Attack(
        "get-artifact run_id B, run_uuid A",
        "GET",
        "/get-artifact?run_id=<b.run>&run_uuid=<a.run>&path=secret.txt",
    ),
    Attack(
        "get-artifact run_id twice",
        "GET",
        "/get-artifact?run_id=<b.run>&run_id=<a.run>&path=secret.txt",
    ),
    Attack(
        "get-artifact B, path ../A",
        "GET",
        "/get-artifact?run_id=<b.run>&path=..%2F..%2F<a.run>%2Fartifacts%2Fsecret.txt",
    ),
    Attack(
        "get-artifact B, path %252e%252e",
        "GET",
        "/get-artifact?run_id=<b.run>&path=%252e%252e%252F%252e%252e%252F<a.run>%252Fartifacts%252Fsecret.txt",
    ),
    Attack("artifacts/list A", "GET", "/api/2.0/mlflow/artifacts/list?run_id=<a.run>"),
    Attack(
        "model-versions/get-artifact A",
        "GET",
        "/model-versions/get-artifact?name=<a.model>&version=1&path=MLmodel",
    ),
    Attack(
        "model-versions/get-artifact name twice",
        "GET",
        "/model-versions/get-artifact?name=<b.model>&name=<a.model>&version=1&path=MLmodel",
    ),
    Attack(
        "model-versions/get-download-uri A",
        "GET",
        MV + "/get-download-uri?name=<a.model>&version=1",
    ),
    Attack(
        "UI upload into A's run",
        "POST",
        "/ajax-api/2.0/mlflow/upload-artifact?run_uuid=<a.run>&path=pwned.txt",
        "pwned",
        content_type="text/plain",
    ),
    Attack(
        "logged model file: traversal from B",
        "GET",
        "/ajax-api/2.0/mlflow/logged-models/<b.lm>/artifacts/files?artifact_file_path=..%2F..%2F<a.lm>%2Fartifacts%2Fx",
    ),
    Attack(
        "logged model directories of A",
        "GET",
        "/api/2.0/mlflow/logged-models/<a.lm>/artifacts/directories",
    ),
    Attack(
        "trace artifact of A", "GET", "/ajax-api/3.0/mlflow/get-trace-artifact?request_id=<a.trace>"
    ),
    Attack(
        "trace attachment: path traversal from B's trace",
        "GET",
        "/ajax-api/3.0/mlflow/get-trace-artifact?request_id=<b.trace>"
        "&path=..%2F..%2F..%2F<a.run>%2Fartifacts%2Fsecret.txt",
    ),
    Attack(
        "artifacts/list: B's run, path ../A",
        "GET",
        "/api/2.0/mlflow/artifacts/list?run_id=<b.run>&path=..%2F..%2F<a.run>%2Fartifacts",
    ),
    Attack(
        "logged model directories: traversal from B",
        "GET",
        "/api/2.0/mlflow/logged-models/<b.lm>/artifacts/directories"
        "?artifact_directory_path=..%2F..%2F<a.lm>",
    ),
    Attack(
        "UI upload: traversal from B's run",
        "POST",
        "/ajax-api/2.0/mlflow/upload-artifact?run_uuid=<b.run>"
        "&path=..%2F..%2F<a.run>%2Fartifacts%2Fsecret.txt",
        "pwned",
        content_type="text/plain",
    ),
    Attack(
        "presigned download URL: B's run, path ../A",
        "POST",
        "/api/2.0/mlflow/artifacts/presigned-download-url",
        {"run_id": "<b.run>", "path": "../../<a.run>/artifacts/secret.txt"},
    ),
    Attack(
        "trace artifact: own trace re-pointed at A's (v3 tag)",
        "GET",
        "/ajax-api/3.0/mlflow/get-trace-artifact?request_id=<b.fresh_trace>",
        before=(
            Step(
                "PATCH",
                TRACES_V3 + "/<b.fresh_trace>/tags",
                {"key": "mlflow.artifactLocation", "value": TRACE_LOCATION_TAG},
                who="bob",
            ),
        ),
        regression=(
            "fixed: SetTraceTag lets bob set the reserved tag mlflow.artifactLocation on his "
            "own trace; get-trace-artifact then serves A's trace data (traces.json) from that "
            "location. Only the trace named in the path is judged, never where its tag points."
        ),
    ),
    Attack(
        "trace artifact: own trace re-pointed at A's (v2 tag)",
        "GET",
        "/ajax-api/2.0/mlflow/get-trace-artifact?request_id=<b.fresh_trace>",
        before=(
            Step(
                "PATCH",
                "/api/2.0/mlflow/traces/<b.fresh_trace>/tags",
                {"key": "mlflow.artifactLocation", "value": TRACE_LOCATION_TAG},
                who="bob",
            ),
        ),
        regression="fixed: as above, through the v2 SetTraceTag route.",
    ),
    # -- plain writes to A's things -------------------------------------------------------------
    Attack(
        "rename A's experiment",
        "POST",
        "/api/2.0/mlflow/experiments/update",
        {"experiment_id": "<a.exp>", "new_name": "<new.name>"},
    ),
    Attack(
        "delete A's experiment",
        "POST",
        "/api/2.0/mlflow/experiments/delete",
        {"experiment_id": "<a.exp>"},
    ),
    Attack(
        "tag A's experiment",
        "POST",
        "/api/2.0/mlflow/experiments/set-experiment-tag",
        {"experiment_id": "<a.exp>", "key": "k", "value": "v"},
    ),
    Attack(
        "run in A's experiment", "POST", "/api/2.0/mlflow/runs/create", {"experiment_id": "<a.exp>"}
    ),
    Attack(
        "update A's run",
        "POST",
        "/api/2.0/mlflow/runs/update",
        {"run_id": "<a.run>", "status": "FAILED"},
    ),
    Attack("delete A's run", "POST", "/api/2.0/mlflow/runs/delete", {"run_id": "<a.run>"}),
    Attack(
        "log a metric to A's run",
        "POST",
        "/api/2.0/mlflow/runs/log-metric",
        {"run_id": "<a.run>", "key": "m", "value": 1, "timestamp": 1, "step": 0},
    ),
    Attack(
        "log a batch to A's run",
        "POST",
        "/api/2.0/mlflow/runs/log-batch",
        {"run_id": "<a.run>", "params": [{"key": "p", "value": "v"}]},
    ),
    Attack(
        "rename A's model", "POST", RM + "/rename", {"name": "<a.model>", "new_name": "<new.name>"}
    ),
    Attack("delete A's model", "DELETE", RM + "/delete", {"name": "<a.model>"}),
    Attack(
        "update A's model", "PATCH", RM + "/update", {"name": "<a.model>", "description": "pwned"}
    ),
    Attack(
        "tag A's model", "POST", RM + "/set-tag", {"name": "<a.model>", "key": "k", "value": "v"}
    ),
    Attack(
        "move A's champion alias",
        "POST",
        RM + "/alias",
        {"name": "<a.model>", "alias": "champion", "version": "2"},
    ),
    Attack(
        "delete A's champion alias",
        "DELETE",
        RM + "/alias",
        {"name": "<a.model>", "alias": "champion"},
    ),
    Attack(
        "transition A's version",
        "POST",
        MV + "/transition-stage",
        _stage("<a.model>", "Archived"),
    ),
    Attack(
        "update A's version",
        "PATCH",
        MV + "/update",
        {"name": "<a.model>", "version": "1", "description": "pwned"},
    ),
    Attack("delete A's version", "DELETE", MV + "/delete", {"name": "<a.model>", "version": "1"}),
    Attack(
        "new version of A's model",
        "POST",
        MV + "/create",
        {"name": "<a.model>", "source": "runs:/<b.run>/model", "run_id": "<b.run>"},
    ),
    Attack("delete A's logged model", "DELETE", "/api/2.0/mlflow/logged-models/<a.lm>"),
    Attack(
        "tag A's logged model",
        "PATCH",
        "/api/2.0/mlflow/logged-models/<a.lm>/tags",
        {"tags": [{"key": "k", "value": "v"}]},
    ),
    Attack(
        "delete traces of A's experiment",
        "POST",
        "/api/2.0/mlflow/traces/delete-traces",
        {"experiment_id": "<a.exp>", "max_timestamp_millis": 9999999999999},
    ),
    Attack("tag A's trace", "PATCH", TRACES_V3 + "/<a.trace>/tags", {"key": "k", "value": "v"}),
    Attack(
        "assess A's trace",
        "POST",
        TRACES_V3 + "/<a.trace>/assessments",
        {
            "assessment": {
                "assessment_name": "x",
                "source": {"source_type": "HUMAN", "source_id": "bob"},
                "feedback": {"value": True},
            }
        },
    ),
    # -- traces written under B that land in A ---------------------------------------------------
    Attack(
        "StartTraceV3 with A's trace id under B",
        "POST",
        TRACES_V3,
        _trace("<a.fresh_trace>", "<b.exp>"),
        regression=(
            "fixed: StartTraceV3 is judged on the experiment in the body only; MLflow merges "
            "into an existing trace with the same trace_id and moves it to that experiment, so bob "
            "moves A's trace into B (and its cached owner stays A in this gateway until restart)."
        ),
    ),
    Attack(
        "OTLP export: two X-Mlflow-Experiment-Id headers",
        "POST",
        "/v1/traces",
        _otlp("<new.hex>"),
        headers=(("X-Mlflow-Experiment-Id", "<a.exp>"), ("X-Mlflow-Experiment-Id", "<b.exp>")),
        regression=(
            "fixed: canonical_params keeps the last X-Mlflow-Experiment-Id header (dict of "
            "headers.items()), MLflow's FastAPI Header() reads the first: judged on B, written to A."
        ),
    ),
    Attack(
        "OTLP export: X-Mlflow-Run-Id of A's run",
        "POST",
        "/v1/traces",
        _otlp("<new.hex>"),
        headers=(("X-Mlflow-Experiment-Id", "<b.exp>"), ("X-Mlflow-Run-Id", "<a.run>")),
        regression=(
            "fixed: the OtlpExportTraces rule judges only X-Mlflow-Experiment-Id; MLflow "
            "links the new traces to the run in X-Mlflow-Run-Id (link_traces_to_run) without "
            "the edit right on that run's experiment that LinkTracesToRun needs."
        ),
    ),
    Attack(
        "OTLP export: spans into A's trace",
        "POST",
        "/v1/traces",
        _otlp("<a.fresh_trace_hex>"),
        headers=(("X-Mlflow-Experiment-Id", "<b.exp>"),),
        regression=(
            "fixed: OTLP spans carry their own trace ids, which are not judged; MLflow adds "
            "spans to an existing trace whatever its experiment, so bob writes into A's trace."
        ),
    ),
    Attack(
        "OTLP export: header A",
        "POST",
        "/v1/traces",
        _otlp("<new.hex>"),
        headers=(("X-Mlflow-Experiment-Id", "<a.exp>"),),
    ),
    Attack(
        "OTLP export: header 0A",
        "POST",
        "/v1/traces",
        _otlp("<new.hex>"),
        headers=(("X-Mlflow-Experiment-Id", "0<a.exp>"),),
    ),
    Attack(
        "OTLP export: the judged header named in Connection (hop-by-hop)",
        "POST",
        "/v1/traces",
        _otlp("<new.hex>"),
        headers=(
            ("X-Mlflow-Experiment-Id", "<b.exp>"),
            ("Connection", "close, X-Mlflow-Experiment-Id"),
        ),
    ),
    # -- promotion: edit on <e.model>; edit + promote:staging on <s.model> -----------------------
    *[
        Attack(
            f"promote edit-only to {stage!r}",
            "POST",
            MV + "/transition-stage",
            _stage("<e.model>", stage),
        )
        for stage in (
            "Production",
            "production",
            "PRODUCTION",
            "Production ",
            " production",
            "Staging",
        )
    ],
    *[
        Attack(
            f"protected alias {alias!r} with edit",
            "POST",
            RM + "/alias",
            {"name": "<e.model>", "alias": alias, "version": "1"},
        )
        for alias in ("champion", "Champion", "CHAMPION", "production", "prod")
    ],
    Attack(
        "delete protected alias with edit",
        "DELETE",
        RM + "/alias",
        {"name": "<e.model>", "alias": "champion"},
    ),
    Attack(
        "alias twice in the body",
        "POST",
        RM + "/alias",
        '{"name": "<e.model>", "alias": "candidate", "alias": "champion", "version": "1"}',
    ),
    Attack(
        "alias as a list",
        "POST",
        RM + "/alias",
        {"name": "<e.model>", "alias": ["candidate", "champion"], "version": "1"},
    ),
    Attack(
        "unprotected alias with edit",
        "POST",
        RM + "/alias",
        {"name": "<e.model>", "alias": "candidate", "version": "1"},
        expect=ALLOWED,
    ),
    Attack(
        "promote:staging to Staging",
        "POST",
        MV + "/transition-stage",
        _stage("<s.model>", "Staging"),
        expect=ALLOWED,
    ),
    Attack(
        "promote:staging to staging",
        "POST",
        MV + "/transition-stage",
        _stage("<s.model>", "staging"),
        expect=ALLOWED,
    ),
    *[
        Attack(
            f"promote:staging to {stage!r}",
            "POST",
            MV + "/transition-stage",
            _stage("<s.model>", stage),
        )
        for stage in ("Production", "PRODUCTION", "Archived", "None")
    ],
    Attack(
        "stage twice in the body",
        "POST",
        MV + "/transition-stage",
        '{"name": "<s.model>", "version": "1", "stage": "Staging", "stage": "Production", "archive_existing_versions": false}',
    ),
    Attack(
        "stage as a list",
        "POST",
        MV + "/transition-stage",
        _stage("<s.model>", ["Staging", "Production"]),
    ),
    # -- carol reads every experiment but A's (a deny rule): non-canonical ids -----------------
    Attack("deny rule: A's id", "GET", E + "<a.exp>", who="carol"),
    Attack("deny rule: B's id", "GET", E + "<b.exp>", who="carol", expect=ALLOWED),
    Attack(
        "deny rule: leading zero",
        "GET",
        E + "0<a.exp>",
        who="carol",
        regression=(
            "fixed: experiment ids are not canonicalised: '0<id>' names the policy object "
            "experiment:0<id>, which a deny rule on experiment:<id> does not match, while MLflow "
            "reads int('0<id>') = <id>."
        ),
    ),
    Attack(
        "deny rule: trailing %0A",
        "GET",
        E + "<a.exp>%0A",
        who="carol",
        regression=(
            "fixed: resolve._EXPERIMENT_ID ('^[0-9]{1,19}$') accepts a trailing newline "
            "($ matches before it); 'experiment:<id>\\n' escapes the deny rule, MLflow reads <id>."
        ),
    ),
    Attack(
        "deny rule: runs/search with a leading zero",
        "POST",
        "/api/2.0/mlflow/runs/search",
        {"experiment_ids": ["0<a.exp>"]},
        who="carol",
        regression="fixed: as 'deny rule: leading zero', through SearchRuns.",
    ),
    # -- positive controls: alice on A, bob on B --------------------------------------------------
    Attack("alice reads A", "GET", E + "<a.exp>", who="alice", expect=ALLOWED),
    Attack(
        "alice reads A through an encoded path",
        "GET",
        "/api/2.0/mlflow%2Fexperiments/%67et?experiment_id=<a.exp>",
        who="alice",
        expect=ALLOWED,
    ),
    Attack(
        "alice HEAD A's run (MLflow reads a HEAD's body)",
        "HEAD",
        "/api/2.0/mlflow/runs/get",
        {"run_id": "<a.run>"},
        who="alice",
        expect=ALLOWED,
    ),
    Attack("alice HEAD A's artifact", "HEAD", ART + A_FILE, who="alice", expect=ALLOWED),
    Attack(
        "alice reads A by a GET body",
        "GET",
        "/api/2.0/mlflow/runs/get",
        {"run_id": "<a.run>"},
        who="alice",
        expect=ALLOWED,
    ),
    Attack(
        "alice searches A's runs",
        "POST",
        "/api/2.0/mlflow/runs/search",
        {"experiment_ids": ["<a.exp>"]},
        who="alice",
        expect=ALLOWED,
    ),
    Attack(
        "alice tags A's run (double-encoded)",
        "POST",
        SET_TAG,
        {"run_id": "<a.run>", "key": "team", "value": "a"},
        who="alice",
        expect=ALLOWED,
        wrap=("json-string",),
    ),
    Attack(
        "alice tags A's run (text/plain)",
        "POST",
        SET_TAG,
        {"run_id": "<a.run>", "key": "team", "value": "a"},
        who="alice",
        # Judged and allowed by the gateway, refused by MLflow (POST needs application/json).
        expect=DENIED,
        status=400,
        content_type="text/plain",
    ),
    Attack(
        "alice logs A's model as input",
        "POST",
        "/api/2.0/mlflow/runs/log-inputs",
        {"run_id": "<a.run>", "models": [{"model_id": "<a.lm>"}]},
        who="alice",
        expect=ALLOWED,
    ),
    Attack(
        "alice registers a version from A's run",
        "POST",
        MV + "/create",
        {"name": "<a.model>", "source": "runs:/<a.run>/model", "run_id": "<a.run>"},
        who="alice",
        expect=ALLOWED,
    ),
    Attack(
        "alice promotes A to Production",
        "POST",
        MV + "/transition-stage",
        _stage("<a.model>", "Production"),
        who="alice",
        expect=ALLOWED,
    ),
    Attack(
        "alice sets A's champion",
        "POST",
        RM + "/alias",
        {"name": "<a.model>", "alias": "champion", "version": "1"},
        who="alice",
        expect=ALLOWED,
    ),
    Attack("alice downloads A's artifact", "GET", ART + A_FILE, who="alice", expect=ALLOWED),
    Attack(
        "alice lists A's artifacts",
        "GET",
        "/api/2.0/mlflow-artifacts/artifacts?path=<a.exp>%2F<a.run>",
        who="alice",
        expect=ALLOWED,
    ),
    Attack(
        "alice get-artifact A",
        "GET",
        "/get-artifact?run_id=<a.run>&path=secret.txt",
        who="alice",
        expect=ALLOWED,
    ),
    Attack(
        "alice get-download-uri A",
        "GET",
        MV + "/get-download-uri?name=<a.model>&version=1",
        who="alice",
        expect=ALLOWED,
    ),
    Attack("alice reads A's trace", "GET", TRACES_V3 + "/<a.trace>", who="alice", expect=ALLOWED),
    Attack(
        "alice GraphQL run with model versions",
        "POST",
        GRAPHQL,
        _gql(
            '{ mlflowGetRun(input: {runId: "<a.run>"}) { run { info { runId } experiment { name } modelVersions { name } } } }'
        ),
        who="alice",
        expect=ALLOWED,
    ),
    Attack(
        "alice GraphQL search model versions",
        "POST",
        GRAPHQL,
        _gql(
            "{ mlflowSearchModelVersions(input: {filter: \"name='<a.model>'\"}) { modelVersions { name } } }"
        ),
        who="alice",
        expect=ALLOWED,
    ),
    Attack(
        "alice OTLP export into A",
        "POST",
        "/v1/traces",
        _otlp("<new.hex>"),
        headers=(("X-Mlflow-Experiment-Id", "<a.exp>"),),
        who="alice",
        expect=ALLOWED,
    ),
    Attack("bob reads B", "GET", E + "<b.exp>", expect=ALLOWED),
    Attack(
        "bob searches B's runs",
        "POST",
        "/api/2.0/mlflow/runs/search",
        {"experiment_ids": ["<b.exp>"]},
        expect=ALLOWED,
    ),
    Attack(
        "bob downloads B's artifact",
        "GET",
        ART + "<b.exp>/<b.run>/artifacts/secret.txt",
        expect=ALLOWED,
    ),
    Attack(
        "bob uploads into B",
        "PUT",
        ART + "<b.exp>/<b.run>/artifacts/upload.txt",
        "bob's",
        content_type="text/plain",
        expect=ALLOWED,
    ),
    Attack(
        "bob OTLP export into B",
        "POST",
        "/v1/traces",
        _otlp("<new.hex>"),
        headers=(("X-Mlflow-Experiment-Id", "<b.exp>"),),
        expect=ALLOWED,
    ),
    Attack(
        "bob StartTraceV3 new trace in B",
        "POST",
        TRACES_V3,
        _trace("tr-<new.hex>", "<b.exp>"),
        expect=ALLOWED,
    ),
    Attack("bob searches models", "GET", RM + "/search", expect=ALLOWED),
]


# -- generated: every route keyed by an id or a name in the query string ---------------------------
# What team A's object of each kind is called in the world.
QUERY_VALUES = {
    "experiment": "<a.exp>",
    "run": "<a.run>",
    "trace": "<a.trace>",
    "logged_model": "<a.lm>",
    "dataset": "<a.ds>",
    "registered_model": "<a.model>",
    "experiment_by_name": "<a.name>",
    "artifact": "<a.exp>/<a.run>/artifacts",
}


def _query_keyed_rules() -> list[tuple[str, str, str, str]]:
    """(operation, path, query field, kind) of every GET route whose governing key is read from
    the query string, both /api and /ajax-api (the table has both)."""
    from gateway.authz.routes import RULES

    found = []
    for rule in RULES:
        if (
            rule.method != "GET"
            or rule.access != "policy"
            or rule.params not in ("mlflow", "query")
        ):
            continue
        if "<" in rule.template or "{" in rule.template:
            continue
        for need in rule.needs:
            key = need.field or ""
            if need.kind in QUERY_VALUES and key and not key.startswith("x-"):
                found.append((rule.operation, rule.template, key, need.kind))
    return found


def _query_keyed_cases() -> list[Attack]:
    cases = []
    for operation, path, key, kind in _query_keyed_rules():
        value = QUERY_VALUES[kind]
        where = f"{operation} {path} {key}"
        cases += [
            # The exploit as found: MLflow read the real object, the gateway judged "<id>#x".
            Attack(
                f"fragment after A's key: {where}",
                "GET",
                f"{path}?{key}={value}#x",
                status=400,
                twin=False,
                regression="a fragment after the id: the gateway judged '<id>#x', MLflow read <id>",
            ),
            Attack(
                f"fragment before A's key: {where}",
                "GET",
                f"{path}?{key}=<b.exp>#&{key}={value}",
                status=400,
                twin=False,
            ),
            # Encoded, the '#' is part of the value for every reader: nothing of A's is named.
            Attack(f"%23 after A's key: {where}", "GET", f"{path}?{key}={value}%23x", twin=False),
            Attack(f"%FF after A's key: {where}", "GET", f"{path}?{key}={value}%FF", twin=False),
            Attack(f"%00 after A's key: {where}", "GET", f"{path}?{key}={value}%00", twin=False),
        ]
    return cases


CASES += _query_keyed_cases()

# -- MLflow workspaces are refused until the gateway knows them --------------------------------
for _header, _value in (
    ("X-MLflow-Workspace", "team-a"),
    ("x-mlflow-workspace", "default"),
    ("X-MLFLOW-WORKSPACE", ""),
):
    CASES += [
        Attack(
            f"{_header}: {_value!r} on bob's own model",
            "GET",
            RM + "/get?name=<b.model>",
            headers=((_header, _value),),
            status=400,
            regression="policies and lookups ignored the workspace a request names",
        ),
        Attack(
            f"{_header}: {_value!r} on bob's own run tag",
            "POST",
            SET_TAG,
            B_TAG,
            headers=((_header, _value),),
            status=400,
        ),
    ]

# -- names MLflow's URLs treat specially cannot be created ----------------------------------------
for _char, _spelled in (("#", "hash"), ("?", "question mark"), ("\n", "newline")):
    CASES += [
        Attack(
            f"bob creates an experiment whose name has a {_spelled}",
            "POST",
            "/api/2.0/mlflow/experiments/create",
            {"name": f"<new.name>{_char}x"},
            status=400,
        ),
        Attack(
            f"bob creates a registered model whose name has a {_spelled}",
            "POST",
            RM + "/create",
            {"name": f"<new.name>{_char}x"},
            status=400,
        ),
        Attack(
            f"bob renames his model to a name with a {_spelled}",
            "POST",
            RM + "/rename",
            {"name": "<b.model>", "new_name": f"<new.name>{_char}x"},
            status=400,
        ),
        Attack(
            f"bob renames his experiment to a name with a {_spelled}",
            "POST",
            "/api/2.0/mlflow/experiments/update",
            {"experiment_id": "<b.exp>", "new_name": f"<new.name>{_char}x"},
            status=400,
        ),
    ]
