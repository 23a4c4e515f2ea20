"""The console's users, groups and everyone's tokens: lists, and the forms that change them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.admin.console_frame import Frame, Pages, form_post, page, text
from gateway.admin.fields import BadInput
from gateway.admin.service import Actor
from gateway.admin.shapes import token_json
from gateway.authz.explain import principal_of, rights_of

if TYPE_CHECKING:
    from gateway.admin.service import AdminService
    from gateway.authz.enforcer import Enforcer

# A user page's buttons: what each changes, and what the console says when it has.
USER_CHANGES: dict[str, tuple[dict[str, Any], str]] = {
    "disable": ({"disabled": True}, "{} is disabled: sessions, passwords and tokens stop working."),
    "enable": ({"disabled": False}, "{} is enabled again."),
    "make-admin": ({"admin": True}, "{} is now an admin."),
    "remove-admin": ({"admin": False}, "{} is no longer an admin."),
    "password": ({}, "The password of {} was reset."),
}


class UserPages(Pages):
    def __init__(self, frame: Frame, service: AdminService[Enforcer]) -> None:
        super().__init__(frame)
        self.service = service

    # -- users -----------------------------------------------------------------------------------

    @page("/users")
    async def users(self, request: web.Request) -> web.Response:
        users = await self.service.users.list()
        return self.frame.render(request, "admin/users.html", {"users": users})

    @form_post("/users")
    async def user_create(self, request: web.Request, form: Any, actor: Actor) -> str:
        username = text(form, "username")
        groups = tuple(g.strip() for g in str(form.get("groups", "")).split(",") if g.strip())
        password = str(form.get("password", "")) or None
        await self.service.create_user(
            actor, username, password, groups=groups, admin=bool(form.get("admin"))
        )
        return f"User {username} created."

    @page("/users/{username}")
    async def user_page(self, request: web.Request) -> web.Response:
        user = await self.service.users.get(request.match_info["username"])
        if user is None:
            raise web.HTTPNotFound(text="No such user.")
        tokens = await self.service.tokens.list(user.username)
        admin, rights = rights_of(self.service.policy.engine, principal_of(user.username, user))
        return self.frame.render(
            request,
            "admin/user.html",
            {
                "user": user,
                "tokens": [token_json(t) for t in reversed(tokens)],
                "rights": rights,
                "policy_admin": admin,
                "groups": await self.service.users.groups(),
            },
        )

    @form_post("/users/{username}")
    async def user_update(self, request: web.Request, form: Any, actor: Actor) -> str:
        username = request.match_info["username"]
        change = str(form.get("change", ""))
        if change not in USER_CHANGES:
            raise BadInput(f"unknown change {change!r}")
        options, done = USER_CHANGES[change]
        if change == "password":
            options = {"password": str(form.get("password", ""))}
            if not options["password"]:
                raise BadInput("enter the new password")
        await self.service.update_user(actor, username, **options)
        return done.format(username)

    # -- groups ----------------------------------------------------------------------------------

    @page("/groups")
    async def groups(self, request: web.Request) -> web.Response:
        return self.frame.render(
            request,
            "admin/groups.html",
            {"groups": await self.service.users.groups(), "users": await self.service.users.list()},
        )

    @form_post("/groups/members")
    async def member_add(self, request: web.Request, form: Any, actor: Actor) -> str:
        group, username = text(form, "group"), text(form, "username")
        await self.service.add_member(actor, group, username)
        return f"{username} added to {group}."

    @form_post("/groups/members/remove")
    async def member_remove(self, request: web.Request, form: Any, actor: Actor) -> str:
        group, username = text(form, "group"), text(form, "username")
        await self.service.remove_member(actor, group, username)
        return f"{username} removed from {group}."

    # -- everyone's tokens -----------------------------------------------------------------------

    @page("/tokens")
    async def tokens(self, request: web.Request) -> web.Response:
        owner = request.query.get("owner", "").strip() or None
        state = request.query.get("state", "")
        tokens = [token_json(t) for t in reversed(await self.service.tokens.list(owner))]
        if state:
            tokens = [t for t in tokens if t["state"] == state]
        return self.frame.render(
            request,
            "admin/tokens.html",
            {"tokens": tokens, "owner": owner or "", "state": state},
        )

    @form_post("/tokens/{token_id}/revoke")
    async def token_revoke(self, request: web.Request, form: Any, actor: Actor) -> str:
        record = await self.service.revoke_token(actor, request.match_info["token_id"])
        return f"Token “{record.name}” of {record.owner} revoked."
