"""The admin JSON API under /.gateway/api/: users, groups, policy, tokens, and the caller's own
profile. Every operation is described once, as an `Endpoint`, for both routing and OpenAPI."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.admin import fields as f
from gateway.admin.endpoints import Call, Endpoint, Refused
from gateway.admin.fields import Field
from gateway.admin.service import AdminService, Missing
from gateway.admin.shapes import (
    decision_json,
    group_json,
    grouping_json,
    holder_json,
    right_json,
    rule_json,
    token_json,
    user_json,
)
from gateway.authn.passwords import MIN_PASSWORD_LENGTH
from gateway.authz.canonical import Ambiguous
from gateway.authz.explain import explain, principal_of, rights_of, who_can
from gateway.authz.policy import Grouping, Rule
from gateway.authz.resolve import LookupFailed, NotFound, Resolver
from gateway.context import context_of
from gateway.store.tokens import TokenScope, parse_duration

USER = Field("username", pattern=f.NAME, required=True, description="A user name.")
GROUP = Field("group", pattern=f.NAME, required=True, description="A group name.")
TOKEN = Field("token_id", pattern=f.TOKEN_ID, max_length=12, required=True)
NAMES = Field("name", pattern=f.NAME, max_length=200)
RULE_FIELDS = (
    Field(
        "subject",
        pattern=f.SUBJECT,
        max_length=255,
        required=True,
        description="user:NAME, group:NAME or role:NAME",
    ),
    Field(
        "object",
        pattern=f.OBJECT,
        max_length=512,
        required=True,
        description="e.g. experiment:12, experiment_name:/team-a/*, registered_model:fraud-*",
    ),
    Field(
        "action",
        pattern=f.ACTION,
        max_length=255,
        required=True,
        description="read, edit, manage, create, use, promote:STAGE, alias:NAME or *",
    ),
    Field("effect", choices=("allow", "deny"), description="allow (default) or deny"),
)
GROUPING_FIELDS = (
    Field("member", pattern=f.SUBJECT, max_length=255, required=True),
    Field("group", pattern=f.SUBJECT, max_length=255, required=True),
)
SCOPE_LIST = Field("item", pattern=f.SCOPE_ITEM, max_length=500)
TOKEN_FIELDS = (
    Field("name", pattern=f.NAME, required=True, description="A name to recognise it by."),
    Field(
        "expires_in",
        pattern=f.DURATION,
        max_length=8,
        description="30d, 12h, 90m; by default 30d, or when the token making the call expires",
    ),
    Field("read_only", "boolean"),
    Field("experiments", "array", item=SCOPE_LIST, description="experiment ids or patterns"),
    Field("registered_models", "array", item=SCOPE_LIST, description="model names or patterns"),
)
POLICY_FILTERS = (
    Field("subject", max_length=255, description="lines whose subject contains this"),
    Field("object", max_length=512, description="rules whose object contains this"),
    Field("action", max_length=255, description="rules whose action contains this"),
    Field("effect", choices=("allow", "deny")),
    Field("limit", "integer", minimum=1, maximum=10_000, description="default 1000"),
    Field("offset", "integer", minimum=0, maximum=10**9),
)
QUESTION = (
    Field("object", pattern=f.OBJECT, max_length=512, required=True),
    Field("action", pattern=f.ACTION, max_length=255, required=True),
)


def _contains(value: str, wanted: str | None) -> bool:
    return not wanted or wanted in value


class AdminApi:
    def __init__(self, service: AdminService, resolver: Resolver) -> None:
        self.service = service
        self.resolver = resolver

    @property
    def index(self) -> Any:
        return self.service.enforcer.index

    # -- the caller ------------------------------------------------------------------------------

    async def me(self, call: Call) -> dict[str, Any]:
        principal = call.principal
        session = context_of(call.request).session
        admin, rights = rights_of(self.index, principal)
        return {
            "username": principal.subject,
            "method": principal.method,
            "groups": sorted(principal.groups),
            "admin": admin,
            "service_account": principal.service,
            "token": (
                {
                    "id": principal.token_id,
                    "scope": principal.scope.words() if principal.scope else [],
                }
                if principal.token_id
                else None
            ),
            "rights": [right_json(r) for r in rights],
            # For the bar on MLflow's pages, whose sign-out form needs it; only this site's
            # scripts can read this answer.
            "csrf_token": session.csrf_token if session else None,
        }

    def _own(self, call: Call) -> str:
        if call.principal.service:
            raise Refused(("PERMISSION_DENIED", 403), "Service accounts have no personal tokens.")
        return call.principal.subject

    async def list_my_tokens(self, call: Call) -> dict[str, Any]:
        self._own(call)
        tokens = await self.service.token_service.own(call.principal)
        return {"tokens": [token_json(t) for t in reversed(tokens)]}

    async def create_my_token(self, call: Call) -> dict[str, Any]:
        return await self._create_token(call, self._own(call))

    async def _create_token(self, call: Call, owner: str) -> dict[str, Any]:
        body = call.body
        scope = TokenScope.parse(
            (["read-only"] if body.get("read_only") else [])
            + [f"experiment:{e}" for e in body.get("experiments", [])]
            + [f"registered_model:{m}" for m in body.get("registered_models", [])]
        )
        expires_in = parse_duration(body["expires_in"]) if "expires_in" in body else None
        record, secret = await self.service.create_token(
            call.actor, owner, body["name"], expires_in, scope
        )
        return {"token": token_json(record), "secret": secret}

    async def revoke_my_token(self, call: Call) -> dict[str, Any]:
        owner = self._own(call)
        record = await self.service.revoke_token(call.actor, call.path["token_id"], owner=owner)
        return {"token": token_json(record)}

    # -- users and groups ------------------------------------------------------------------------

    async def list_users(self, call: Call) -> dict[str, Any]:
        return {"users": [user_json(u) for u in await self.service.users.list()]}

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

    async def get_user(self, call: Call) -> dict[str, Any]:
        user = await self.service.users.get(call.path["username"])
        if user is None:
            raise Missing(f"no user named {call.path['username']!r}")
        tokens = await self.service.tokens.list(user.username)
        return {"user": user_json(user), "tokens": [token_json(t) for t in tokens]}

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

    async def list_groups(self, call: Call) -> dict[str, Any]:
        return {"groups": [group_json(g) for g in await self.service.users.groups()]}

    async def add_group_member(self, call: Call) -> dict[str, Any]:
        group = await self.service.add_member(call.actor, call.path["group"], call.path["username"])
        return {"group": group_json(group)}

    async def remove_group_member(self, call: Call) -> dict[str, Any]:
        group = await self.service.remove_member(
            call.actor, call.path["group"], call.path["username"]
        )
        return {"group": group_json(group)}

    # -- policy ----------------------------------------------------------------------------------

    async def list_policy(self, call: Call) -> dict[str, Any]:
        q = call.query
        index = self.index
        rules = [
            r
            for r in index.rules
            if _contains(r.subject, q.get("subject"))
            and _contains(r.object, q.get("object"))
            and _contains(r.action, q.get("action"))
            and (not q.get("effect") or r.effect == q["effect"])
        ]
        groupings = [
            g
            for g in index.groupings
            if not (q.get("object") or q.get("action") or q.get("effect"))
            and (_contains(g.member, q.get("subject")) or _contains(g.group, q.get("subject")))
        ]
        offset, limit = q.get("offset", 0), q.get("limit", 1000)
        return {
            "version": self.service.enforcer.version,
            "total_rules": len(rules),
            "total_groupings": len(groupings),
            "rules": [rule_json(r) for r in rules[offset : offset + limit]],
            "groupings": [grouping_json(g) for g in groupings[offset : offset + limit]],
        }

    @staticmethod
    def _rule(body: dict[str, Any]) -> Rule:
        return Rule(body["subject"], body["object"], body["action"], body.get("effect", "allow"))

    async def add_rule(self, call: Call) -> dict[str, Any]:
        rule = self._rule(call.body)
        added = await self.service.add_line(call.actor, rule)
        return {"changed": added, "rule": rule_json(rule), "version": self._version}

    async def remove_rule(self, call: Call) -> dict[str, Any]:
        rule = self._rule(call.body)
        await self.service.remove_line(call.actor, rule)
        return {"changed": True, "rule": rule_json(rule), "version": self._version}

    async def add_grouping(self, call: Call) -> dict[str, Any]:
        line = Grouping(call.body["member"], call.body["group"])
        added = await self.service.add_line(call.actor, line)
        return {"changed": added, "grouping": grouping_json(line), "version": self._version}

    async def remove_grouping(self, call: Call) -> dict[str, Any]:
        line = Grouping(call.body["member"], call.body["group"])
        await self.service.remove_line(call.actor, line)
        return {"changed": True, "grouping": grouping_json(line), "version": self._version}

    @property
    def _version(self) -> int:
        return self.service.enforcer.version

    async def import_policy(self, call: Call) -> dict[str, Any]:
        added, removed, present = await self.service.import_policy(
            call.actor, call.body["csv"], call.body.get("replace", False)
        )
        return {"added": added, "removed": removed, "unchanged": present, "version": self._version}

    async def export_policy(self, call: Call) -> web.Response:
        index = self.index
        lines = [f"# mlflow-gateway policy, version {self._version}"]
        lines += [str(line) for line in (*index.rules, *index.groupings)]
        return web.Response(
            text="\n".join(lines) + "\n",
            content_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="policy.csv"'},
        )

    async def names_of(self, object_: str) -> tuple[str, ...]:
        """Every policy name of the resource: an experiment by id is also its name, and by name
        also its id, as the gateway judges requests (when MLflow can tell)."""
        kind, _, key = object_.partition(":")
        try:
            if kind == "experiment" and key.isdigit():
                return (await self.resolver.experiment(key)).names
            if kind == "experiment_name" and key and "*" not in key:
                return (await self.resolver.experiment_by_name(key)).names
        except (NotFound, LookupFailed, Ambiguous):
            pass
        return (object_,)

    async def explain_decision(self, call: Call) -> dict[str, Any]:
        q = call.query
        user = await self.service.users.get(q["user"])
        principal = principal_of(q["user"], user, q.get("group", ()))
        names = await self.names_of(q["object"])
        decision = explain(self.index, principal, names, q["action"])
        return decision_json(decision, names) | {
            "user": q["user"],
            "known_user": user is not None,
            "groups": sorted(principal.groups),
        }

    async def who_can(self, call: Call) -> dict[str, Any]:
        names = await self.names_of(call.query["object"])
        holders = who_can(self.index, await self.service.users.list(), names, call.query["action"])
        return {
            "object": names[0],
            "names": list(names),
            "action": call.query["action"],
            "holders": [holder_json(h) for h in holders],
        }

    # -- tokens ----------------------------------------------------------------------------------

    async def list_tokens(self, call: Call) -> dict[str, Any]:
        tokens = [token_json(t) for t in await self.service.tokens.list(call.query.get("owner"))]
        state = call.query.get("state")
        return {"tokens": [t for t in reversed(tokens) if not state or t["state"] == state]}

    async def revoke_token(self, call: Call) -> dict[str, Any]:
        return {
            "token": token_json(await self.service.revoke_token(call.actor, call.path["token_id"]))
        }

    # -- the description -------------------------------------------------------------------------

    def endpoints(self) -> list[Endpoint]:
        e404 = (400, 401, 403, 404)
        change = (400, 401, 403, 404, 409)
        return [
            Endpoint(
                "GET",
                "/me",
                self.me,
                "Who am I: identity, groups, rights",
                "me",
                access="self",
                response="Me",
            ),
            Endpoint(
                "GET",
                "/me/tokens",
                self.list_my_tokens,
                "My tokens",
                "me",
                access="self",
                response="TokenList",
            ),
            Endpoint(
                "POST",
                "/me/tokens",
                self.create_my_token,
                "Create a token for myself",
                "me",
                access="self",
                body=TOKEN_FIELDS,
                response="CreatedToken",
                status=201,
                errors=change,
                description="The secret is in the answer, and nowhere else.",
            ),
            Endpoint(
                "DELETE",
                "/me/tokens/{token_id}",
                self.revoke_my_token,
                "Revoke one of my tokens",
                "me",
                access="self",
                path_fields=(TOKEN,),
                response="TokenAnswer",
                errors=change,
            ),
            Endpoint("GET", "/users", self.list_users, "List users", "users", response="UserList"),
            Endpoint(
                "POST",
                "/users",
                self.create_user,
                "Create a user",
                "users",
                body=(
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
                ),
                response="UserAnswer",
                status=201,
                errors=change,
            ),
            Endpoint(
                "GET",
                "/users/{username}",
                self.get_user,
                "A user and their tokens",
                "users",
                path_fields=(USER,),
                response="UserDetail",
                errors=e404,
            ),
            Endpoint(
                "PATCH",
                "/users/{username}",
                self.update_user,
                "Disable or enable, make admin, reset the password",
                "users",
                path_fields=(USER,),
                body=(
                    Field("disabled", "boolean"),
                    Field("admin", "boolean"),
                    Field("password", max_length=1024, min_length=MIN_PASSWORD_LENGTH),
                ),
                response="UserAnswer",
                errors=change,
                description="Takes effect on every gateway at the next request.",
            ),
            Endpoint(
                "GET",
                "/groups",
                self.list_groups,
                "Groups and their members",
                "users",
                response="GroupList",
            ),
            Endpoint(
                "PUT",
                "/groups/{group}/members/{username}",
                self.add_group_member,
                "Add a member (creates the group)",
                "users",
                path_fields=(GROUP, USER),
                response="GroupAnswer",
                errors=e404,
            ),
            Endpoint(
                "DELETE",
                "/groups/{group}/members/{username}",
                self.remove_group_member,
                "Remove a member",
                "users",
                path_fields=(GROUP, USER),
                response="GroupAnswer",
                errors=e404,
            ),
            Endpoint(
                "GET",
                "/policy",
                self.list_policy,
                "Policy lines, filtered",
                "policy",
                query=POLICY_FILTERS,
                response="Policy",
                description="Filters match parts of a field (`team-a` finds "
                "group:team-a and experiment_name:/team-a/*).",
            ),
            Endpoint(
                "POST",
                "/policy/rules",
                self.add_rule,
                "Add a rule",
                "policy",
                body=RULE_FIELDS,
                response="RuleChange",
                errors=change,
            ),
            Endpoint(
                "POST",
                "/policy/rules/delete",
                self.remove_rule,
                "Remove a rule",
                "policy",
                body=RULE_FIELDS,
                response="RuleChange",
                errors=change,
            ),
            Endpoint(
                "POST",
                "/policy/groupings",
                self.add_grouping,
                "Add a g line",
                "policy",
                body=GROUPING_FIELDS,
                response="GroupingChange",
                errors=change,
            ),
            Endpoint(
                "POST",
                "/policy/groupings/delete",
                self.remove_grouping,
                "Remove a g line",
                "policy",
                body=GROUPING_FIELDS,
                response="GroupingChange",
                errors=change,
            ),
            Endpoint(
                "POST",
                "/policy/import",
                self.import_policy,
                "Import policy CSV",
                "policy",
                body=(
                    Field(
                        "csv",
                        pattern=f.POLICY_CSV,
                        explain=f.policy_csv_problem,
                        max_length=4 * 1024 * 1024,
                        required=True,
                        description="policy lines as `policy export` writes them",
                    ),
                    Field("replace", "boolean", description="remove every line not in the file"),
                ),
                response="ImportResult",
                errors=change,
                description="All or nothing: a file with a bad line changes nothing.",
            ),
            Endpoint(
                "GET",
                "/policy/export",
                self.export_policy,
                "The policy as CSV",
                "policy",
                media_types=("text/csv",),
            ),
            Endpoint(
                "GET",
                "/policy/explain",
                self.explain_decision,
                "May USER do ACTION on OBJECT, and which rule decides",
                "policy",
                query=(
                    Field("user", pattern=f.NAME, required=True),
                    *QUESTION,
                    Field(
                        "group",
                        "array",
                        item=NAMES,
                        max_items=50,
                        description="groups the IdP would send",
                    ),
                ),
                response="Explanation",
            ),
            Endpoint(
                "GET",
                "/policy/who-can",
                self.who_can,
                "Who may do ACTION on OBJECT",
                "policy",
                query=QUESTION,
                response="WhoCan",
            ),
            Endpoint(
                "GET",
                "/tokens",
                self.list_tokens,
                "Everyone's tokens",
                "tokens",
                query=(
                    Field("owner", pattern=f.NAME),
                    Field("state", choices=("active", "expired", "revoked")),
                ),
                response="TokenList",
            ),
            Endpoint(
                "DELETE",
                "/tokens/{token_id}",
                self.revoke_token,
                "Revoke any token",
                "tokens",
                path_fields=(TOKEN,),
                response="TokenAnswer",
                errors=change,
            ),
        ]
