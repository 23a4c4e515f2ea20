"""The admin console under /.gateway/admin/: server-rendered pages over the same service as the API.

Pages read with GET; every change is a form POST that needs a browser session and that session's
CSRF token, then redirects back (post/redirect/get) with a one-time notice. Admin pages refuse
non-admins with a page that says so; "My account" is for everyone signed in.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import aiohttp_jinja2
from aiohttp import web
from redis.exceptions import RedisError

from gateway.admin.api import AdminApi
from gateway.admin.fields import BadInput
from gateway.admin.service import Actor, admin_refusal
from gateway.admin.shapes import token_json
from gateway.audit.api import FILTERS, audit_query, last_verification, verify_and_record
from gateway.audit.review import search
from gateway.authn.csrf import session_form
from gateway.authn.pages import form_duration, form_scope_words
from gateway.authn.principal import Principal
from gateway.authz.explain import explain, principal_of, rights_of, who_can
from gateway.authz.policy import Grouping, PolicyError, Rule
from gateway.authz.resolve import LookupFailed
from gateway.context import context_of
from gateway.store.tokens import TokenScope
from gateway.store.users import StoreError

log = logging.getLogger(__name__)

PREFIX = "/.gateway/admin"
FLASH_COOKIE = "mlgw_flash"
SHOWN_RULES = 500
AUDIT_PAGE = 50
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
    "*",
)
Page = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Denied(Exception):
    pass


class Console:
    def __init__(self, api: AdminApi, redis: Any, tracking_uri: str) -> None:
        self.api = api
        self.service = api.service
        self.redis = redis
        self.tracking_uri = tracking_uri

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(PREFIX, self.home),
            web.get(PREFIX + "/", self.home),
            web.get(PREFIX + "/account", self.account),
            web.post(PREFIX + "/account/tokens", self._change(self.create_own_token, False)),
            web.post(
                PREFIX + "/account/tokens/{token_id}/revoke",
                self._change(self.revoke_own_token, False),
            ),
            web.get(PREFIX + "/policies", self._admin(self.policies)),
            web.post(PREFIX + "/policies/add", self._change(self.policy_add)),
            web.post(PREFIX + "/policies/remove", self._change(self.policy_remove)),
            web.post(PREFIX + "/policies/import", self._change(self.policy_import)),
            web.get(PREFIX + "/explain", self._admin(self.explain_page)),
            web.get(PREFIX + "/users", self._admin(self.users)),
            web.post(PREFIX + "/users", self._change(self.user_create)),
            web.get(PREFIX + "/users/{username}", self._admin(self.user_page)),
            web.post(PREFIX + "/users/{username}", self._change(self.user_update)),
            web.get(PREFIX + "/groups", self._admin(self.groups)),
            web.post(PREFIX + "/groups/members", self._change(self.member_add)),
            web.post(PREFIX + "/groups/members/remove", self._change(self.member_remove)),
            web.get(PREFIX + "/tokens", self._admin(self.tokens)),
            web.post(PREFIX + "/tokens/{token_id}/revoke", self._change(self.token_revoke)),
            web.get(PREFIX + "/audit", self._admin(self.audit)),
            web.post(PREFIX + "/audit/verify", self._change(self.audit_verify)),
            web.get(PREFIX + "/audit/live", self._admin(self.audit_live)),
        ]

    # -- plumbing --------------------------------------------------------------------------------

    def _admin_refusal(self, request: web.Request) -> str | None:
        return admin_refusal(self.service.enforcer, context_of(request).principal)

    def _administers(self, principal: Principal) -> bool:
        return admin_refusal(self.service.enforcer, principal) is None

    def render(
        self, request: web.Request, template: str, context: dict[str, Any], status: int = 200
    ) -> web.Response:
        ctx = context_of(request)
        base = {
            "principal": ctx.principal,
            "csrf_token": ctx.session.csrf_token if ctx.session else "",
            "flash": _read_flash(request),
            "path": request.path,
            "here": request.path_qs,
            # The admin tabs and links follow the same rule as the pages behind them.
            "is_admin": self._administers,
        }
        response = aiohttp_jinja2.render_template(
            template, request, {**base, **context}, status=status
        )
        response.headers["Cache-Control"] = "no-store"
        if base["flash"]:
            response.del_cookie(FLASH_COOKIE, path=PREFIX)
        return response

    def _denied(self, request: web.Request, why: str) -> web.Response:
        context_of(request).authz_refusal = why
        return self.render(request, "admin/denied.html", {"why": why}, status=403)

    def _admin(self, page: Page) -> Page:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if why := self._admin_refusal(request):
                return self._denied(request, why)
            return await page(request)

        return guarded

    def _change(
        self,
        action: Callable[[web.Request, Any, Actor], Awaitable[str | web.Response]],
        admin: bool = True,
    ) -> Page:
        """A form POST: session + CSRF token (+ admin), then the action, then back with a notice."""

        async def handle(request: web.Request) -> web.StreamResponse:
            ctx = context_of(request)
            if admin and (why := self._admin_refusal(request)):
                return self._denied(request, why)
            form = await request.post()
            if not session_form(ctx.session, form):
                # Without a session, a browser's cached basic credentials would ride along on a
                # forged cross-site form: changes from the console need a signed-in session.
                return self._denied(
                    request, "The form expired or was not sent from this console. Reload the page."
                )
            back = _back(form.get("back"))
            actor = Actor(ctx.principal, ctx.client_ip, ctx.request_id)
            try:
                outcome = await action(request, form, actor)
                if isinstance(outcome, web.Response):
                    return outcome
                notice, kind = outcome, "ok"
            except (StoreError, PolicyError, BadInput, ValueError) as exc:
                notice, kind = str(exc), "error"
            except (RedisError, LookupFailed) as exc:
                log.warning("console change failed: %s", exc)
                notice, kind = "A backing service is unreachable; nothing was changed.", "error"
            response = web.HTTPSeeOther(back)
            _set_flash(response, kind, notice)
            return response

        return handle

    # -- home and account ------------------------------------------------------------------------

    async def home(self, request: web.Request) -> web.StreamResponse:
        target = "/account" if self._admin_refusal(request) else "/policies"
        raise web.HTTPSeeOther(PREFIX + target)

    async def account(
        self, request: web.Request, created: tuple[str, str] | None = None
    ) -> web.Response:
        principal = context_of(request).principal
        admin, rights = rights_of(self.service.enforcer.index, principal)
        tokens = [] if principal.service else await self.service.token_service.own(principal)
        return self.render(
            request,
            "admin/account.html",
            {
                "admin": admin,
                "rights": rights,
                "tokens": [token_json(t) for t in reversed(tokens)],
                "tracking_uri": self.tracking_uri,
                "created": created,
            },
        )

    async def create_own_token(self, request: web.Request, form: Any, actor: Actor) -> web.Response:
        principal = actor.principal
        if principal.service:
            raise StoreError("service accounts have no personal tokens")
        record, secret = await self.service.create_token(
            actor,
            principal.subject,
            str(form.get("name", "")).strip(),
            form_duration(form),
            TokenScope.parse(form_scope_words(form)),
        )
        # Shown once, on this answer only: never in a cookie, a URL or a later page.
        response = await self.account(request, created=(record.name, secret))
        return response

    async def revoke_own_token(self, request: web.Request, form: Any, actor: Actor) -> str:
        record = await self.service.revoke_token(
            actor, request.match_info["token_id"], owner=actor.principal.subject
        )
        return f"Token “{record.name}” revoked."

    # -- policies --------------------------------------------------------------------------------

    async def policies(self, request: web.Request) -> web.Response:
        q = request.query
        filters = {k: q.get(k, "").strip() for k in ("subject", "object", "action")}
        index = self.service.enforcer.index
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
        return self.render(
            request,
            "admin/policies.html",
            {
                "filters": filters,
                "rules": rules[:SHOWN_RULES],
                "rule_count": len(rules),
                "groupings": groupings[:SHOWN_RULES],
                "grouping_count": len(groupings),
                "shown": SHOWN_RULES,
                "version": self.service.enforcer.version,
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

    @staticmethod
    def _line(form: Any) -> Rule | Grouping:
        if form.get("kind") == "g":
            return Grouping(str(form.get("member", "")).strip(), str(form.get("group", "")).strip())
        return Rule(
            str(form.get("subject", "")).strip(),
            str(form.get("object", "")).strip(),
            str(form.get("action", "")).strip(),
            str(form.get("effect", "allow")).strip(),
        )

    async def policy_add(self, request: web.Request, form: Any, actor: Actor) -> str:
        line = self._line(form)
        added = await self.service.add_line(actor, line)
        return f"Added: {line}" if added else f"Already present: {line}"

    async def policy_remove(self, request: web.Request, form: Any, actor: Actor) -> str:
        line = self._line(form)
        await self.service.remove_line(actor, line)
        return f"Removed: {line}"

    async def policy_import(self, request: web.Request, form: Any, actor: Actor) -> str:
        upload = form.get("file")
        text = str(form.get("csv", ""))
        if upload is not None and hasattr(upload, "file"):
            text = upload.file.read().decode("utf-8", errors="strict")
        added, removed, present = await self.service.import_policy(
            actor, text, bool(form.get("replace"))
        )
        return f"Imported: {added} added, {removed} removed, {present} already present."

    async def explain_page(self, request: web.Request) -> web.Response:
        q = request.query
        result: dict[str, Any] = {}
        error = None
        try:
            if q.get("user") and q.get("object") and q.get("action"):
                user = await self.service.users.get(q["user"].strip())
                groups = [g.strip() for g in q.get("groups", "").split(",") if g.strip()]
                principal = principal_of(q["user"].strip(), user, groups)
                names = await self.api.names_of(q["object"].strip())
                decision = explain(
                    self.service.enforcer.index, principal, names, q["action"].strip()
                )
                result["explain"] = {
                    "decision": decision,
                    "names": names,
                    "known": user is not None,
                    "groups": sorted(principal.groups),
                }
            if q.get("who_object") and q.get("who_action"):
                names = await self.api.names_of(q["who_object"].strip())
                result["who"] = {
                    "names": names,
                    "holders": who_can(
                        self.service.enforcer.index,
                        await self.service.users.list(),
                        names,
                        q["who_action"].strip(),
                    ),
                }
        except (PolicyError, ValueError) as exc:
            error = str(exc)
        return self.render(
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

    # -- users and groups ------------------------------------------------------------------------

    async def users(self, request: web.Request) -> web.Response:
        return self.render(request, "admin/users.html", {"users": await self.service.users.list()})

    async def user_create(self, request: web.Request, form: Any, actor: Actor) -> str:
        username = str(form.get("username", "")).strip()
        groups = tuple(g.strip() for g in str(form.get("groups", "")).split(",") if g.strip())
        password = str(form.get("password", "")) or None
        await self.service.create_user(
            actor, username, password, groups=groups, admin=bool(form.get("admin"))
        )
        return f"User {username} created."

    async def user_page(self, request: web.Request) -> web.Response:
        user = await self.service.users.get(request.match_info["username"])
        if user is None:
            raise web.HTTPNotFound(text="No such user.")
        tokens = await self.service.tokens.list(user.username)
        admin, rights = rights_of(self.service.enforcer.index, principal_of(user.username, user))
        return self.render(
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

    async def user_update(self, request: web.Request, form: Any, actor: Actor) -> str:
        username = request.match_info["username"]
        change = str(form.get("change", ""))
        changes: dict[str, dict[str, Any]] = {
            "disable": {"disabled": True},
            "enable": {"disabled": False},
            "make-admin": {"admin": True},
            "remove-admin": {"admin": False},
            "password": {"password": str(form.get("password", ""))},
        }
        options = changes.get(change, {})
        if not options:
            raise BadInput(f"unknown change {change!r}")
        if change == "password" and not options["password"]:
            raise BadInput("enter the new password")
        await self.service.update_user(actor, username, **options)
        return {
            "disable": f"{username} is disabled: sessions, passwords and tokens stop working.",
            "enable": f"{username} is enabled again.",
            "make-admin": f"{username} is now an admin.",
            "remove-admin": f"{username} is no longer an admin.",
            "password": f"The password of {username} was reset.",
        }[change]

    async def groups(self, request: web.Request) -> web.Response:
        return self.render(
            request,
            "admin/groups.html",
            {"groups": await self.service.users.groups(), "users": await self.service.users.list()},
        )

    async def member_add(self, request: web.Request, form: Any, actor: Actor) -> str:
        group, username = str(form.get("group", "")).strip(), str(form.get("username", "")).strip()
        await self.service.add_member(actor, group, username)
        return f"{username} added to {group}."

    async def member_remove(self, request: web.Request, form: Any, actor: Actor) -> str:
        group, username = str(form.get("group", "")).strip(), str(form.get("username", "")).strip()
        await self.service.remove_member(actor, group, username)
        return f"{username} removed from {group}."

    # -- tokens ----------------------------------------------------------------------------------

    async def tokens(self, request: web.Request) -> web.Response:
        owner = request.query.get("owner", "").strip() or None
        state = request.query.get("state", "")
        tokens = [token_json(t) for t in reversed(await self.service.tokens.list(owner))]
        if state:
            tokens = [t for t in tokens if t["state"] == state]
        return self.render(
            request,
            "admin/tokens.html",
            {"tokens": tokens, "owner": owner or "", "state": state},
        )

    async def token_revoke(self, request: web.Request, form: Any, actor: Actor) -> str:
        record = await self.service.revoke_token(actor, request.match_info["token_id"])
        return f"Token “{record.name}” of {record.owner} revoked."

    # -- audit -----------------------------------------------------------------------------------

    def _audit_filters(self, request: web.Request) -> dict[str, Any]:
        raw = {f.name: request.query.get(f.name, "").strip() for f in FILTERS}
        checked: dict[str, Any] = {}
        for field in FILTERS:
            if raw[field.name]:
                value: Any = raw[field.name]
                if field.kind == "integer":
                    if not value.isdigit():
                        raise BadInput(f"{field.name} must be a number")
                    value = int(value)
                # People type times loosely ("2026-12-01T10:00"); parse_time says what it takes.
                checked[field.name] = (
                    value if field.kind == "time" else field.check(value, "filter")
                )
        return checked

    async def audit(self, request: web.Request) -> web.Response:
        error = None
        events: list[dict[str, Any]] = []
        cursor = None
        filters: dict[str, Any] = {}
        try:
            filters = self._audit_filters(request)
            events, cursor = await search(
                self.redis,
                audit_query(filters),
                AUDIT_PAGE,
                request.query.get("cursor") or None,
            )
        except (BadInput, ValueError) as exc:
            error = str(exc)
        except RedisError:
            error = "The audit trail (Redis) is unreachable."
        keep = {k: str(v) for k, v in filters.items()}
        try:
            verification = await last_verification(self.redis)
        except RedisError:
            verification = None
        return self.render(
            request,
            "admin/audit.html",
            {
                "events": events,
                "error": error,
                "filters": {f.name: request.query.get(f.name, "") for f in FILTERS},
                "next": f"?{urlencode({**keep, 'cursor': cursor})}" if cursor else None,
                "first_page": not request.query.get("cursor"),
                "export_query": urlencode(keep),
                "verification": verification,
            },
        )

    async def audit_verify(self, request: web.Request, form: Any, actor: Actor) -> str:
        outcome = await verify_and_record(self.redis, actor.principal.subject)
        if outcome["intact"]:
            return (
                f"Audit trail intact: {outcome['events']} events "
                f"from {outcome['instances']} gateways."
            )
        return f"Audit trail NOT intact: {outcome['problem_count']} problems (listed below)."

    async def audit_live(self, request: web.Request) -> web.Response:
        return self.render(request, "admin/live.html", {})


def _back(candidate: Any) -> str:
    """Where a form returns to: the console page it names, never anywhere else."""
    if (
        isinstance(candidate, str)
        and candidate.startswith(PREFIX + "/")
        and len(candidate) < 2048
        and not any(ch in candidate for ch in "\\\r\n\t")
        and "//" not in candidate
    ):
        return candidate
    return PREFIX + "/"


def _set_flash(response: web.StreamResponse, kind: str, text: str) -> None:
    payload = base64.urlsafe_b64encode(json.dumps([kind, text[:2000]]).encode()).decode()
    response.set_cookie(
        FLASH_COOKIE, payload, path=PREFIX, max_age=60, httponly=True, samesite="Strict"
    )


def _read_flash(request: web.Request) -> dict[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        kind, text = json.loads(base64.urlsafe_b64decode(raw.encode()))
    except (ValueError, binascii.Error, TypeError):
        return None
    return {"kind": "error" if kind == "error" else "ok", "text": str(text)}
