"""Approvals asked for, listed, approved and rejected: one service for the API, the console and the
CLI (which calls the API), checked and audited like every admin change (`ChangeAudit`).

Whoever approves or rejects must hold, now, every right the held request needed on the model
(`promote:<stage>`, `alias:<name>`), and must not be the person who asked: nobody, admins
included, completes their own request. An approval runs once: `pending → approving` is one atomic
step, and only the caller who made it goes on to check the version and call MLflow.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from gateway.admin.service import Actor, ChangeAudit, Conflict, Missing, NotPermitted
from gateway.approvals.mlflow_calls import MlflowCalls, MlflowUnreachable
from gateway.approvals.store import (
    APPROVED,
    APPROVING,
    FAILED,
    PENDING,
    REJECTED,
    TRANSITION_STAGE,
    Approval,
    ApprovalStore,
    decided,
)
from gateway.audit.writer import AuditWriter
from gateway.authn.principal import Principal
from gateway.authz.resources import model_resource
from gateway.authz.scope import scope_refusal

if TYPE_CHECKING:
    from gateway.authz.enforcer import Enforcer

OWN_REQUEST = "You asked for this change: another person who may make it must approve or reject it."
MAX_COMMENT = 1000


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def how_to_approve(approval_id: str) -> str:
    return (
        f"POST /.gateway/api/approvals/{approval_id}/approve, the console's Approvals page, "
        f"or `mlflow-gateway approvals approve {approval_id}`"
    )


def approval_state(approval: Approval) -> dict[str, object]:
    """What audit events record before and after a change of an approval."""
    return {
        "id": approval.id,
        "status": approval.effective_status,
        "request": approval.describe(),
        "requested_by": approval.requested_by,
        "decided_by": approval.decided_by or None,
    }


class ApprovalService:
    def __init__(
        self,
        store: ApprovalStore,
        enforcer: Enforcer,
        mlflow: MlflowCalls,
        audit: AuditWriter,
        ttl_seconds: int,
    ) -> None:
        self.store = store
        self.enforcer = enforcer
        self.mlflow = mlflow
        self.ttl_seconds = ttl_seconds
        self._event = ChangeAudit(audit, None)

    # -- who may see and decide -----------------------------------------------------------------

    def refusal(self, principal: Principal, approval: Approval) -> str | None:
        """Why ``principal`` may not approve or reject ``approval``; None if they may."""
        if principal.subject == approval.requested_by:
            return OWN_REQUEST
        resource = model_resource(approval.model)
        for right in approval.rights:
            if not self.enforcer.decide(principal, resource.names, right).allowed:
                return f"Deciding on this request needs '{right}' on {resource.label}."
            if principal.scope is not None and scope_refusal(principal.scope, resource, right):
                return f"This token's scope does not cover {right} on {resource.label}."
        return None

    def may_see(self, principal: Principal, approval: Approval) -> bool:
        return (
            approval.requested_by == principal.subject
            or approval.decided_by == principal.subject
            or self.enforcer.is_admin(principal)
            or self.refusal(principal, approval) is None
        )

    async def visible(self, principal: Principal, status: str | None = None) -> list[Approval]:
        """Newest first: the caller's own requests, those they may decide or decided, (admins)
        all; ``status``: only those in it now."""
        return [
            a
            for a in await self.store.newest()
            if (status is None or a.effective_status == status) and self.may_see(principal, a)
        ]

    async def get(self, principal: Principal, approval_id: str) -> Approval:
        approval = await self.store.get(approval_id)
        if approval is None or not self.may_see(principal, approval):
            raise Missing(f"no approval with id {approval_id!r}")
        return approval

    # -- asking ----------------------------------------------------------------------------------

    async def ask(self, actor: Actor, approval: Approval) -> None:
        await self.store.create(approval)
        self._event(
            actor,
            "approval_requested",
            approval=approval.id,
            resource=model_resource(approval.model).names[0],
            before=None,
            after=approval_state(approval),
        )

    # -- deciding --------------------------------------------------------------------------------

    async def _claim(self, actor: Actor, approval_id: str, target: str, comment: str) -> Approval:
        """The approval, moved out of pending by this caller (atomically), or a refusal."""
        if len(comment) > MAX_COMMENT:
            raise ValueError(f"a comment is at most {MAX_COMMENT} characters")
        approval = await self.store.get(approval_id)
        principal = actor.principal
        # As for MLflow's objects: someone with no right on the model is told nothing of it.
        if approval is None or not (
            self.may_see(principal, approval)
            or self.enforcer.holds_any_right(principal, model_resource(approval.model).names)
        ):
            raise Missing(f"no approval with id {approval_id!r}")
        if why := self.refusal(principal, approval):
            kind = "approval_approved" if target == APPROVING else "approval_rejected"
            self._event(actor, kind, "failure", approval=approval_id, reason=why)
            raise NotPermitted(why)
        now = time.time()
        outcome = await self.store.transition(
            approval_id,
            PENDING,
            target,
            decided_by=actor.principal.subject,
            decided_at=repr(now),
            comment=comment,
        )
        if outcome != "ok":
            current = await self.store.get(approval_id) or approval
            by = f" by {current.decided_by}" if current.decided_by else ""
            state = "being approved" if outcome == APPROVING else outcome
            raise Conflict(f"approval {approval_id} is {state}{by}: only a pending one is decided")
        return decided(
            approval, target, decided_by=actor.principal.subject, decided_at=now, comment=comment
        )

    async def reject(self, actor: Actor, approval_id: str, comment: str = "") -> Approval:
        approval = await self._claim(actor, approval_id, REJECTED, comment)
        self._event(
            actor,
            "approval_rejected",
            approval=approval.id,
            resource=model_resource(approval.model).names[0],
            comment=comment or None,
            before={**approval_state(approval), "status": PENDING},
            after=approval_state(approval),
        )
        return approval

    async def approve(self, actor: Actor, approval_id: str, comment: str = "") -> Approval:
        """Approve, then make the request to MLflow and record it; a version that changed since
        the request, or MLflow's refusal, fails the approval (409) and changes nothing."""
        approval = await self._claim(actor, approval_id, APPROVING, comment)
        request_id = actor.request_id or f"approval-{approval.id}"
        try:
            if why := await self._changed_since(approval, request_id):
                raise await self._failed(actor, approval, why)
            answer = await self.mlflow.perform(approval, request_id)
            if answer.status != 200:
                raise await self._failed(actor, approval, f"MLflow refused it: {answer.message}")
            refused_tags = await self.mlflow.record(approval, iso(approval.decided_at), request_id)
        except MlflowUnreachable as exc:
            raise await self._failed(actor, approval, str(exc)) from None
        error = f"MLflow refused the tags {', '.join(refused_tags)}" if refused_tags else ""
        await self.store.transition(approval.id, APPROVING, APPROVED, error=error)
        done = decided(approval, APPROVED, error=error)
        self._event(
            actor,
            "approval_approved",
            approval=approval.id,
            resource=model_resource(approval.model).names[0],
            requested_by=approval.requested_by,
            comment=comment or None,
            before={**approval_state(approval), "status": PENDING},
            after=approval_state(done),
        )
        return done

    async def _changed_since(self, approval: Approval, request_id: str) -> str | None:
        """Why the request no longer applies to what it was judged against; None if it does."""
        what = f"{approval.model} version {approval.version}"
        if approval.version:
            found = await self.mlflow.version(approval.model, approval.version, request_id)
            if found is None:
                return f"{what} no longer exists"
            stage = str(found.get("current_stage") or "None")
            if approval.operation == TRANSITION_STAGE and stage.lower() != approval.current_stage:
                return (
                    f"{what} moved from {approval.current_stage.title()} to {stage} since the "
                    "request; ask again"
                )
        if approval.operation != TRANSITION_STAGE:
            now = await self.mlflow.alias_version(approval.model, approval.alias, request_id)
            if now != approval.alias_version:
                was = approval.alias_version or "no version"
                return (
                    f"alias {approval.alias!r} of {approval.model} points at "
                    f"{now or 'no version'} now, not {was} as when asked; ask again"
                )
        return None

    async def _failed(self, actor: Actor, approval: Approval, why: str) -> Conflict:
        """Record the failure; the refusal to raise."""
        await self.store.transition(approval.id, APPROVING, FAILED, error=why)
        failed = decided(approval, FAILED, error=why)
        self._event(
            actor,
            "approval_approved",
            "failure",
            approval=approval.id,
            resource=model_resource(approval.model).names[0],
            reason=why,
            before={**approval_state(approval), "status": PENDING},
            after=approval_state(failed),
        )
        return Conflict(f"approval {approval.id} failed: {why}. Nothing was changed in MLflow.")
