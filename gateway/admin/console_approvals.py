"""The console's Approvals page, for everyone signed in: requests waiting for the caller's decision
(approve or reject, with a comment), the caller's own requests and what became of them, and for
admins every other one."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.admin.console_frame import Frame, Pages, form_post, page, text
from gateway.admin.service import Actor
from gateway.approvals.service import ApprovalService, iso
from gateway.approvals.store import PENDING
from gateway.context import context_of


class ApprovalPages(Pages):
    def __init__(self, frame: Frame, service: ApprovalService) -> None:
        super().__init__(frame)
        self.service = service

    @page("/approvals", admin=False)
    async def approvals(self, request: web.Request) -> web.Response:
        principal = context_of(request).principal
        visible = await self.service.visible(principal)
        waiting, mine, others = [], [], []
        for approval in visible:
            if approval.requested_by == principal.subject:
                mine.append(approval)
            elif approval.effective_status == PENDING and not self.service.refusal(
                principal, approval
            ):
                waiting.append(approval)
            else:
                others.append(approval)
        return self.frame.render(
            request,
            "admin/approvals.html",
            {"waiting": waiting, "mine": mine, "others": others, "iso": iso},
        )

    @form_post("/approvals/{approval_id}/approve", admin=False)
    async def approve(self, request: web.Request, form: Any, actor: Actor) -> str:
        approval = await self.service.approve(
            actor, request.match_info["approval_id"], text(form, "comment")
        )
        note = f" ({approval.error})" if approval.error else ""
        return f"Approved: {approval.describe()} is done{note}."

    @form_post("/approvals/{approval_id}/reject", admin=False)
    async def reject(self, request: web.Request, form: Any, actor: Actor) -> str:
        approval = await self.service.reject(
            actor, request.match_info["approval_id"], text(form, "comment")
        )
        return f"Rejected: {approval.describe()} will not be made."
