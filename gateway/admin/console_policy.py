"""The console's policy pages: the rules and g lines (filtered, added with an optional expiry,
removed, imported), the history (a diff between two versions, rollback), and the Explain page (may
this user do that, who may), with pickers of what MLflow knows."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.admin.console_frame import Frame, Pages, form_post, page, text
from gateway.admin.service import Actor
from gateway.authz.explain import explain, principal_of, who_can
from gateway.policy_lines import Grouping, PolicyError, Rule, expiry_from, now_text
from gateway.store.policy_history import UnknownVersion, VersionDiff

if TYPE_CHECKING:
    from gateway.admin.api import AdminApi

log = logging.getLogger(__name__)

SHOWN_RULES = 500
SHOWN_CHANGES = 200
ACTIONS = (
    "read",
    "edit",
    "manage",
    "create",
    "use",
    "promote:staging",
    "promote:production",
    "promote:archived",
    "alias:champion",
    "request:staging",
    "request:production",
    "request:archived",
    "request:alias:champion",
    "*",
)


def _expiry(form: Any) -> str:
    return expiry_from(text(form, "expires_in") or None, text(form, "expires_at") or None)


def _line(form: Any) -> Rule | Grouping:
    if form.get("kind") == "g":
        return Grouping(text(form, "member"), text(form, "group"))
    return Rule(
        text(form, "subject"),
        text(form, "object"),
        text(form, "action"),
        text(form, "effect", "allow"),
        _expiry(form),
    )


def _version(value: str) -> int | None:
    return int(value) if value.strip().isdigit() else None


class PolicyPages(Pages):
    def __init__(self, frame: Frame, api: AdminApi) -> None:
        super().__init__(frame)
        self.api = api
        self.service = api.service

    @page("/policies")
    async def policies(self, request: web.Request) -> web.Response:
        q = request.query
        filters = {k: q.get(k, "").strip() for k in ("subject", "object", "action")}
        index = self.service.policy.index
        rules = [
            r
            for r in index.rules
            if all(filters[k] in getattr(r, k) for k in filters if filters[k])
        ]
        groupings = [
            g
            for g in index.groupings
            if not (filters["object"] or filters["action"])
            and (filters["subject"] in g.member or filters["subject"] in g.group)
        ]
        return self.frame.render(
            request,
            "admin/policies.html",
            {
                "filters": filters,
                "rules": rules[:SHOWN_RULES],
                "rule_count": len(rules),
                "groupings": groupings[:SHOWN_RULES],
                "grouping_count": len(groupings),
                "shown": SHOWN_RULES,
                "version": self.service.policy.version,
                "now": now_text(),
                "actions": ACTIONS,
                "catalog": await self._catalog(),
                "query": request.query_string,
            },
        )

    async def _catalog(self) -> list[tuple[str, str]]:
        """Experiments and registered models MLflow knows, for the object pickers."""
        found: list[tuple[str, str]] = []
        try:
            data = await self.api.resolver.listing(
                "/api/2.0/mlflow/experiments/search", {"max_results": "500"}
            )
            for exp in data.get("experiments", []):
                found.append((f"experiment:{exp.get('experiment_id')}", exp.get("name", "")))
            data = await self.api.resolver.listing(
                "/api/2.0/mlflow/registered-models/search", {"max_results": "500"}
            )
            for model in data.get("registered_models", []):
                found.append((f"registered_model:{model.get('name')}", "registered model"))
        except Exception as exc:  # the pickers are a convenience: the page works without them
            log.info("catalog for the console unavailable: %s", exc)
        return found

    @form_post("/policies/add")
    async def policy_add(self, request: web.Request, form: Any, actor: Actor) -> str:
        line = _line(form)
        added = await self.service.add_line(actor, line)
        return f"Added: {line}" if added else f"Already present: {line}"

    @form_post("/policies/remove")
    async def policy_remove(self, request: web.Request, form: Any, actor: Actor) -> str:
        line = _line(form)
        await self.service.remove_line(actor, line)
        return f"Removed: {line}"

    @page("/policies/history")
    async def history_page(self, request: web.Request) -> web.Response:
        """The changes, newest first, and what the policy gained and lost between two versions."""
        version = self.service.policy.version
        return self.frame.render(
            request,
            "admin/policy_history.html",
            {
                "version": version,
                "changes": await self.service.policy.store.history(SHOWN_CHANGES),
                "shown": SHOWN_CHANGES,
                **await self._compare(version, request.query),
            },
        )

    async def _compare(self, version: int, query: Any) -> dict[str, Any]:
        """The two versions compared (by default: the version before the newest and the newest),
        and the diff between them or why there is none."""
        old = _version(query.get("from", "")) or max(version - 1, 1)
        new = _version(query.get("to", "")) or version
        diff: VersionDiff | None = None
        error = None
        if version:
            try:
                diff = await self.service.policy.store.diff(old, new)
            except UnknownVersion as exc:
                error = str(exc)
        return {"old": old, "new": new, "diff": diff, "error": error}

    @form_post("/policies/rollback")
    async def policy_rollback(self, request: web.Request, form: Any, actor: Actor) -> str:
        version = _version(text(form, "version"))
        if version is None:
            raise ValueError("name the version to roll back to (a number)")
        done = await self.service.rollback(actor, version)
        if not done.changed:
            return f"Unchanged: the policy is as it was at version {version}."
        return (
            f"Rolled back to version {version} as version {done.version}: "
            f"{len(done.added)} added, {len(done.removed)} removed."
        )

    @form_post("/policies/import")
    async def policy_import(self, request: web.Request, form: Any, actor: Actor) -> str:
        upload = form.get("file")
        csv = str(form.get("csv", ""))
        if upload is not None and hasattr(upload, "file"):
            csv = upload.file.read().decode("utf-8", errors="strict")
        added, removed, present = await self.service.import_policy(
            actor, csv, bool(form.get("replace"))
        )
        return f"Imported: {added} added, {removed} removed, {present} already present."

    @page("/explain")
    async def explain_page(self, request: web.Request) -> web.Response:
        q = request.query
        result: dict[str, Any] = {}
        error = None
        try:
            if q.get("user") and q.get("object") and q.get("action"):
                result["explain"] = await self._explain(q)
            if q.get("who_object") and q.get("who_action"):
                result["who"] = await self._who_can(q)
        except (PolicyError, ValueError) as exc:
            error = str(exc)
        return self.frame.render(
            request,
            "admin/explain.html",
            {
                "q": q,
                "result": result,
                "error": error,
                "users": await self.service.users.list(),
                "actions": ACTIONS,
                "catalog": await self._catalog(),
            },
        )

    async def _explain(self, q: Any) -> dict[str, Any]:
        """May the user (in these groups) do the action on the object, and which rule decides."""
        user = await self.service.users.get(q["user"].strip())
        groups = [g.strip() for g in q.get("groups", "").split(",") if g.strip()]
        principal = principal_of(q["user"].strip(), user, groups)
        names = await self.api.names_of(q["object"].strip())
        return {
            "decision": explain(self.service.policy.engine, principal, names, q["action"].strip()),
            "names": names,
            "known": user is not None,
            "groups": sorted(principal.groups),
            "decided_by": self.service.policy.decided_by,
        }

    async def _who_can(self, q: Any) -> dict[str, Any]:
        """Who may do the action on the object."""
        names = await self.api.names_of(q["who_object"].strip())
        holders = who_can(
            self.service.policy.engine,
            await self.service.users.list(),
            names,
            q["who_action"].strip(),
        )
        return {"names": names, "holders": holders}
