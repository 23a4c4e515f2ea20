"""The admin console under /.gateway/admin/: server-rendered pages over the same service as the API.

Pages read with GET; every change is a form POST that needs a browser session and that session's
CSRF token, then redirects back (post/redirect/get) with a one-time notice. Admin pages refuse
non-admins with a page that says so; "My account" is for everyone signed in. The pages of each
area are in their own module (`console_account`, `console_policy`, `console_users`,
`console_audit`, `console_approvals`), what they share in `console_frame`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.admin.api import AdminApi
from gateway.admin.console_account import AccountPages
from gateway.admin.console_approvals import ApprovalPages
from gateway.admin.console_audit import AuditPages
from gateway.admin.console_frame import PREFIX, Frame
from gateway.admin.console_policy import PolicyPages
from gateway.admin.console_users import UserPages
from gateway.approvals.service import ApprovalService


class Console:
    def __init__(
        self, api: AdminApi, redis: Any, tracking_uri: str, approvals: ApprovalService
    ) -> None:
        self.frame = Frame(api.service.policy)
        self.areas = (
            AccountPages(self.frame, api.service, tracking_uri),
            PolicyPages(self.frame, api),
            UserPages(self.frame, api.service),
            AuditPages(self.frame, redis),
            ApprovalPages(self.frame, approvals),
        )

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(PREFIX, self.home),
            web.get(PREFIX + "/", self.home),
            *(route for area in self.areas for route in area.routes()),
        ]

    async def home(self, request: web.Request) -> web.StreamResponse:
        target = "/account" if self.frame.admin_refusal(request) else "/policies"
        raise web.HTTPSeeOther(PREFIX + target)
