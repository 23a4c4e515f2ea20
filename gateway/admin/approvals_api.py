"""Approvals over HTTP, for everyone signed in: list what you asked for and what you may decide,
approve, reject (`/.gateway/api/approvals…`). Who may decide is the approval service's rule."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from gateway.admin.endpoints import CHANGE_ERRORS, LOOKUP_ERRORS, Area, Call, Endpoint
from gateway.admin.fields import Field
from gateway.admin.openapi import SCHEMAS
from gateway.admin.service import Actor
from gateway.approvals.service import ApprovalService, iso
from gateway.approvals.store import STATUSES, Approval

APPROVAL_ID = Field("approval_id", pattern=r"[0-9a-f]{16}", max_length=16, required=True)
DECISION_BODY = (
    Field("comment", max_length=1000, description="why, for the requester and the audit trail"),
)

_STRING = {"type": "string"}
_NULLABLE = {"type": "string", "nullable": True}
# The answers' shapes, beside the others in the OpenAPI document.
SCHEMAS["Approval"] = {
    "type": "object",
    "properties": {
        "id": _STRING,
        "status": {"type": "string", "enum": list(STATUSES)},
        "operation": _STRING,
        "request": _STRING,
        "model": _STRING,
        "version": _STRING,
        "stage": _NULLABLE,
        "archive_existing_versions": {"type": "boolean"},
        "alias": _NULLABLE,
        "rights": {"type": "array", "items": _STRING},
        "requested_by": _STRING,
        "requested_at": {"type": "string", "format": "date-time"},
        "expires_at": {"type": "string", "format": "date-time"},
        "decided_by": _NULLABLE,
        "decided_at": {"type": "string", "format": "date-time", "nullable": True},
        "comment": _NULLABLE,
        "error": _NULLABLE,
        "may_decide": {"type": "boolean"},
    },
}
SCHEMAS["ApprovalList"] = {
    "type": "object",
    "properties": {
        "approvals": {"type": "array", "items": {"$ref": "#/components/schemas/Approval"}}
    },
    "required": ["approvals"],
}
SCHEMAS["ApprovalAnswer"] = {
    "type": "object",
    "properties": {"approval": {"$ref": "#/components/schemas/Approval"}},
    "required": ["approval"],
}


# Approving and rejecting: the service's call, and one endpoint shape but for the decision.
Decide = Callable[[Actor, str, str], Awaitable[Approval]]


def _decision(verb: str, summary: str, description: str = "") -> Endpoint:
    return Endpoint(
        "POST",
        f"/approvals/{{approval_id}}/{verb}",
        summary,
        access="self",
        path_fields=(APPROVAL_ID,),
        body=DECISION_BODY,
        response="ApprovalAnswer",
        errors=CHANGE_ERRORS,
        description=description,
    )


def approval_json(approval: Approval, may_decide: bool) -> dict[str, Any]:
    return {
        "id": approval.id,
        "status": approval.effective_status,
        "operation": approval.operation,
        "request": approval.describe(),
        "model": approval.model,
        "version": approval.version,
        "stage": approval.stage or None,
        "archive_existing_versions": approval.archive_existing_versions,
        "alias": approval.alias or None,
        "rights": list(approval.rights),
        "requested_by": approval.requested_by,
        "requested_at": iso(approval.requested_at),
        "expires_at": iso(approval.expires_at),
        "decided_by": approval.decided_by or None,
        "decided_at": iso(approval.decided_at) if approval.decided_at else None,
        "comment": approval.comment or None,
        "error": approval.error or None,
        "may_decide": may_decide,
    }


class ApprovalsApi(Area):
    tag = "approvals"

    def __init__(self, service: ApprovalService) -> None:
        self.service = service

    def _json(self, call: Call, approval: Approval) -> dict[str, Any]:
        may = approval.effective_status == "pending" and (
            self.service.refusal(call.principal, approval) is None
        )
        return approval_json(approval, may)

    @Endpoint(
        "GET",
        "/approvals",
        "Approvals I asked for, may decide or decided (admins: all), newest first",
        access="self",
        query=(Field("status", choices=STATUSES),),
        response="ApprovalList",
        errors=(400, 401, 403, 503),
    )
    async def list_approvals(self, call: Call) -> dict[str, Any]:
        found = await self.service.visible(call.principal, call.query.get("status"))
        return {"approvals": [self._json(call, a) for a in found]}

    @Endpoint(
        "GET",
        "/approvals/{approval_id}",
        "One approval and its outcome",
        access="self",
        path_fields=(APPROVAL_ID,),
        response="ApprovalAnswer",
        errors=LOOKUP_ERRORS,
    )
    async def get_approval(self, call: Call) -> dict[str, Any]:
        approval = await self.service.get(call.principal, call.path["approval_id"])
        return {"approval": self._json(call, approval)}

    async def _decide(self, call: Call, decide: Decide) -> dict[str, Any]:
        approval = await decide(call.actor, call.path["approval_id"], call.body.get("comment", ""))
        return {"approval": self._json(call, approval)}

    @_decision(
        "approve",
        "Approve: the gateway makes the held request to MLflow",
        "Not the requester's own; needs the rights the request needed. 409 when it is no longer "
        "pending, or the model version changed since the request.",
    )
    async def approve_approval(self, call: Call) -> dict[str, Any]:
        return await self._decide(call, self.service.approve)

    @_decision("reject", "Reject: the held request is never made")
    async def reject_approval(self, call: Call) -> dict[str, Any]:
        return await self._decide(call, self.service.reject)
