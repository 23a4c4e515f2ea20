"""The pipeline's approval stage, after the judge: a request judged on a `request:` right (its
promotion needs approval) is recorded as a pending approval and answered 403 with the approval's
id, never forwarded. With GATEWAY_APPROVAL_REQUIRED empty nothing is ever judged so, and this stage
does nothing.

It also keeps the record honest: the version tags the gateway writes on approval
(`mlflow_gateway.approval.*`) cannot be set, changed or deleted by clients.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from gateway.admin.service import Actor
from gateway.approvals.mlflow_calls import TAG_PREFIX, MlflowCalls, MlflowUnreachable
from gateway.approvals.service import ApprovalService, how_to_approve, iso
from gateway.approvals.store import (
    DELETE_ALIAS,
    SET_ALIAS,
    TRANSITION_STAGE,
    Approval,
    new_id,
)
from gateway.authz.actions import REQUEST_PREFIX, asked
from gateway.authz.authorize import Judgement, any_object, single_value
from gateway.authz.canonical import Ambiguous, Params
from gateway.context import RequestContext
from gateway.errors import PERMISSION_DENIED
from gateway.refusals import Refused, as_missing, bad_request, denied, unreachable

APPROVAL_HEADER = "X-Gateway-Approval"
HELD = frozenset({TRANSITION_STAGE, SET_ALIAS, DELETE_ALIAS})
TAGGING = frozenset({"SetModelVersionTag", "DeleteModelVersionTag", "CreateModelVersion"})


class Held(Refused):
    """The request waits for approval: MLflow's 403 shape, the approval's id in a header."""

    def __init__(self, approval: Approval, message: str) -> None:
        super().__init__(
            PERMISSION_DENIED, message, f"held for approval {approval.id}", stage="approval"
        )
        self.approval = approval

    def response(self) -> web.Response:
        response = super().response()
        response.headers[APPROVAL_HEADER] = self.approval.id
        return response


def _gateway_tag(item: dict[str, Any]) -> bool:
    """An object of a body that names one of the gateway's approval tags."""
    key = item.get("key")
    return isinstance(key, str) and key.strip().lower().startswith(TAG_PREFIX)


def _string_field(params: Params, name: str) -> str:
    """A field MLflow requires as a JSON string (it refuses a number)."""
    value = (params.body or {}).get(name)
    if not isinstance(value, str):
        raise bad_request(f"{name!r} must be a string.")
    return value


def _archive_flag(params: Params) -> bool:
    body = params.body or {}
    value = body.get("archive_existing_versions", body.get("archiveExistingVersions", False))
    if not isinstance(value, bool):
        raise bad_request("'archive_existing_versions' must be true or false.")
    return value


class ApprovalGate:
    def __init__(
        self, required: frozenset[str], service: ApprovalService, mlflow: MlflowCalls
    ) -> None:
        self.required = required
        self.service = service
        self.mlflow = mlflow

    async def check(self, judgement: Judgement, ctx: RequestContext) -> None:
        """Nothing, or Refused: a forged approval tag, or the request held for approval."""
        if not self.required or judgement.params is None:
            return
        operation = judgement.rule.operation
        if operation in TAGGING and (
            any_object(judgement.params.body, _gateway_tag)
            or any(k.lower().startswith(TAG_PREFIX) for k in judgement.params.values("key"))
        ):
            raise denied(
                f"Permission denied: {TAG_PREFIX}* tags record approvals; only the gateway "
                "writes them.",
                f"attempt to write a {TAG_PREFIX}* tag",
            )
        if operation not in HELD or not any(
            d.action.startswith(REQUEST_PREFIX) for _, d in judgement.decisions
        ):
            return
        try:
            approval = await self._approval(judgement, ctx)
        except Ambiguous as exc:
            raise bad_request(f"Ambiguous request: {exc}.") from None
        except MlflowUnreachable as exc:
            raise unreachable(str(exc)) from None
        await self.service.ask(Actor(ctx.principal, ctx.client_ip, ctx.request_id), approval)
        raise Held(approval, self._message(approval))

    async def _approval(self, judgement: Judgement, ctx: RequestContext) -> Approval:
        params = judgement.params
        assert params is not None
        operation = judgement.rule.operation
        sent = single_value(params, "name")
        model = judgement.model_names.get(sent, sent)
        # What an approver must hold: every right the request needed, the promotion itself
        # where only asking was judged.
        rights = tuple(sorted({asked(d.action) or d.action for _, d in judgement.decisions}))
        now = time.time()
        fields: dict[str, Any] = {}
        if operation == TRANSITION_STAGE:
            version = _string_field(params, "version")
            found = await self.mlflow.version(model, version, ctx.request_id)
            if found is None:
                raise self._missing(model, version)
            fields = {
                "version": version,
                "stage": single_value(params, "stage"),
                "archive_existing_versions": _archive_flag(params),
                "current_stage": str(found.get("current_stage") or "none").lower(),
            }
        else:
            alias = single_value(params, "alias")
            pointed = await self.mlflow.alias_version(model, alias, ctx.request_id)
            version = pointed
            if operation == SET_ALIAS:
                version = _string_field(params, "version")
                if await self.mlflow.version(model, version, ctx.request_id) is None:
                    raise self._missing(model, version)
            fields = {"version": version, "alias": alias, "alias_version": pointed}
        return Approval(
            id=new_id(),
            operation=operation,
            model=model,
            requested_by=ctx.principal.subject,
            requested_at=now,
            expires_at=now + self.service.ttl_seconds,
            rights=rights,
            **fields,
        )

    @staticmethod
    def _missing(model: str, version: str) -> Refused:
        return as_missing(
            f"Model Version (name={model}, version={version}) not found",
            "names a model version that does not exist",
        )

    @staticmethod
    def _message(approval: Approval) -> str:
        rights = " and ".join(f"'{r}'" for r in approval.rights)
        return (
            f"Permission denied: {approval.describe()} needs a second person's approval. "
            f"It is held as approval {approval.id} until {iso(approval.expires_at)}; another "
            f"person who holds {rights} on registered_model:{approval.model} approves it: "
            f"{how_to_approve(approval.id)}."
        )
