"""The authorization stage: route → canonical parameters → governing resources → decisions.

Deny by default: a request that matches no route is refused, admins included. Every governing
resource a request names must allow the right it needs; the first refusal ends the request with a
message that says which right on which named resource is missing, and the audit log gets the rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from aiohttp import web

from gateway.authn.principal import Principal
from gateway.authz.actions import alias as alias_right
from gateway.authz.actions import promote
from gateway.authz.canonical import MAX_JUDGED_BODY, Ambiguous, Params, canonical_params
from gateway.authz.enforcer import Enforcer
from gateway.authz.graphql import GraphqlNeed, Unjudgeable, graphql_needs
from gateway.authz.names import collation_key, new_name_refusal
from gateway.authz.otlp import decompress, mlflow_trace_ids
from gateway.authz.policy import Decision
from gateway.authz.resolve import (
    LookupFailed,
    NotFound,
    Resolver,
    Resource,
    missing_answer,
    missing_message,
    model_resource,
)
from gateway.authz.routes import Need, RouteRule, RouteTable
from gateway.authz.scope import scope_refusal
from gateway.context import context_of
from gateway.errors import (
    BAD_GATEWAY,
    BAD_REQUEST,
    INVALID_PARAMETER,
    PERMISSION_DENIED,
    mlflow_error,
)
from gateway.workspaces import REFUSAL as WORKSPACES_REFUSAL
from gateway.workspaces import WORKSPACE_HEADER


class Refused(Exception):
    """The request stops here; ``response`` is what the caller gets, ``reason`` what audit keeps."""

    def __init__(self, response: web.Response, reason: str) -> None:
        super().__init__(reason)
        self.response = response
        self.reason = reason
        # What was judged up to the refusal (route, decisions), for the audit log.
        self.judgement: Judgement | None = None


@dataclass
class Judgement:
    rule: RouteRule
    params: Params | None
    # The body as judged, forwarded instead of the client's stream (None: stream it untouched).
    body: bytes | None
    decisions: list[tuple[Resource, Decision]] = field(default_factory=list)
    admin: bool = False
    # The body was decompressed to be judged: it is forwarded so, without its Content-Encoding.
    decoded: bool = False
    # Registered model names as sent -> as MLflow stores them (for after-success bookkeeping).
    model_names: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Judged:
    """One question for the policy: ``action`` on ``resource``."""

    resource: Resource
    action: str
    # MLflow's 404 message for the object the request named. A caller who holds no right on the
    # resource gets exactly that answer, as for an object that does not exist; None when the
    # request names no object MLflow looks up (a name for a creation, a fixed policy object).
    missing: str | None = None


def denied(message: str, reason: str) -> Refused:
    return Refused(mlflow_error(PERMISSION_DENIED, message), reason)


def bad_request(message: str) -> Refused:
    return Refused(mlflow_error(BAD_REQUEST, message), f"ambiguous request: {message}")


def as_missing(message: str, reason: str) -> Refused:
    """MLflow's own 404, answered by the gateway: nothing about the object is forwarded."""
    return Refused(web.json_response(missing_answer(message), status=404), reason)


def lookup_failed(exc: LookupFailed) -> Refused:
    return Refused(
        mlflow_error(BAD_GATEWAY, "The gateway could not check this request with MLflow."),
        f"lookup failed: {exc}",
    )


# A trace's files live where this tag points; MLflow lets clients set it, which would let them
# point their own trace at someone else's files and read them through it.
STORAGE_TAG = "mlflow.artifactLocation"
STORAGE_TAGGED = frozenset({"SetTraceTag", "StartTrace", "StartTraceV3", "EndTrace"})


def _steers_storage(body: object) -> bool:
    if isinstance(body, dict):
        if body.get("key") == STORAGE_TAG or STORAGE_TAG in body:
            return True
        return any(_steers_storage(v) for v in body.values())
    if isinstance(body, list):
        return any(_steers_storage(v) for v in body)
    return False


MODEL_PREFIX = "registered_model:"


def _check_new_name(kind: str, name: str) -> None:
    if why := new_name_refusal(kind, name):
        raise Refused(mlflow_error(INVALID_PARAMETER, f"Invalid name {name!r}: {why}."), why)


