"""The admin API's policy: lines filtered, added (rules may expire) and removed, import and export,
its history, diffs between versions and rollback, and the questions (may this user do that, who
may) answered as the gateway decides."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.admin import fields as f
from gateway.admin.endpoints import CHANGE_ERRORS, Area, Call, Endpoint
from gateway.admin.fields import Field
from gateway.admin.policy_fields import (
    DIFF_QUERY,
    EXPIRY_FIELDS,
    HISTORY_QUERY,
    IMPORT_FIELDS,
    ROLLBACK_FIELDS,
)
from gateway.admin.service import Missing
from gateway.admin.shapes import (
    decision_json,
    grouping_json,
    history_json,
    holder_json,
    line_json,
    rule_json,
)
from gateway.admin.users_api import NAMES
from gateway.authz.canonical import Ambiguous
from gateway.authz.explain import explain, principal_of, who_can
from gateway.authz.policy import PolicyIndex
from gateway.authz.resolve import LookupFailed, NotFound, Resolver
from gateway.policy_lines import Grouping, Rule, expiry_from
from gateway.store.policy_history import UnknownVersion

if TYPE_CHECKING:
    from gateway.admin.service import AdminService
    from gateway.authz.enforcer import Enforcer

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
        description="read, edit, manage, create, use, promote:STAGE, alias:NAME, "
        "request:STAGE, request:alias:NAME (ask for a promotion that needs approval) or *",
    ),
    Field("effect", choices=("allow", "deny"), description="allow (default) or deny"),
)
GROUPING_FIELDS = (
    Field("member", pattern=f.SUBJECT, max_length=255, required=True),
    Field("group", pattern=f.SUBJECT, max_length=255, required=True),
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
EXPLAIN_QUERY = (
    Field("user", pattern=f.NAME, required=True),
    *QUESTION,
    Field("group", "array", item=NAMES, max_items=50, description="groups the IdP would send"),
)


def _contains(value: str, wanted: str | None) -> bool:
    return not wanted or wanted in value


def _expiry(body: dict[str, Any]) -> str:
    return expiry_from(body.get("expires_in"), body.get("expires_at"))


def _rule(body: dict[str, Any]) -> Rule:
    effect = body.get("effect", "allow")
    return Rule(body["subject"], body["object"], body["action"], effect, _expiry(body))


def _grouping(body: dict[str, Any]) -> Grouping:
    return Grouping(body["member"], body["group"])


def _change_endpoint(
    path: str, summary: str, body: tuple[Field, ...], response: str, description: str = ""
) -> Endpoint:
    """Every change to the policy (a line added or removed, an import, a rollback): a POST of
    ``body``, answered with ``response`` or one of the change errors."""
    return Endpoint(
        "POST",
        path,
        summary,
        body=body,
        response=response,
        errors=CHANGE_ERRORS,
        description=description,
    )


class PolicyApi(Area):
    tag = "policy"

    def __init__(self, service: AdminService[Enforcer], resolver: Resolver) -> None:
        self.service = service
        self.resolver = resolver

    @property
    def index(self) -> PolicyIndex:
        return self.service.policy.index

    @property
    def _version(self) -> int:
        return self.service.policy.version

    @Endpoint(
        "GET",
        "/policy",
        "Policy lines, filtered",
        query=POLICY_FILTERS,
        response="Policy",
        description="Filters match parts of a field (`team-a` finds "
        "group:team-a and experiment_name:/team-a/*).",
    )
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
            "version": self._version,
            "total_rules": len(rules),
            "total_groupings": len(groupings),
            "rules": [rule_json(r) for r in rules[offset : offset + limit]],
            "groupings": [grouping_json(g) for g in groupings[offset : offset + limit]],
        }

    async def _change(self, call: Call, line: Rule | Grouping, add: bool) -> dict[str, Any]:
        if add:
            changed = await self.service.add_line(call.actor, line)
        else:
            await self.service.remove_line(call.actor, line)
            changed = True
        shown = (
            {"rule": rule_json(line)}
            if isinstance(line, Rule)
            else {"grouping": grouping_json(line)}
        )
        return {"changed": changed, **shown, "version": self._version}

    @_change_endpoint(
        "/policy/rules",
        "Add a rule",
        (*RULE_FIELDS, *EXPIRY_FIELDS),
        "RuleChange",
        "`expires_in` or `expires_at` (both: the earlier): the rule expires (a rule already there "
        "with another expiry gets this one).",
    )
    async def add_rule(self, call: Call) -> dict[str, Any]:
        return await self._change(call, _rule(call.body), add=True)

    @_change_endpoint(
        "/policy/rules/delete", "Remove a rule", RULE_FIELDS, "RuleChange", "Whatever its expiry."
    )
    async def remove_rule(self, call: Call) -> dict[str, Any]:
        return await self._change(call, _rule(call.body), add=False)

    @_change_endpoint("/policy/groupings", "Add a g line", GROUPING_FIELDS, "GroupingChange")
    async def add_grouping(self, call: Call) -> dict[str, Any]:
        return await self._change(call, _grouping(call.body), add=True)

    @_change_endpoint(
        "/policy/groupings/delete", "Remove a g line", GROUPING_FIELDS, "GroupingChange"
    )
    async def remove_grouping(self, call: Call) -> dict[str, Any]:
        return await self._change(call, _grouping(call.body), add=False)

    @_change_endpoint(
        "/policy/import",
        "Import policy CSV",
        IMPORT_FIELDS,
        "ImportResult",
        "All or nothing: a file with a bad line changes nothing.",
    )
    async def import_policy(self, call: Call) -> dict[str, Any]:
        added, removed, present = await self.service.import_policy(
            call.actor, call.body["csv"], call.body.get("replace", False)
        )
        return {"added": added, "removed": removed, "unchanged": present, "version": self._version}

    @Endpoint("GET", "/policy/export", "The policy as CSV", media_types=("text/csv",))
    async def export_policy(self, call: Call) -> web.Response:
        index = self.index
        lines = [f"# mlflow-gateway policy, version {self._version}"]
        lines += [str(line) for line in (*index.rules, *index.groupings)]
        return web.Response(
            text="\n".join(lines) + "\n",
            content_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="policy.csv"'},
        )

    @Endpoint(
        "GET",
        "/policy/history",
        "The policy's changes, newest first",
        query=HISTORY_QUERY,
        response="History",
        description="One entry per line a version added or removed, with who made the change.",
    )
    async def history(self, call: Call) -> dict[str, Any]:
        entries = await self.service.policy.store.history(
            call.query.get("limit", 100), call.query.get("before")
        )
        return {"version": self._version, "changes": [history_json(e) for e in entries]}

    @Endpoint(
        "GET",
        "/policy/diff",
        "What the policy gained and lost between two versions",
        query=DIFF_QUERY,
        response="PolicyDiff",
        errors=(400, 401, 403, 404),
    )
    async def diff(self, call: Call) -> dict[str, Any]:
        try:
            found = await self.service.policy.store.diff(call.query["from"], call.query["to"])
        except UnknownVersion as exc:
            raise Missing(str(exc)) from None
        return {
            "from": found.old,
            "to": found.new,
            "added": [line_json(x) for x in found.added],
            "removed": [line_json(x) for x in found.removed],
        }

    @_change_endpoint(
        "/policy/rollback",
        "Restore the policy as it was at a version",
        ROLLBACK_FIELDS,
        "RollbackResult",
        "One new change; the admin rule stays, and rules that have expired since stay out. An "
        "unknown version is a 404.",
    )
    async def rollback(self, call: Call) -> dict[str, Any]:
        done = await self.service.rollback(call.actor, call.body["version"])
        return {
            "rolled_back_to": done.target,
            "version": done.version,
            "added": [line_json(x) for x in done.added],
            "removed": [line_json(x) for x in done.removed],
        }

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

    @Endpoint(
        "GET",
        "/policy/explain",
        "May USER do ACTION on OBJECT, and which rule decides",
        query=EXPLAIN_QUERY,
        response="Explanation",
    )
    async def explain_decision(self, call: Call) -> dict[str, Any]:
        q = call.query
        user = await self.service.users.get(q["user"])
        principal = principal_of(q["user"], user, q.get("group", ()))
        names = await self.names_of(q["object"])
        decision = explain(self.service.policy.engine, principal, names, q["action"])
        return decision_json(decision, names) | {
            "user": q["user"],
            "known_user": user is not None,
            "groups": sorted(principal.groups),
        }

    @Endpoint(
        "GET", "/policy/who-can", "Who may do ACTION on OBJECT", query=QUESTION, response="WhoCan"
    )
    async def who_can(self, call: Call) -> dict[str, Any]:
        names = await self.names_of(call.query["object"])
        holders = who_can(
            self.service.policy.engine,
            await self.service.users.list(),
            names,
            call.query["action"],
        )
        return {
            "object": names[0],
            "names": list(names),
            "action": call.query["action"],
            "holders": [holder_json(h) for h in holders],
        }
