"""A request for MLflow, start to finish, in the order it happens.

The middlewares (gateway/app.py wires them) run first, for every request:

  edge      gateway/edge.py            request id, real client IP, the target parsed once
                                       (gateway/target.py); a target MLflow could read two ways
                                       is refused after the audit middleware has seen it
  audit     gateway/audit/record.py    one event per request, written when it ends
  metrics   gateway/observability.py   route class, status, latency
  authn     gateway/authn/middleware.py  credentials → Principal, or 401 / redirect to sign-in

Then, for everything outside /.gateway/, `MlflowPipeline.handle`:

  route     authz/routes.py            (method, decoded path) → RouteRule, or 403
  body      read_judged_body           the body MLflow will parse, bounded (streamed otherwise)
  judge     authz/authorize.py         canonical parameters → resources → decisions
  approval  approvals/gate.py          a promotion that needs approval is held (403), not sent
  stamp     authz/stamping.py          the caller's identity written into CreateRun
  forward   proxy.py                   streamed to MLflow and back
  respond   authz/filters.py           searches filtered to what the caller may read
            authz/hooks.py             after success: owners of new things, rules that follow
            ui_bar.py                  MLflow's page gets the gateway's bar

Every refusal is a `Refused` (gateway/refusals.py): one answer in MLflow's error shape, its reason
in the request's audit event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.approvals.gate import ApprovalGate
from gateway.authz.authorize import Authorizer, Call, Judgement
from gateway.authz.canonical import MAX_JUDGED_BODY, Ambiguous
from gateway.authz.filters import SearchFilter
from gateway.authz.hooks import Hooks
from gateway.authz.resolve import LookupFailed
from gateway.authz.routes import Access, Kind, ParamSource, RouteRule
from gateway.authz.stamping import needs_stamping, stamp_identity
from gateway.context import RequestContext, context_of
from gateway.errors import BAD_REQUEST
from gateway.proxy import MlflowProxy
from gateway.refusals import Refused, bad_request, unreachable
from gateway.ui_bar import UI_OPERATION, with_bar


async def read_judged_body(request: web.Request, rule: RouteRule) -> bytes | None:
    """The body, read whole (bounded) where MLflow parses it; None where it is streamed."""
    reads_body = rule.params in (ParamSource.MLFLOW, ParamSource.JSON) or any(
        n.kind == Kind.OTLP_TRACES for n in rule.needs
    )
    if not reads_body or rule.access != Access.POLICY:
        return None
    if request.content_length is not None and request.content_length > MAX_JUDGED_BODY:
        raise Refused(BAD_REQUEST, "Request body too large for this operation.", "body too large")
    compressed = request.headers.get("Content-Encoding", "identity").lower() != "identity"
    if compressed and rule.params != ParamSource.NONE:
        # MLflow's handlers for these parse the bytes as JSON, compressed or not.
        raise bad_request("Compressed request bodies are not accepted for this operation")
    return await read_bounded_body(request)


async def read_bounded_body(request: web.Request) -> bytes:
    """The request's body, read whole; refused past MAX_JUDGED_BODY."""
    if request.content_length is not None and request.content_length > MAX_JUDGED_BODY:
        raise Refused(BAD_REQUEST, "Request body too large for this operation.", "body too large")
    body = await request.content.read(MAX_JUDGED_BODY + 1)
    if len(body) > MAX_JUDGED_BODY:
        raise Refused(BAD_REQUEST, "Request body too large.", "body too large")
    return body


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class MlflowPipeline:
    """The stages after the middlewares, each the piece that does it (app.py makes them)."""

    authorizer: Authorizer
    proxy: MlflowProxy
    search: SearchFilter
    hooks: Hooks
    # Set when GATEWAY_APPROVAL_REQUIRED names anything: requests that wait for a second person.
    approvals: ApprovalGate | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ctx = context_of(request)
        try:
            judgement = await self._judge(request, ctx)
            ctx.judgement = judgement
            if self.approvals is not None:
                await self.approvals.check(judgement, ctx)
            body, rewritten = self._stamp(judgement, ctx)
            return await self._respond(request, ctx, judgement, body, rewritten)
        except Refused as refused:
            ctx.authz_refusal = refused.reason
            if refused.judgement is not None:
                ctx.judgement = refused.judgement
            return refused.response()

    async def _judge(self, request: web.Request, ctx: RequestContext) -> Judgement:
        target = ctx.target
        assert target is not None  # the edge refused the request otherwise
        rule, path_params = self.authorizer.route(request.method, target, request.headers)
        body = await read_judged_body(request, rule)
        call = Call(rule, path_params, request.method, target, request.headers, body, ctx.principal)
        return await self.authorizer.judge(call)

    def _stamp(self, judgement: Judgement, ctx: RequestContext) -> tuple[bytes | None, bool]:
        """The body to forward, and whether the gateway wrote it anew."""
        params = judgement.params
        if params is None or params.body is None or not needs_stamping(judgement.rule.operation):
            return judgement.body, False
        stamped = stamp_identity(judgement.rule.operation, params.body, ctx.principal)
        return (stamped, True) if stamped is not None else (judgement.body, False)

    async def _respond(
        self,
        request: web.Request,
        ctx: RequestContext,
        judgement: Judgement,
        body: bytes | None,
        rewritten: bool,
    ) -> web.StreamResponse:
        rule, params = judgement.rule, judgement.params
        if rule.operation == UI_OPERATION and request.method == "GET":
            response, raw = await self.proxy.exchange(request, None)
            return with_bar(response, raw)
        if rule.filter and params is not None and not judgement.unrestricted:
            try:
                status, payload = await self.search.search(rule.filter, params, ctx.principal)
            except Ambiguous as exc:
                raise bad_request(f"Ambiguous request: {exc}.") from None
            except LookupFailed as exc:
                raise unreachable(str(exc)) from None
            return web.json_response(payload, status=status)
        if rule.hook and params is not None:
            # The answer is read for the hook; a body the rule does not judge (a skill
            # version's upload) streams through unread, of any size.
            response, raw = await self.proxy.exchange(request, body, rewritten)
            if response.status == 200:
                ctx.policy_changes = await self.hooks.after_success(
                    rule.hook,
                    ctx.principal,
                    params,
                    _json_object(raw),
                    judgement.model_names,
                    judgement.skill_names,
                    tuple(judgement.new_skills),
                )
            return response
        return await self.proxy.forward(request, body, rewritten, judgement.decoded)
