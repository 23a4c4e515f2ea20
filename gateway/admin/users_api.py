"""The admin API's users and groups: list, create, change, and group membership."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.admin import fields as f
from gateway.admin.endpoints import CHANGE_ERRORS, LOOKUP_ERRORS, Area, Call, Endpoint
from gateway.admin.fields import Field
from gateway.admin.service import Missing
from gateway.admin.shapes import group_json, token_json, user_json
from gateway.authn.passwords import MIN_PASSWORD_LENGTH

if TYPE_CHECKING:
    from gateway.admin.service import AdminService
    from gateway.authz.enforcer import Enforcer

USER = Field("username", pattern=f.NAME, required=True, description="A user name.")
GROUP = Field("group", pattern=f.NAME, required=True, description="A group name.")
NAMES = Field("name", pattern=f.NAME, max_length=200)
NEW_USER = (
    Field("username", pattern=f.NAME, required=True),
    Field(
        "password",
        max_length=1024,
        min_length=MIN_PASSWORD_LENGTH,
        description="at least 12 characters; leave out for SSO-only",
    ),
    Field("groups", "array", item=NAMES, max_items=50),
    Field("admin", "boolean"),
    Field(
        "email",
        pattern=r"[^\x00-\x20\x7f@]{1,64}@[^\x00-\x20\x7f@]{1,255}",
        max_length=320,
    ),
)
# What both membership calls take and answer.
MEMBERSHIP: dict[str, Any] = {
    "path_fields": (GROUP, USER),
    "response": "GroupAnswer",
    "errors": LOOKUP_ERRORS,
}
USER_CHANGE = (
    Field("disabled", "boolean"),
    Field("admin", "boolean"),
    Field("password", max_length=1024, min_length=MIN_PASSWORD_LENGTH),
)


MEMBER = "/groups/{group}/members/{username}"


class UsersApi(Area):
    tag = "users"

    def __init__(self, service: AdminService[Enforcer]) -> None:
        self.service = service

    @Endpoint("GET", "/users", "List users", response="UserList")
    async def list_users(self, call: Call) -> dict[str, Any]:
        return {"users": [user_json(u) for u in await self.service.users.list()]}

    @Endpoint(
        "POST",
        "/users",
        "Create a user",
        body=NEW_USER,
        response="UserAnswer",
        status=201,
        errors=CHANGE_ERRORS,
    )
    async def create_user(self, call: Call) -> dict[str, Any]:
        body = call.body
        user = await self.service.create_user(
            call.actor,
            body["username"],
            body.get("password"),
            groups=tuple(body.get("groups", ())),
            admin=body.get("admin", False),
            email=body.get("email"),
        )
        return {"user": user_json(user)}

    @Endpoint(
        "GET",
        "/users/{username}",
        "A user and their tokens",
        path_fields=(USER,),
        response="UserDetail",
        errors=LOOKUP_ERRORS,
    )
    async def get_user(self, call: Call) -> dict[str, Any]:
        user = await self.service.users.get(call.path["username"])
        if user is None:
            raise Missing(f"no user named {call.path['username']!r}")
        tokens = await self.service.tokens.list(user.username)
        return {"user": user_json(user), "tokens": [token_json(t) for t in tokens]}

    @Endpoint(
        "PATCH",
        "/users/{username}",
        "Disable or enable, make admin, reset the password",
        path_fields=(USER,),
        body=USER_CHANGE,
        response="UserAnswer",
        errors=CHANGE_ERRORS,
        description="Takes effect on every gateway at the next request.",
    )
    async def update_user(self, call: Call) -> dict[str, Any]:
        body = call.body
        user = await self.service.update_user(
            call.actor,
            call.path["username"],
            disabled=body.get("disabled"),
            admin=body.get("admin"),
            password=body.get("password"),
        )
        return {"user": user_json(user)}

    @Endpoint("GET", "/groups", "Groups and their members", response="GroupList")
    async def list_groups(self, call: Call) -> dict[str, Any]:
        return {"groups": [group_json(g) for g in await self.service.users.groups()]}

    @Endpoint("PUT", MEMBER, "Add a member (creates the group)", **MEMBERSHIP)
    async def add_group_member(self, call: Call) -> dict[str, Any]:
        group = await self.service.add_member(call.actor, call.path["group"], call.path["username"])
        return {"group": group_json(group)}

    @Endpoint("DELETE", MEMBER, "Remove a member", **MEMBERSHIP)
    async def remove_group_member(self, call: Call) -> dict[str, Any]:
        group = await self.service.remove_member(
            call.actor, call.path["group"], call.path["username"]
        )
        return {"group": group_json(group)}
