"""The MLflow route table: every (method, path) MLflow 3.17.2 serves, and what it needs.

Each rule names the governing resources a request touches (where MLflow reads their keys) and the
right needed on each. A request that matches no rule is refused (deny by default), admins included.
`tests/integration/test_route_table.py` enumerates the routes of the installed MLflow and fails
when one has no rule here.

Rights: `read` < `edit` < `manage`; `create` (experiments by name, registered models); `use` (AI
gateway endpoints); `promote:<stage>` and `alias:<name>`. Deleting a run, trace, tag or logged model
is `edit`; deleting or restoring an experiment, a registered model or a model version is `manage`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

Access = Literal["policy", "authenticated", "refused"]
# Where MLflow reads the parameters: "mlflow" = Flask handler (GET: query string, or the JSON body
# when there is no query string; other methods: the JSON body, whatever the Content-Type);
# "json" = always the JSON body; "query" = the query string only; "none" = path only.
ParamSource = Literal["mlflow", "json", "query", "none"]


@dataclass(frozen=True)
class Need:
    """A resource the request names, how to find it, and the right needed on it."""

    kind: str
    field: str | None = None
    action: str = "read"
    many: bool = False
    optional: bool = False


@dataclass(frozen=True)
class RouteRule:
    method: str
    template: str
    operation: str
    needs: tuple[Need, ...] = ()
    access: Access = "policy"
    params: ParamSource = "mlflow"
    # Search/list endpoints whose results are filtered to what the principal may read.
    filter: str | None = None
    # After-success bookkeeping (owner grants, policy moves on rename/delete).
    hook: str | None = None
    # Admin-only: no policy can grant it.
    admin_only: bool = False
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", compile_template(self.template))


_PLACEHOLDER = re.compile(r"<(?:(\w+):)?(\w+)>|\{(\w+)(?::(\w+))?\}")


def compile_template(template: str) -> re.Pattern[str]:
    """Flask `<conv:name>` and Starlette `{name:conv}` placeholders to a regex over the path."""
    pattern, last = "", 0
    for match in _PLACEHOLDER.finditer(template):
        pattern += re.escape(template[last : match.start()])
        converter = match.group(1) or match.group(4)
        name = match.group(2) or match.group(3)
        pattern += f"(?P<{name}>.+)" if converter == "path" else f"(?P<{name}>[^/]+)"
        last = match.end()
    pattern += re.escape(template[last:])
    return re.compile("^" + pattern + r"\Z", re.S)


# -- shorthands ---------------------------------------------------------------------------------


def exp(field: str = "experiment_id", action: str = "read", **kw: bool) -> Need:
    return Need("experiment", field, action, **kw)


def exps(field: str = "experiment_ids", action: str = "read") -> Need:
    return Need("experiment", field, action, many=True)


def run(field: str = "run_id", action: str = "read", **kw: bool) -> Need:
    return Need("run", field, action, **kw)


def trace(field: str = "trace_id", action: str = "read", **kw: bool) -> Need:
    return Need("trace", field, action, **kw)


def lmodel(field: str = "model_id", action: str = "read", **kw: bool) -> Need:
    return Need("logged_model", field, action, **kw)


def dataset(field: str = "dataset_id", action: str = "read") -> Need:
    return Need("dataset", field, action)


def model(field: str = "name", action: str = "read") -> Need:
    return Need("registered_model", field, action)


def artifact(field: str = "artifact_path", action: str = "read") -> Need:
    return Need("artifact", field, action)


def lookup(kind: str, field: str, action: str) -> Need:
    """A GenAI object keyed by its own id; MLflow is asked which experiment owns it."""
    return Need(f"lookup:{kind}", field, action)


def obj(name: str, action: str) -> Need:
    """A fixed policy object, e.g. `ai_gateway:config` (admin-only unless a policy grants it)."""
    return Need(f"object:{name}", None, action)


def named(prefix: str, field: str, action: str) -> Need:
    """A policy object named from a parameter, e.g. `mcp_server:<name>`."""
    return Need(f"named:{prefix}", field, action)


_RULES: list[RouteRule] = []


def api(method: str, suffix: str, op: str, *needs: Need, **kw: object) -> None:
    """A route served under both /api and /ajax-api."""
    for prefix in ("/api", "/ajax-api"):
        _RULES.append(RouteRule(method, prefix + suffix, op, tuple(needs), **kw))  # type: ignore[arg-type]


def ajax(method: str, suffix: str, op: str, *needs: Need, **kw: object) -> None:
    """A route MLflow serves only under /ajax-api (the UI's own calls)."""
    _RULES.append(RouteRule(method, "/ajax-api" + suffix, op, tuple(needs), **kw))  # type: ignore[arg-type]


def raw(method: str, path: str, op: str, *needs: Need, **kw: object) -> None:
    _RULES.append(RouteRule(method, path, op, tuple(needs), **kw))  # type: ignore[arg-type]


AUTHENTICATED: dict[str, object] = {"access": "authenticated"}
REFUSED: dict[str, object] = {"access": "refused"}
ADMIN: dict[str, object] = {"admin_only": True}

# -- UI, metadata ---------------------------------------------------------------------------------
raw("GET", "/", "UiIndex", **AUTHENTICATED, params="none")
raw("GET", "/static-files/<path:path>", "UiStatic", **AUTHENTICATED, params="none")
raw("GET", "/build/<path:filename>", "UiBuild", **AUTHENTICATED, params="none")
raw("GET", "/health", "Health", **AUTHENTICATED, params="none")
raw("GET", "/version", "Version", **AUTHENTICATED, params="none")
api("GET", "/3.0/mlflow/server-info", "GetServerInfo", **AUTHENTICATED, params="none")
ajax("GET", "/3.0/mlflow/ui-telemetry", "GetUiTelemetry", **AUTHENTICATED, params="none")
ajax("POST", "/3.0/mlflow/ui-telemetry", "PostUiTelemetry", **AUTHENTICATED, params="none")

# -- experiments ----------------------------------------------------------------------------------
api(
    "POST",
    "/2.0/mlflow/experiments/create",
    "CreateExperiment",
    Need("experiment_name", "name", "create"),
    Need("artifact_location", "artifact_location", "create", optional=True),
    hook="experiment_created",
)
api("GET", "/2.0/mlflow/experiments/get", "GetExperiment", exp())
api(
    "GET",
    "/2.0/mlflow/experiments/get-by-name",
    "GetExperimentByName",
    Need("experiment_by_name", "experiment_name"),
)
for _m in ("GET", "POST"):
    api(_m, "/2.0/mlflow/experiments/search", "SearchExperiments", filter="experiments")
api("POST", "/2.0/mlflow/experiments/delete", "DeleteExperiment", exp(action="manage"))
api("POST", "/2.0/mlflow/experiments/restore", "RestoreExperiment", exp(action="manage"))
api(
    "POST",
    "/2.0/mlflow/experiments/update",
    "UpdateExperiment",
    exp(action="edit"),
    Need("experiment_name", "new_name", "create", optional=True),
    hook="experiment_renamed",
)
api("POST", "/2.0/mlflow/experiments/set-experiment-tag", "SetExperimentTag", exp(action="edit"))
api(
    "POST",
    "/2.0/mlflow/experiments/delete-experiment-tag",
    "DeleteExperimentTag",
    exp(action="edit"),
)
# MLflow registers this one without the slash after 2.0, with a not-implemented handler.
api("POST", "/2.0mlflow/experiments/search-datasets", "SearchDatasetsUnserved", exps())
ajax("POST", "/2.0/mlflow/experiments/search-datasets", "SearchDatasets", exps())

# -- runs -----------------------------------------------------------------------------------------
# The hook remembers the new run's experiment: the run's first log call needs no lookup.
api("POST", "/2.0/mlflow/runs/create", "CreateRun", exp(action="edit"), hook="run_created")
ajax(
    "POST",
    "/2.0/mlflow/runs/create-promptlab-run",
    "CreatePromptlabRun",
    exp(action="edit"),
)
for _op, _suffix in (
    ("UpdateRun", "update"),
    ("DeleteRun", "delete"),
    ("RestoreRun", "restore"),
    ("LogMetric", "log-metric"),
    ("LogParam", "log-parameter"),
    ("SetTag", "set-tag"),
    ("DeleteTag", "delete-tag"),
    ("LogBatch", "log-batch"),
    ("LogModel", "log-model"),
):
    api("POST", f"/2.0/mlflow/runs/{_suffix}", _op, run(action="edit"))
for _op, _suffix in (("LogInputs", "log-inputs"), ("LogOutputs", "outputs")):
    api(
        "POST",
        f"/2.0/mlflow/runs/{_suffix}",
        _op,
        run(action="edit"),
        lmodel("models[].model_id", "read", many=True, optional=True),
    )
api("GET", "/2.0/mlflow/runs/get", "GetRun", run())
api("POST", "/2.0/mlflow/runs/search", "SearchRuns", exps())
api("GET", "/2.0/mlflow/metrics/get-history", "GetMetricHistory", run())
api(
    "GET",
    "/2.0/mlflow/metrics/get-history-bulk-interval",
    "GetMetricHistoryBulkInterval",
    run("run_ids", many=True),
)
ajax(
    "GET", "/2.0/mlflow/metrics/get-history-bulk", "GetMetricHistoryBulk", run("run_id", many=True)
)

# -- run artifacts (paths below a run) ------------------------------------------------------------
api("GET", "/2.0/mlflow/artifacts/list", "ListArtifacts", run())
api(
    "POST",
    "/2.0/mlflow/artifacts/presigned-upload-url",
    "CreatePresignedUploadUrl",
    run(action="edit", optional=True),
    lmodel(action="edit", optional=True),
)
api(
    "POST",
    "/2.0/mlflow/artifacts/presigned-download-url",
    "CreatePresignedDownloadUrl",
    run(),
)
raw("GET", "/get-artifact", "GetArtifact", run(), params="query")
ajax(
    "POST", "/2.0/mlflow/upload-artifact", "UploadArtifact", run("run_uuid", "edit"), params="query"
)
for _v in ("2.0", "3.0"):
    ajax(
        "GET",
        f"/{_v}/mlflow/get-trace-artifact",
        "GetTraceArtifact",
        trace("request_id"),
        params="query",
    )

# -- proxied artifact store (mlflow-artifacts:/<experiment id>/...) -------------------------------
_ART = "/2.0/mlflow-artifacts"
api("GET", _ART + "/artifacts/{artifact_path:path}", "DownloadArtifact", artifact(), params="none")
api(
    "PUT",
    _ART + "/artifacts/{artifact_path:path}",
    "UploadArtifact",
    artifact(action="edit"),
    params="none",
)
# Flask registers the same two routes; the native FastAPI ones above shadow them in MLflow, and
# they carry the same rule here so that whichever answers, the judgement is the same.
api("GET", _ART + "/artifacts/<path:artifact_path>", "DownloadArtifact", artifact(), params="none")
api(
    "PUT",
    _ART + "/artifacts/<path:artifact_path>",
    "UploadArtifact",
    artifact(action="edit"),
    params="none",
)
api(
    "DELETE",
    _ART + "/artifacts/<path:artifact_path>",
    "DeleteArtifact",
    artifact(action="edit"),
    params="none",
)
api("GET", _ART + "/artifacts", "ListArtifactsMlflowArtifacts", artifact("path"), params="query")
for _op, _suffix in (
    ("CreateMultipartUpload", "create"),
    ("CompleteMultipartUpload", "complete"),
    ("AbortMultipartUpload", "abort"),
):
    api(
        "POST",
        f"{_ART}/mpu/{_suffix}/<path:artifact_path>",
        _op,
        artifact(action="edit"),
        params="none",
    )
api(
    "GET",
    _ART + "/presigned/<path:artifact_path>",
    "GetPresignedDownloadUrl",
    artifact(),
    params="none",
)

# -- traces ---------------------------------------------------------------------------------------
api("POST", "/2.0/mlflow/traces", "StartTrace", exp(action="edit"))
api(
    "POST",
    "/3.0/mlflow/traces",
    "StartTraceV3",
    exp("trace.trace_info.trace_location.mlflow_experiment.experiment_id", "edit"),
    # MLflow merges into an existing trace of that id, moving it: its owner must allow that.
    Need("existing_trace", "trace.trace_info.trace_id", "edit", optional=True),
    hook="trace_started",
)
raw(
    "POST",
    "/v1/traces",
    "OtlpExportTraces",
    exp("x-mlflow-experiment-id", "edit"),
    run("x-mlflow-run-id", "edit", optional=True),
    Need("otlp_traces", None, "edit"),
    params="none",
)
api("PATCH", "/2.0/mlflow/traces/<request_id>", "EndTrace", trace("request_id", "edit"))
api("GET", "/2.0/mlflow/traces/<request_id>/info", "GetTraceInfo", trace("request_id"))
api("GET", "/3.0/mlflow/traces/<trace_id>", "GetTraceInfoV3", trace())
api("GET", "/3.0/mlflow/traces/get", "GetTrace", trace())
api("GET", "/2.0/mlflow/get-online-trace-details", "GetOnlineTraceDetails", trace())
api(
    "GET",
    "/3.0/mlflow/traces/batchGet",
    "BatchGetTraces",
    trace("trace_ids", many=True),
)
api(
    "POST",
    "/3.0/mlflow/traces/batchGetInfos",
    "BatchGetTraceInfos",
    trace("trace_ids", many=True),
)
api("GET", "/2.0/mlflow/traces", "SearchTraces", exps())
api(
    "POST",
    "/3.0/mlflow/traces/search",
    "SearchTracesV3",
    exps("locations[].mlflow_experiment.experiment_id"),
)
api(
    "GET",
    "/2.0/mlflow/unified-traces",
    "SearchUnifiedTraces",
    exps(),
    lmodel(optional=True),
)
for _v, _key in (("2.0", "request_id"), ("3.0", "trace_id")):
    api("PATCH", f"/{_v}/mlflow/traces/<{_key}>/tags", "SetTraceTag", trace(_key, "edit"))
    api("DELETE", f"/{_v}/mlflow/traces/<{_key}>/tags", "DeleteTraceTag", trace(_key, "edit"))
api(
    "POST",
    "/2.0/mlflow/traces/link-to-run",
    "LinkTracesToRun",
    run(action="edit"),
    trace("trace_ids", "edit", many=True),
)
api(
    "POST",
    "/2.0/mlflow/traces/link-prompts",
    "LinkPromptsToTrace",
    trace(action="edit"),
    model("prompt_versions[].name", "read"),
)
for _v in ("2.0", "3.0"):
    api(
        "POST",
        f"/{_v}/mlflow/traces/delete-traces",
        "DeleteTraces",
        exp(action="edit"),
        trace("request_ids", "edit", many=True, optional=True),
    )
api(
    "POST",
    "/3.0/mlflow/traces/calculate-filter-correlation",
    "CalculateTraceFilterCorrelation",
    exps(),
)
api("POST", "/3.0/mlflow/traces/metrics", "QueryTraceMetrics", exps())
api("GET", "/3.0/mlflow/traces/<trace_id>/assessments/<assessment_id>", "GetAssessment", trace())
api("POST", "/3.0/mlflow/traces/<trace_id>/assessments", "CreateAssessment", trace(action="edit"))
api(
    "PATCH",
    "/3.0/mlflow/traces/<trace_id>/assessments/<assessment_id>",
    "UpdateAssessment",
    trace(action="edit"),
)
api(
    "DELETE",
    "/3.0/mlflow/traces/<trace_id>/assessments/<assessment_id>",
    "DeleteAssessment",
    trace(action="edit"),
)

# -- logged models (MLflow 3) ---------------------------------------------------------------------
# The hook remembers the new model's experiment: logging its files and outputs needs no lookup.
api(
    "POST",
    "/2.0/mlflow/logged-models",
    "CreateLoggedModel",
    exp(action="edit"),
    run("source_run_id", optional=True),
    hook="logged_model_created",
)
api("GET", "/2.0/mlflow/logged-models/<model_id>", "GetLoggedModel", lmodel())
api("PATCH", "/2.0/mlflow/logged-models/<model_id>", "FinalizeLoggedModel", lmodel(action="edit"))
api("DELETE", "/2.0/mlflow/logged-models/<model_id>", "DeleteLoggedModel", lmodel(action="edit"))
api("POST", "/2.0/mlflow/logged-models/search", "SearchLoggedModels", exps())
api(
    "PATCH",
    "/2.0/mlflow/logged-models/<model_id>/tags",
    "SetLoggedModelTags",
    lmodel(action="edit"),
)
api(
    "DELETE",
    "/2.0/mlflow/logged-models/<model_id>/tags/<tag_key>",
    "DeleteLoggedModelTag",
    lmodel(action="edit"),
)
api(
    "POST",
    "/2.0/mlflow/logged-models/<model_id>/params",
    "LogLoggedModelParams",
    lmodel(action="edit"),
)
api(
    "GET",
    "/2.0/mlflow/logged-models/<model_id>/artifacts/directories",
    "ListLoggedModelArtifacts",
    lmodel(),
)
ajax(
    "GET",
    "/2.0/mlflow/logged-models/<model_id>/artifacts/files",
    "GetLoggedModelArtifact",
    lmodel(),
)

# -- model registry (prompts are registered models too) -------------------------------------------
_RM = "/2.0/mlflow/registered-models"
_MV = "/2.0/mlflow/model-versions"
api("POST", _RM + "/create", "CreateRegisteredModel", model(action="create"), hook="model_created")
api(
    "POST",
    _RM + "/rename",
    "RenameRegisteredModel",
    model(action="manage"),
    model("new_name", "create"),
    hook="model_renamed",
)
api("PATCH", _RM + "/update", "UpdateRegisteredModel", model(action="edit"))
api(
    "DELETE", _RM + "/delete", "DeleteRegisteredModel", model(action="manage"), hook="model_deleted"
)
api("GET", _RM + "/get", "GetRegisteredModel", model())
api("GET", _RM + "/search", "SearchRegisteredModels", filter="registered_models")
for _m in ("GET", "POST"):
    api(_m, _RM + "/get-latest-versions", "GetLatestVersions", model())
api("POST", _RM + "/set-tag", "SetRegisteredModelTag", model(action="edit"))
api("DELETE", _RM + "/delete-tag", "DeleteRegisteredModelTag", model(action="edit"))
api("POST", _RM + "/alias", "SetRegisteredModelAlias", model(action="alias"))
api("DELETE", _RM + "/alias", "DeleteRegisteredModelAlias", model(action="alias"))
api("GET", _RM + "/alias", "GetModelVersionByAlias", model())
api(
    "POST",
    _MV + "/create",
    "CreateModelVersion",
    model(action="edit"),
    run(optional=True),
    lmodel(optional=True),
    Need("model_source", "source", "read", optional=True),
    hook="version_created",
)
api("PATCH", _MV + "/update", "UpdateModelVersion", model(action="edit"))
api("POST", _MV + "/transition-stage", "TransitionModelVersionStage", model(action="stage"))
api("DELETE", _MV + "/delete", "DeleteModelVersion", model(action="manage"), hook="version_deleted")
api("GET", _MV + "/get", "GetModelVersion", model())
api("GET", _MV + "/search", "SearchModelVersions", filter="model_versions")
api("GET", _MV + "/get-download-uri", "GetModelVersionDownloadUri", model())
api("POST", _MV + "/set-tag", "SetModelVersionTag", model(action="edit"))
api("DELETE", _MV + "/delete-tag", "DeleteModelVersionTag", model(action="edit"))
raw("GET", "/model-versions/get-artifact", "GetModelVersionArtifact", model(), params="query")

# -- datasets -------------------------------------------------------------------------------------
_DS = "/3.0/mlflow/datasets"
api("POST", _DS + "/create", "CreateDataset", exps(action="edit"))
api("GET", _DS + "/<dataset_id>", "GetDataset", dataset())
api("DELETE", _DS + "/<dataset_id>", "DeleteDataset", dataset(action="edit"))
for _m in ("GET", "POST"):
    api(_m, _DS + "/search", "SearchEvaluationDatasets", exps())
api("PATCH", _DS + "/<dataset_id>/tags", "SetDatasetTags", dataset(action="edit"))
api("DELETE", _DS + "/<dataset_id>/tags/<key>", "DeleteDatasetTag", dataset(action="edit"))
api("POST", _DS + "/<dataset_id>/records", "UpsertDatasetRecords", dataset(action="edit"))
api("GET", _DS + "/<dataset_id>/records", "GetDatasetRecords", dataset())
api("DELETE", _DS + "/<dataset_id>/records", "DeleteDatasetRecords", dataset(action="edit"))
api("GET", _DS + "/<dataset_id>/experiment-ids", "GetDatasetExperimentIds", dataset())
api(
    "POST",
    _DS + "/<dataset_id>/add-experiments",
    "AddDatasetToExperiments",
    dataset(action="edit"),
    exps(action="edit"),
    hook="dataset_changed",
)
api(
    "POST",
    _DS + "/<dataset_id>/remove-experiments",
    "RemoveDatasetFromExperiments",
    dataset(action="edit"),
    hook="dataset_changed",
)

# -- GenAI objects inside an experiment ------------------------------------------------------------
api("POST", "/3.0/mlflow/scorers/register", "RegisterScorer", exp(action="edit"))
api("GET", "/3.0/mlflow/scorers/list", "ListScorers", exp())
api("GET", "/3.0/mlflow/scorers/versions", "ListScorerVersions", exp())
api("GET", "/3.0/mlflow/scorers/get", "GetScorer", exp())
api("DELETE", "/3.0/mlflow/scorers/delete", "DeleteScorer", exp(action="edit"))
api(
    "GET",
    "/3.0/mlflow/scorers/online-configs",
    "GetOnlineScoringConfigs",
    lookup("scorer", "scorer_ids", "read"),
    **ADMIN,
)
api("PUT", "/3.0/mlflow/scorers/online-config", "UpsertOnlineScoringConfig", exp(action="edit"))
ajax("POST", "/3.0/mlflow/scorer/invoke", "InvokeScorer", exp(action="edit"), params="json")
ajax(
    "POST",
    "/3.0/mlflow/genai/evaluate/invoke",
    "InvokeEvaluation",
    exp(action="edit"),
    params="json",
)
api("POST", "/3.0/mlflow/issues", "CreateIssue", exp(action="edit"))
api("PATCH", "/3.0/mlflow/issues/<issue_id>", "UpdateIssue", lookup("issue", "issue_id", "edit"))
api("GET", "/3.0/mlflow/issues/<issue_id>", "GetIssue", lookup("issue", "issue_id", "read"))
api("POST", "/3.0/mlflow/issues/search", "SearchIssues", exp())
ajax("POST", "/3.0/mlflow/issues/invoke", "InvokeIssueDetection", exp(action="edit"), params="json")
_LS = "/3.0/mlflow/label-schemas"
api("POST", _LS + "/create", "CreateLabelSchema", exp(action="manage"))
api("GET", _LS + "/get", "GetLabelSchema", lookup("label_schema", "schema_id", "read"))
api("GET", _LS + "/get-by-name", "GetLabelSchemaByName", exp())
api("GET", _LS + "/list", "ListLabelSchemas", exp())
api("PATCH", _LS + "/update", "UpdateLabelSchema", lookup("label_schema", "schema_id", "manage"))
api("DELETE", _LS + "/delete", "DeleteLabelSchema", lookup("label_schema", "schema_id", "manage"))
_RQ = "/3.0/mlflow/review-queues"
api("POST", _RQ + "/create", "CreateReviewQueue", exp(action="edit"))
api("POST", _RQ + "/get-or-create-user", "GetOrCreateUserReviewQueue", exp(action="edit"))
api("GET", _RQ + "/get", "GetReviewQueue", lookup("review_queue", "queue_id", "read"))
api("GET", _RQ + "/get-by-name", "GetReviewQueueByName", exp())
api("GET", _RQ + "/list", "ListReviewQueues", exp())
api("POST", _RQ + "/update", "UpdateReviewQueue", lookup("review_queue", "queue_id", "edit"))
api("POST", _RQ + "/delete", "DeleteReviewQueue", lookup("review_queue", "queue_id", "edit"))
for _op, _suffix in (
    ("AddReviewQueueItems", "add"),
    ("RemoveReviewQueueItems", "remove"),
    ("SetReviewQueueItemStatus", "set-status"),
):
    api(
        "POST",
        f"{_RQ}/items/{_suffix}",
        _op,
        lookup("review_queue", "queue_id", "edit"),
    )
api("GET", _RQ + "/items/list", "ListReviewQueueItems", lookup("review_queue", "queue_id", "read"))
_PO = "/3.0/mlflow/prompt-optimization/jobs"
api(
    "POST",
    _PO,
    "CreatePromptOptimizationJob",
    exp(action="edit"),
    Need("prompt_uri", "source_prompt_uri", "read"),
)
api("GET", _PO + "/<job_id>", "GetPromptOptimizationJob", lookup("prompt_job", "job_id", "read"))
for _m in ("GET", "POST"):
    api(_m, _PO + "/search", "SearchPromptOptimizationJobs", exp())
api(
    "POST",
    _PO + "/<job_id>/cancel",
    "CancelPromptOptimizationJob",
    lookup("prompt_job", "job_id", "edit"),
)
api(
    "DELETE",
    _PO + "/<job_id>",
    "DeletePromptOptimizationJob",
    lookup("prompt_job", "job_id", "edit"),
)

# -- admin-type features: admin-only by default, grantable by policy ------------------------------
_GW = "/3.0/mlflow/gateway"
for _m, _suffix, _op, _act in (
    ("POST", "/secrets/create", "CreateGatewaySecret", "manage"),
    ("GET", "/secrets/get", "GetGatewaySecret", "read"),
    ("POST", "/secrets/update", "UpdateGatewaySecret", "manage"),
    ("DELETE", "/secrets/delete", "DeleteGatewaySecret", "manage"),
    ("GET", "/secrets/list", "ListGatewaySecrets", "read"),
    ("POST", "/endpoints/create", "CreateGatewayEndpoint", "manage"),
    ("GET", "/endpoints/get", "GetGatewayEndpoint", "read"),
    ("POST", "/endpoints/update", "UpdateGatewayEndpoint", "manage"),
    ("DELETE", "/endpoints/delete", "DeleteGatewayEndpoint", "manage"),
    ("GET", "/endpoints/list", "ListGatewayEndpoints", "read"),
    ("POST", "/model-definitions/create", "CreateGatewayModelDefinition", "manage"),
    ("GET", "/model-definitions/get", "GetGatewayModelDefinition", "read"),
    ("GET", "/model-definitions/list", "ListGatewayModelDefinitions", "read"),
    ("POST", "/model-definitions/update", "UpdateGatewayModelDefinition", "manage"),
    ("DELETE", "/model-definitions/delete", "DeleteGatewayModelDefinition", "manage"),
    ("POST", "/endpoints/models/attach", "AttachModelToGatewayEndpoint", "manage"),
    ("POST", "/endpoints/models/detach", "DetachModelFromGatewayEndpoint", "manage"),
    ("POST", "/endpoints/bindings/create", "CreateGatewayEndpointBinding", "manage"),
    ("DELETE", "/endpoints/bindings/delete", "DeleteGatewayEndpointBinding", "manage"),
    ("GET", "/endpoints/bindings/list", "ListGatewayEndpointBindings", "read"),
    ("POST", "/endpoints/set-tag", "SetGatewayEndpointTag", "manage"),
    ("DELETE", "/endpoints/delete-tag", "DeleteGatewayEndpointTag", "manage"),
    ("POST", "/budgets/create", "CreateGatewayBudgetPolicy", "manage"),
    ("GET", "/budgets/get", "GetGatewayBudgetPolicy", "read"),
    ("POST", "/budgets/update", "UpdateGatewayBudgetPolicy", "manage"),
    ("DELETE", "/budgets/delete", "DeleteGatewayBudgetPolicy", "manage"),
    ("GET", "/budgets/list", "ListGatewayBudgetPolicies", "read"),
    ("GET", "/budgets/windows", "ListGatewayBudgetWindows", "read"),
    ("POST", "/guardrails/create", "CreateGatewayGuardrail", "manage"),
    ("GET", "/guardrails/get", "GetGatewayGuardrail", "read"),
    ("DELETE", "/guardrails/delete", "DeleteGatewayGuardrail", "manage"),
    ("GET", "/guardrails/list", "ListGatewayGuardrails", "read"),
    ("POST", "/guardrails/add-to-endpoint", "AddGuardrailToEndpoint", "manage"),
    ("DELETE", "/guardrails/remove-from-endpoint", "RemoveGuardrailFromEndpoint", "manage"),
    ("GET", "/guardrails/list-for-endpoint", "ListGuardrailsForEndpoint", "read"),
    ("PATCH", "/guardrails/update-config", "UpdateGuardrailConfig", "manage"),
):
    api(_m, _GW + _suffix, _op, obj("ai_gateway:config", _act), params="none")
for _suffix, _op in (
    ("/supported-providers", "ListSupportedProviders"),
    ("/supported-models", "ListSupportedModels"),
    ("/provider-config", "GetProviderConfig"),
    ("/secrets/config", "GetSecretsConfig"),
):
    ajax("GET", _GW + _suffix, _op, obj("ai_gateway:config", "read"), params="none")
for _m in ("GET", "POST"):
    ajax(
        _m,
        "/2.0/mlflow/gateway-proxy",
        "GatewayProxy",
        obj("ai_gateway:endpoints", "use"),
        params="none",
    )
raw(
    "POST",
    "/gateway/{endpoint_name}/mlflow/invocations",
    "InvokeGatewayEndpoint",
    named("ai_gateway_endpoint:", "endpoint_name", "use"),
    params="none",
)
for _path in (
    "/gateway/gemini/v1beta/models/{endpoint_name}:generateContent",
    "/gateway/gemini/v1beta/models/{endpoint_name}:streamGenerateContent",
    "/gateway/proxy/{endpoint_name}/{path:path}",
):
    raw(
        "POST",
        _path,
        "InvokeGatewayEndpoint",
        named("ai_gateway_endpoint:", "endpoint_name", "use"),
        params="none",
    )
for _path in (
    "/gateway/mlflow/v1/chat/completions",
    "/gateway/openai/v1/chat/completions",
    "/gateway/openai/v1/embeddings",
    "/gateway/typesafe/v1/systemone",
    "/gateway/openai/v1/responses",
    "/gateway/openai/v1/responses/compact",
    "/gateway/anthropic/v1/messages",
):
    raw(
        "POST",
        _path,
        "InvokeGatewayEndpoint",
        named("ai_gateway_endpoint:", "model", "use"),
        params="json",
    )
raw("GET", "/gateway/mlflow/v1/models", "ListGatewayModels", obj("ai_gateway:config", "read"))

_MCP = "/3.0/mlflow/mcp-servers"
api("POST", _MCP, "CreateMcpServer", named("mcp_server:", "name", "manage"), params="json")
api("GET", _MCP, "SearchMcpServers", obj("mcp_server:*", "read"), params="none")
api("GET", _MCP + "/endpoints", "SearchMcpEndpoints", obj("mcp_server:*", "read"), params="none")
for _m, _suffix, _op, _act in (
    ("POST", "/versions/{version:path}/tags", "SetMcpServerVersionTag", "edit"),
    ("DELETE", "/versions/{version:path}/tags/{key:path}", "DeleteMcpServerVersionTag", "edit"),
    ("GET", "/versions/{version:path}", "GetMcpServerVersion", "read"),
    ("PATCH", "/versions/{version:path}", "UpdateMcpServerVersion", "edit"),
    ("DELETE", "/versions/{version:path}", "DeleteMcpServerVersion", "manage"),
    ("POST", "/versions", "CreateMcpServerVersion", "edit"),
    ("GET", "/versions", "ListMcpServerVersions", "read"),
    ("POST", "/endpoints", "CreateMcpEndpoint", "edit"),
    ("GET", "/endpoints/{endpoint_id}", "GetMcpEndpoint", "read"),
    ("PATCH", "/endpoints/{endpoint_id}", "UpdateMcpEndpoint", "edit"),
    ("DELETE", "/endpoints/{endpoint_id}", "DeleteMcpEndpoint", "manage"),
    ("GET", "/endpoints", "ListMcpServerEndpoints", "read"),
    ("POST", "/tags", "SetMcpServerTag", "edit"),
    ("DELETE", "/tags/{key:path}", "DeleteMcpServerTag", "edit"),
    ("POST", "/aliases", "SetMcpServerAlias", "edit"),
    ("GET", "/aliases/{alias:path}", "GetMcpServerAlias", "read"),
    ("DELETE", "/aliases/{alias:path}", "DeleteMcpServerAlias", "edit"),
    ("GET", "", "GetMcpServer", "read"),
    ("PATCH", "", "UpdateMcpServer", "edit"),
    ("DELETE", "", "DeleteMcpServer", "manage"),
):
    api(
        _m,
        _MCP + "/{name:path}" + _suffix,
        _op,
        named("mcp_server:", "name", _act),
        params="none",
    )

_WS = "/3.0/mlflow/workspaces"
api("GET", _WS, "ListWorkspaces", obj("workspace:*", "read"), params="none")
api("POST", _WS, "CreateWorkspace", named("workspace:", "name", "manage"), params="json")
api("GET", _WS + "/<workspace_name>", "GetWorkspace", named("workspace:", "workspace_name", "read"))
for _m, _op in (("PATCH", "UpdateWorkspace"), ("DELETE", "DeleteWorkspace")):
    api(_m, _WS + "/<workspace_name>", _op, named("workspace:", "workspace_name", "manage"))

_WH = "/2.0/mlflow/webhooks"
for _m, _suffix, _op in (
    ("POST", "", "CreateWebhook"),
    ("GET", "", "ListWebhooks"),
    ("GET", "/<webhook_id>", "GetWebhook"),
    ("PATCH", "/<webhook_id>", "UpdateWebhook"),
    ("DELETE", "/<webhook_id>", "DeleteWebhook"),
    ("POST", "/<webhook_id>/test", "TestWebhook"),
):
    api(_m, _WH + _suffix, _op, obj("webhook:*", "manage"), params="none")

for _v in ("/3.0/jobs", "/3.0/mlflow/jobs"):
    _id = "{job_id}" if _v == "/3.0/jobs" else "<job_id>"
    ajax("GET", f"{_v}/{_id}", "GetJob", obj("job:*", "read"), params="none")
    ajax("PATCH", f"{_v}/cancel/{_id}", "CancelJob", obj("job:*", "manage"), params="none")
ajax("POST", "/3.0/jobs/", "SubmitJob", obj("job:*", "manage"), params="none")
ajax("POST", "/3.0/jobs/search", "SearchJobs", obj("job:*", "read"), params="none")
ajax("POST", "/3.0/mlflow/demo/generate", "GenerateDemoData", obj("demo:*", "manage"))
ajax("POST", "/3.0/mlflow/demo/delete", "DeleteDemoData", obj("demo:*", "manage"))

# -- refused: MLflow trusts loopback for the assistant, and every request from us is loopback -----
for _m, _suffix in (
    ("POST", "/message"),
    ("GET", "/sessions/{session_id}/stream"),
    ("PATCH", "/sessions/{session_id}"),
    ("POST", "/sessions/{session_id}/permission"),
    ("POST", "/sessions/{session_id}/tool-result"),
    ("GET", "/providers/{provider}/health"),
    ("GET", "/providers"),
    ("GET", "/config"),
    ("PUT", "/config"),
    ("POST", "/skills/install"),
    ("GET", "/providers/{provider}/models"),
):
    ajax(_m, "/3.0/mlflow/assistant" + _suffix, "Assistant", **REFUSED, params="none")

# -- GraphQL: parsed and judged field by field ----------------------------------------------------
# MLflow's /graphql reads the JSON body for GET and POST alike.
for _m in ("GET", "POST"):
    raw(_m, "/graphql", "GraphQL", Need("graphql"), params="json")

RULES: tuple[RouteRule, ...] = tuple(_RULES)


def _specificity(rule: RouteRule) -> tuple[int, int]:
    # Like Werkzeug: literal text beats placeholders (/traces/get over /traces/<trace_id>, and
    # /mcp-servers/{name:path}/versions/... over /mcp-servers/{name:path}).
    literal = _PLACEHOLDER.sub("", rule.template)
    return len(literal), -len(_PLACEHOLDER.findall(rule.template))


class RouteTable:
    """Finds the rule MLflow would route a request to: the most specific template that matches."""

    def __init__(self, rules: tuple[RouteRule, ...] = RULES) -> None:
        self._by_method: dict[str, list[RouteRule]] = {}
        for rule in rules:
            self._by_method.setdefault(rule.method, []).append(rule)
        # A template without placeholders matches one path only, and beats every template with
        # placeholders that matches it too (they capture at least a character, so they have less
        # literal text): those are a dict lookup. The others are tried in order of specificity,
        # only when the path starts with their literal text.
        self._exact: dict[str, dict[str, RouteRule]] = {}
        self._patterns: dict[str, list[tuple[str, RouteRule]]] = {}
        for method, candidates in self._by_method.items():
            candidates.sort(key=_specificity, reverse=True)
            exact = self._exact.setdefault(method, {})
            patterns = self._patterns.setdefault(method, [])
            for rule in candidates:
                placeholder = _PLACEHOLDER.search(rule.template)
                if placeholder is None:
                    exact.setdefault(rule.template, rule)
                else:
                    patterns.append((rule.template[: placeholder.start()], rule))

    def match(self, method: str, path: str) -> tuple[RouteRule, dict[str, str]] | None:
        lookup_method = "GET" if method == "HEAD" else method
        exact = self._exact.get(lookup_method, {}).get(path)
        if exact is not None:
            return exact, {}
        for prefix, rule in self._patterns.get(lookup_method, ()):
            if path.startswith(prefix):
                found = rule.regex.match(path)
                if found:
                    return rule, found.groupdict()
        return None

    def rules(self) -> list[RouteRule]:
        return [rule for rules in self._by_method.values() for rule in rules]
