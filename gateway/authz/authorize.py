"""The authorization stage: route → canonical parameters → governing resources → decisions.

Deny by default: a request that matches no route is refused, admins included. Every governing
resource a request names must allow the right it needs; the first refusal ends the request with a
message that says which right on which named resource is missing (or, to a caller with no right on
it, MLflow's own 404), and the audit log gets the rule.

`judge` takes a typed `Call` (no aiohttp request) and returns a `Judgement` or raises `Refused`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from gateway.authn.principal import Principal
from gateway.authz.actions import alias as alias_right
from gateway.authz.actions import asking, promote
from gateway.authz.canonical import Ambiguous, Params, canonical_params
from gateway.authz.enforcer import Enforcer
from gateway.authz.graphql import GraphqlNeed, Unjudgeable, graphql_needs
from gateway.authz.names import collation_key
from gateway.authz.needs import NeedResolver, missing_kind
from gateway.authz.otlp import decompress, mlflow_trace_ids
from gateway.authz.policy import Decision
from gateway.authz.resolve import LookupFailed, NotFound, Resolver
from gateway.authz.resources import Resource, missing_message, model_resource, skill_identity
from gateway.authz.routes import Access, Kind, Need, RouteRule, RouteTable
from gateway.authz.scope import scope_refusal
from gateway.errors import BAD_REQUEST
from gateway.refusals import Refused, as_missing, bad_request, denied, unreachable
from gateway.target import Target
from gateway.workspaces import REFUSAL as WORKSPACES_REFUSAL
from gateway.workspaces import WORKSPACE_HEADER

MODEL_PREFIX = "registered_model:"
SKILL_PREFIX = "skill:"
# A skill version whose status becomes this is deleted, its aliases with it (manage).
DELETED_STATUS = "deleted"
# A trace's files live where this tag points; MLflow lets clients set it, which would let them
# point their own trace at someone else's files and read them through it.
STORAGE_TAG = "mlflow.artifactLocation"
STORAGE_TAGGED = frozenset({"SetTraceTag", "StartTrace", "StartTraceV3", "EndTrace"})


@dataclass(frozen=True)
class Call:
    """What the authorizer judges: the request as the edge parsed it, its matched rule, the
    body as read (None: the rule reads none), and who is asking."""

    rule: RouteRule
    path_params: Mapping[str, str]
    method: str
    target: Target
    headers: Mapping[str, str]
    body: bytes | None
    principal: Principal


@dataclass
class Judgement:
    rule: RouteRule
    params: Params | None
    # The body as judged, forwarded instead of the client's stream (None: stream it untouched).
    body: bytes | None
    decisions: list[tuple[Resource, Decision]] = field(default_factory=list)
    admin: bool = False
    scoped: bool = False
    # The body was decompressed to be judged: it is forwarded so, without its Content-Encoding.
    decoded: bool = False
    # Registered model names as sent -> as MLflow stores them (for after-success bookkeeping).
    model_names: dict[str, str] = field(default_factory=dict)
    # Skills (`name`, `@org/name`) as sent -> as MLflow stores them, and those the request
    # creates (judged on `create`: their creator becomes their owner).
    skill_names: dict[str, str] = field(default_factory=dict)
    new_skills: list[str] = field(default_factory=list)

    @property
    def unrestricted(self) -> bool:
        """An admin without a token scope: an admin's scoped token is judged like anyone's."""
        return self.admin and not self.scoped


@dataclass(frozen=True)
class Judged:
    """One question for the policy: ``action`` on ``resource``."""

    resource: Resource
    action: str
    # MLflow's 404 message for the object the request named. A caller who holds no right on the
    # resource gets exactly that answer, as for an object that does not exist; None when the
    # request names no object MLflow looks up (a name for a creation, a fixed policy object).
    missing: str | None = None


def any_object(body: object, test: Callable[[dict[str, Any]], bool]) -> bool:
    """Whether ``test`` holds for an object of a JSON body, at any depth."""
    if isinstance(body, dict):
        return test(body) or any(any_object(v, test) for v in body.values())
    if isinstance(body, list):
        return any(any_object(v, test) for v in body)
    return False


def _steers_storage(body: object) -> bool:
    return any_object(body, lambda o: o.get("key") == STORAGE_TAG or STORAGE_TAG in o)


def single_value(params: Params, name: str) -> str:
    """The one value of ``name``; Ambiguous when there is none or more than one."""
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
        approval_required: frozenset[str] = frozenset(),
    ) -> None:
        self.routes = routes
        self.enforcer = enforcer
        self.resolver = resolver
        self.needs = NeedResolver(resolver)
        self.protected_aliases = protected_aliases
        # Spellings a backend may take for a protected alias ("Champion", "champion ").
        self._protected = {collation_key(a): a for a in protected_aliases}
        # Promotions of registered models that only a second person completes: the request is
        # judged on the right to ask (request:…), and gateway/approvals/ holds it.
        self.approval_required = approval_required

    def route(
        self, method: str, target: Target, headers: Mapping[str, str]
    ) -> tuple[RouteRule, dict[str, str]]:
        """The rule MLflow will route the request to, or Refused (deny by default)."""
        if WORKSPACE_HEADER in headers:
            raise Refused(BAD_REQUEST, WORKSPACES_REFUSAL, "workspace header")
        found = self.routes.match(method, target.path)
        if found is None:
            raise denied(
                f"{method} {target.path} is not an MLflow operation this gateway allows.",
                "no route rule (deny by default)",
            )
        rule, path_params = found
        if rule.access == Access.REFUSED:
            raise denied(
                f"{rule.operation} is not available through the gateway.",
                f"{rule.operation} is refused for everyone",
            )
        return rule, path_params

    async def judge(self, call: Call) -> Judgement:
        rule, principal = call.rule, call.principal
        judgement = Judgement(
            rule,
            None,
            call.body,
            admin=self.enforcer.is_admin(principal),
            scoped=principal.scope is not None,
        )
        if rule.access == Access.AUTHENTICATED:
            return judgement
        try:
            params = canonical_params(
                rule, call.method, call.path_params, call.target.query, call.body or b"",
                call.headers,
            )  # fmt: skip
        except Ambiguous as exc:
            raise bad_request(f"Ambiguous request: {exc}.") from None
        judgement.params = params
        if rule.admin_only and not judgement.admin:
            raise denied(f"{rule.operation} is for admins.", f"{rule.operation} is admin-only")
        unrestricted = judgement.unrestricted
        if rule.operation in STORAGE_TAGGED and not unrestricted and _steers_storage(params.body):
            raise denied(
                f"Permission denied: the {STORAGE_TAG} tag is set by MLflow, not by clients.",
                f"attempt to set {STORAGE_TAG}",
            )
        try:
            for need in rule.needs:
                if need.kind == Kind.GRAPHQL:
                    resolved = [] if unrestricted else await self._graphql(params)
                elif need.kind == Kind.OTLP_TRACES:
                    resolved = await self._otlp_traces(call, judgement)
                else:
                    resolved = await self._resources(need, params, unrestricted, judgement)
                for judged in resolved:
                    self._decide(judgement, principal, rule, judged)
        except Refused as refused:
            refused.judgement = judgement
            raise
        return judgement

    async def _otlp_traces(self, call: Call, judgement: Judgement) -> list[Judged]:
        """Every existing trace an OTLP export would add spans to needs edit on its experiment.
        A compressed export is judged decompressed, every member, and forwarded as judged."""
        try:
            data = decompress(call.body or b"", call.headers.get("Content-Encoding"))
            trace_ids = mlflow_trace_ids(data, call.headers.get("Content-Type"))
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
            raise unreachable(str(exc)) from None

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
            raise unreachable(str(exc)) from None
        return judged

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

    def _gated(self, kind: Kind, action: str) -> str:
        """``action``, or the right to ask for it where it needs approval."""
        if kind == Kind.REGISTERED_MODEL and action in self.approval_required:
            return asking(action)
        return action

    def _action(self, need: Need, params: Params) -> str:
        if need.action == "stage":
            stages = params.values("stage")
            if len(stages) != 1 or not stages[0].strip():
                raise Ambiguous("'stage' is required")
            return self._gated(need.kind, promote(stages[0]))
        if need.action == "alias":
            aliases = params.values("alias")
            if len(aliases) != 1:
                raise Ambiguous("'alias' is required")
            protected = self._protected.get(collation_key(aliases[0]))
            return self._gated(need.kind, alias_right(protected)) if protected else "edit"
        if need.action == "status":
            statuses = params.values("status")
            if len(statuses) > 1:
                raise Ambiguous("'status' given more than once")
            return "manage" if statuses == [DELETED_STATUS] else "edit"
        return need.action

    def _values(self, need: Need, params: Params, admin: bool) -> list[str]:
        """The keys the request gives for ``need`` (checked: once where one is expected)."""
        values = params.values(need.field) if need.field else []
        if need.kind == Kind.SKILL and need.organization:
            # A skill is named by its organization (if any) and its name: `@org/name`.
            organizations = params.values(need.organization)
            if len(organizations) > 1:
                raise Ambiguous(f"{need.organization!r} given more than once")
            organization = organizations[0] if organizations else ""
            values = [skill_identity(organization, name) for name in values]
        if need.kind == Kind.RUN and need.field == "run_id":
            # MLflow falls back to the deprecated run_uuid; both naming different runs is two
            # answers to one question.
            legacy = params.values("run_uuid")
            if values and legacy and values != legacy:
                raise Ambiguous("run_id and run_uuid name different runs")
            values = values or legacy
        if need.many and not values and not need.optional and not admin:
            raise Ambiguous(f"name at least one value in {need.field!r}")
        if need.field and not need.many and len(values) > 1:
            raise Ambiguous(f"{need.field!r} given more than once")
        if need.field and not values and not (need.optional or need.many):
            if need.kind != Kind.ARTIFACT:
                raise Ambiguous(f"{need.field!r} is required")
            if not admin:
                # No path lists the whole artifact store: every experiment's files.
                raise PermissionError("listing the whole artifact store is for admins")
        return values

    async def _resources(
        self, need: Need, params: Params, admin: bool, judgement: Judgement
    ) -> list[Judged]:
        try:
            values = self._values(need, params, admin)
            if need.field and not values:
                return []
            action = self._action(need, params)
            judged: list[Judged] = []
            for value in values or [""]:
                missing = missing_message(missing_kind(need), value)
                if need.action == "register":
                    # Edit on a skill that exists; create on one the request would create.
                    resource, exists = await self.needs.registration(value)
                    judged.append(Judged(resource, "edit" if exists else "create", missing))
                    if exists:
                        judgement.skill_names[value] = resource.names[0].removeprefix(SKILL_PREFIX)
                    else:
                        judgement.new_skills.append(value)
                    continue
                try:
                    resources = await self.needs.resolve(need, value, admin)
                except NotFound:
                    if admin and need.action == "read":
                        return []  # MLflow answers an admin's read of it itself
                    # Never forwarded: a read the gateway could not resolve could be read by
                    # MLflow as something else, and a write to something not there yet must not
                    # race its creation by someone else (experiment ids are sequential).
                    what = f"{need.field or need.kind} {value!r} does not exist"
                    raise as_missing(missing or what, what) from None
                judged += [Judged(r, action, missing) for r in resources]
                if need.kind == Kind.REGISTERED_MODEL and resources:
                    judgement.model_names[value] = resources[0].names[0].removeprefix(MODEL_PREFIX)
                if need.kind == Kind.SKILL and resources:
                    stored = resources[0].names[0].removeprefix(SKILL_PREFIX)
                    judgement.skill_names[value] = stored
                    if need.action == "create":
                        judgement.new_skills.append(value)
            if need.action == "stage" and values:
                leaving = await self._leaving_production(values[0], params, judged)
                judged += [j for j in leaving if j.action != action]
            return judged
        except Ambiguous as exc:
            raise bad_request(f"Ambiguous request: {exc}.") from None
        except PermissionError as exc:
            raise denied(f"Permission denied: {exc}.", str(exc)) from None
        except LookupFailed as exc:
            raise unreachable(str(exc)) from None

    async def _leaving_production(
        self, name: str, params: Params, judged: list[Judged]
    ) -> list[Judged]:
        """Taking a version out of Production changes what is deployed: it needs the Production
        right too, not only the target stage's."""
        version = single_value(params, "version")
        try:
            current = await self.resolver.version_stage(name, version)
        except NotFound:
            raise as_missing(
                f"Model Version (name={name}, version={version}) not found",
                "names a model version that does not exist",
            ) from None
        if current == "production":
            leaving = self._gated(Kind.REGISTERED_MODEL, promote(current))
            return [replace(j, action=leaving) for j in judged]
        return []