def _one(params: Params, name: str) -> str:
    values = params.values(name)
    if len(values) != 1:
        raise Ambiguous(f"{name!r} is required once")
    return values[0]


class Authorizer:
    def __init__(
        self,
        routes: RouteTable,
        enforcer: Enforcer,
        resolver: Resolver,
        protected_aliases: frozenset[str],
    ) -> None:
        self.routes = routes
        self.enforcer = enforcer
        self.resolver = resolver
        self.protected_aliases = protected_aliases
        # Spellings a backend may take for a protected alias ("Champion", "champion ").
        self._protected = {collation_key(a): a for a in protected_aliases}

    async def judge(self, request: web.Request, principal: Principal) -> Judgement:
        target = context_of(request).target
        assert target is not None  # the edge refused the request otherwise
        if WORKSPACE_HEADER in request.headers:
            raise Refused(mlflow_error(BAD_REQUEST, WORKSPACES_REFUSAL), "workspace header")
        path = target.path
        found = self.routes.match(request.method, path)
        if found is None:
            raise denied(
                f"{request.method} {path} is not an MLflow operation this gateway allows.",
                "no route rule (deny by default)",
            )
        rule, path_params = found
        if rule.access == "refused":
            raise denied(
                f"{rule.operation} is not available through the gateway.",
                f"{rule.operation} is refused for everyone",
            )
        body = await self._read_body(request, rule)
        try:
            params = (
                canonical_params(
                    rule,
                    request.method,
                    path_params,
                    target.query,
                    body or b"",
                    request.headers,
                )
                if rule.access == "policy"
                else None
            )
        except Ambiguous as exc:
            raise bad_request(f"Ambiguous request: {exc}.") from None
        judgement = Judgement(rule, params, body, admin=self.enforcer.is_admin(principal))
        if rule.access == "authenticated" or params is None:
            return judgement
        if rule.admin_only and not judgement.admin:
            raise denied(f"{rule.operation} is for admins.", f"{rule.operation} is admin-only")
        # An admin's scoped token is judged like anyone's: its scope must cover each resource.
        unrestricted = judgement.admin and principal.scope is None
        if rule.operation in STORAGE_TAGGED and not unrestricted and _steers_storage(params.body):
            raise denied(
                f"Permission denied: the {STORAGE_TAG} tag is set by MLflow, not by clients.",
                f"attempt to set {STORAGE_TAG}",
            )
        try:
            for need in rule.needs:
                if need.kind == "graphql":
                    resolved = [] if unrestricted else await self._graphql(params)
                elif need.kind == "otlp_traces":
                    resolved = await self._otlp_traces(request, judgement)
                else:
                    resolved = await self._resources(need, params, unrestricted, judgement)
                for judged in resolved:
                    self._decide(judgement, principal, rule, judged)
        except Refused as refused:
            refused.judgement = judgement
            raise
        return judgement

    async def _otlp_traces(self, request: web.Request, judgement: Judgement) -> list[Judged]:
        """Every existing trace an OTLP export would add spans to needs edit on its experiment.
        A compressed export is judged decompressed, every member, and forwarded as judged."""
        try:
            data = decompress(judgement.body or b"", request.headers.get("Content-Encoding"))
            trace_ids = mlflow_trace_ids(data, request.headers.get("Content-Type"))
            if data is not judgement.body:
                judgement.body, judgement.decoded = data, True
            judged: list[Judged] = []
            for trace_id in sorted(trace_ids):
                try:
                    resource = await self.resolver.trace(trace_id)
                except NotFound:
                    continue  # a new trace, created in the experiment judged already
                judged.append(Judged(resource, "edit", missing_message("trace", trace_id)))
            return judged
        except Ambiguous as exc:
            raise bad_request(f"Ambiguous request: {exc}.") from None
        except LookupFailed as exc:
            raise lookup_failed(exc) from None

    async def _graphql(self, params: Params) -> list[Judged]:
        judged: list[Judged] = []
        need: GraphqlNeed | None = None
        try:
            for need in graphql_needs(params.body or {}):
                missing = missing_message(need.kind, need.value)
                if need.kind == "experiment":
                    resource = await self.resolver.experiment(need.value)
                    judged.append(Judged(resource, "read", missing))
                elif need.kind == "run":
                    judged.append(Judged(await self.resolver.run(need.value), "read", missing))
                elif need.kind == "registered_model":
                    resource = await self.resolver.registered_model(need.value)
                    judged.append(Judged(resource, "read", missing))
                else:
                    judged.extend(
                        Judged(model_resource(name), "read")
                        for name in await self.resolver.models_of_run(need.value)
                    )
        except Ambiguous as exc:
            raise bad_request(f"Ambiguous request: {exc}.") from None
        except Unjudgeable as exc:
            raise denied(
                f"Permission denied: the gateway cannot judge {exc}; only admins may use it.",
                f"unjudgeable GraphQL: {exc}",
            ) from None
        except NotFound:
            assert need is not None
            message = missing_message(need.kind, need.value) or "Not found"
            raise as_missing(message, f"GraphQL names a {need.kind} that does not exist") from None
        except LookupFailed as exc:
            raise lookup_failed(exc) from None
        return judged

    async def _read_body(self, request: web.Request, rule: RouteRule) -> bytes | None:
        reads_body = rule.params in ("mlflow", "json") or any(
            n.kind == "otlp_traces" for n in rule.needs
        )
        if not reads_body or rule.access != "policy":
            return None
        if request.content_length is not None and request.content_length > MAX_JUDGED_BODY:
            raise Refused(
                mlflow_error(BAD_REQUEST, "Request body too large for this operation."),
                "body too large",
            )
        compressed = request.headers.get("Content-Encoding", "identity").lower() != "identity"
        if compressed and rule.params != "none":
            # MLflow's handlers for these parse the bytes as JSON, compressed or not.
            raise bad_request("Compressed request bodies are not accepted for this operation")
        body = await request.content.read(MAX_JUDGED_BODY + 1)
        if len(body) > MAX_JUDGED_BODY:
            raise Refused(mlflow_error(BAD_REQUEST, "Request body too large."), "body too large")
        return body

    def _decide(
        self, judgement: Judgement, principal: Principal, rule: RouteRule, judged: Judged
    ) -> None:
        resource, action = judged.resource, judged.action
        decision = self.enforcer.decide(principal, resource.names, action)
        judgement.decisions.append((resource, decision))
        if not decision.allowed:
            if judged.missing is not None and not self.enforcer.holds_any_right(
                principal, resource.names
            ):
                # Nothing of it is the caller's business: not even that it exists.
                raise as_missing(judged.missing, decision.explain() + "; answered as missing")
            raise denied(
                f"Permission denied: {rule.operation} needs '{action}' on {resource.label}.",
                decision.explain(),
            )
        if principal.scope is not None and (
            why := scope_refusal(principal.scope, resource, action)
        ):
            raise denied(
                f"Permission denied: this token's scope does not cover {action} on "
                f"{resource.label}.",
                f"token {principal.token_id} scope: {why}",
            )

    def _action(self, need: Need, params: Params) -> str:
        if need.action == "stage":
            stages = params.values("stage")
            if len(stages) != 1 or not stages[0].strip():
                raise Ambiguous("'stage' is required")
            return promote(stages[0])
        if need.action == "alias":
            aliases = params.values("alias")
            if len(aliases) != 1:
                raise Ambiguous("'alias' is required")
            protected = self._protected.get(collation_key(aliases[0]))
            return alias_right(protected) if protected else "edit"
        return need.action

    async def _resources(
        self, need: Need, params: Params, admin: bool, judgement: Judgement
    ) -> list[Judged]:
        try:
            values = params.values(need.field) if need.field else []
            if need.kind == "run" and need.field == "run_id":
                # MLflow falls back to the deprecated run_uuid; both naming different runs is
                # two answers to one question.
                legacy = params.values("run_uuid")
                if values and legacy and values != legacy:
                    raise Ambiguous("run_id and run_uuid name different runs")
                values = values or legacy
            if need.many and not values and not need.optional and not admin:
                raise Ambiguous(f"name at least one value in {need.field!r}")
            if need.field and not need.many and len(values) > 1:
                raise Ambiguous(f"{need.field!r} given more than once")
            if need.field and not values:
                if need.optional or need.many:
                    return []
                if need.kind == "artifact":
                    # No path lists the whole artifact store: every experiment's files.
                    if admin:
                        return []
                    raise PermissionError("listing the whole artifact store is for admins")
                raise Ambiguous(f"{need.field!r} is required")
            action = self._action(need, params)
            judged: list[Judged] = []
            for value in values or [""]:
                missing = missing_message(need.kind, value)
                try:
                    resources = await self._resolve(need, value, admin)
                except NotFound:
                    if admin and need.action == "read":
                        return []  # MLflow answers an admin's read of it itself
                    # Never forwarded: a read the gateway could not resolve could be read by
                    # MLflow as something else, and a write to something not there yet must not
                    # race its creation by someone else (experiment ids are sequential).
                    raise as_missing(
                        missing or f"{need.field or need.kind} {value!r} does not exist",
                        f"{need.field or need.kind} {value!r} does not exist",
                    ) from None
                judged += [Judged(r, action, missing) for r in resources]
                if need.kind == "registered_model" and resources:
                    judgement.model_names[value] = resources[0].names[0].removeprefix(MODEL_PREFIX)
            if need.action == "stage" and values:
                version = _one(params, "version")
                try:
                    current = await self.resolver.version_stage(values[0], version)
                except NotFound:
                    raise as_missing(
                        f"Model Version (name={values[0]}, version={version}) not found",
                        "names a model version that does not exist",
                    ) from None
                # Taking a version out of Production changes what is deployed: it needs the
                # Production right too, not only the target stage's.
                if current == "production" and promote(current) != action:
                    judged += [replace(j, action=promote(current)) for j in list(judged)]
            return judged
        except Ambiguous as exc:
            raise bad_request(f"Ambiguous request: {exc}.") from None
        except PermissionError as exc:
            raise denied(f"Permission denied: {exc}.", str(exc)) from None
        except LookupFailed as exc:
            raise lookup_failed(exc) from None

    async def _readable_through_models(
        self, experiment: Resource, logged_model: str, need: Need
    ) -> Resource:
        """A logged model (and its files) may also be read by readers of the registered models
        made from it: a model-only reader can load `models:/<name>@champion` without reading the
        training experiment. Only for reading: writing still needs the experiment."""
        if need.action != "read":
            return experiment
        models = await self.resolver.models_using(logged_model)
        names = experiment.names + tuple(f"registered_model:{m}" for m in models)
        return Resource(names, experiment.label)

    async def _resolve(self, need: Need, value: str, admin: bool) -> list[Resource]:
        r = self.resolver
        kind = need.kind
        if kind == "experiment":
            return [await r.experiment(value)]
        if kind == "experiment_name":
            _check_new_name("experiment", value)
            return [Resource((f"experiment_name:{value}",), f"experiment name {value!r}")]
        if kind == "experiment_by_name":
            return [await r.experiment_by_name(value)]
        if kind == "run":
            return [await r.run(value)]
        if kind == "trace":
            return [await r.trace(value)]
        if kind == "logged_model":
            return [await self._readable_through_models(await r.logged_model(value), value, need)]
        if kind == "dataset":
            return await r.dataset(value)
        if kind == "registered_model":
            if need.action == "create":
                # A new name is judged as sent; where the backend would match it to an
                # existing model, MLflow refuses the creation itself.
                _check_new_name("registered_model", value)
                return [model_resource(value)]
            return [await r.registered_model(value)]
        if kind == "existing_trace":
            try:
                return [await r.trace(value)]
            except NotFound:
                return []  # a new trace: the experiment it goes to was judged already

        if kind == "artifact":
            if admin and not value.strip("/"):
                return []
            experiment, logged_model = await r.artifact(value)
            if logged_model is None:
                return [experiment]
            return [await self._readable_through_models(experiment, logged_model, need)]
        if kind == "model_source":
            return [] if admin else await r.model_source(value)
        if kind == "prompt_uri":
            name = value.removeprefix("prompts:/").split("/", 1)[0].split("@", 1)[0]
            return [await r.registered_model(name)]
        if kind == "artifact_location":
            if admin:
                return []
            raise PermissionError("only admins choose an experiment's artifact location")
        if kind.startswith("lookup:"):
            return [await r.lookup(kind.removeprefix("lookup:"), value)]
        if kind.startswith("object:"):
            name = kind.removeprefix("object:")
            return [Resource((name,), name)]
        if kind.startswith("named:"):
            name = kind.removeprefix("named:") + value
            return [Resource((name,), name)]
        raise LookupFailed(f"no resolver for {kind}")
