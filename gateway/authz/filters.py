"""Search results limited to what the principal may read, keeping MLflow's paging contract.

A page holds up to `max_results` readable items. When filtering thins an upstream page out, the
gateway fetches further upstream pages. Its own `next_page_token` records the upstream page it
stopped in and how many of that page's items it already went through, so paging is complete and
never repeats an item. Tokens are opaque to clients; a tampered one can only skip items, never
reveal one (every item is judged again).

Experiments are steered: when every rule that lets the caller read experiments names them by id
(and the caller's token scope, if any, too), the upstream query itself is narrowed to those ids
(`attribute.experiment_id IN (...) AND <the caller's filter>`). MLflow then filters, orders and
pages the caller's share only, instead of the gateway scanning every experiment to find it; items
are still judged one by one (deny rules, scope), so the narrowing can only save work. An MLflow
that cannot filter experiments by id (3.16 and older answer 400 "Invalid attribute key
'experiment_id'") is searched unsteered from then on: slower, the same answers.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from gateway.authn.principal import Principal
from gateway.authz.canonical import Ambiguous, Params
from gateway.authz.enforcer import Enforcer
from gateway.authz.resolve import LookupFailed
from gateway.authz.resources import Resource, experiment_resource, model_resource, skill_resource
from gateway.authz.routes import Search
from gateway.authz.scope import scope_refusal

log = logging.getLogger(__name__)

LOOKUP_TIMEOUT = aiohttp.ClientTimeout(total=60)
# Upstream pages fetched for one client page at most; past that the page is returned short, with a
# token to continue (MLflow's contract allows short pages).
MAX_UPSTREAM_PAGES = 50
# Ids in one steered upstream filter at most; a caller who may read more is served page by page.
STEER_LIMIT = 500
# How an MLflow that does not know `attribute.experiment_id` in experiment filters refuses it.
_UNSTEERABLE = "Invalid attribute key 'experiment_id'"
# No experiment has it: the steered filter of a caller who may read none still lets MLflow check
# the rest of the request.
NO_EXPERIMENT = "-1"
_EXPERIMENT_ID = re.compile(r"^[0-9]{1,18}\Z")


@dataclass(frozen=True)
class SearchSpec:
    path: str
    method: str
    items: str
    default_max_results: int
    readable: Callable[[dict[str, Any]], tuple[str, ...]]
    # The client's parameters passed on upstream, and those of them that may repeat.
    passed_on: tuple[str, ...] = ("filter", "order_by", "view_type", "max_results")
    repeated: frozenset[str] = frozenset({"order_by"})


def _skill_names(skill: dict[str, Any]) -> tuple[str, ...]:
    """The policy object of a skill in a search answer: `skill:name`, `skill:@org/name`."""
    name, organization = str(skill.get("name")), skill.get("organization") or ""
    return skill_resource(f"@{organization}/{name}" if organization else name).names


SEARCHES: dict[Search, SearchSpec] = {
    Search.EXPERIMENTS: SearchSpec(
        "/api/2.0/mlflow/experiments/search",
        "POST",
        "experiments",
        1000,
        lambda e: experiment_resource(str(e.get("experiment_id")), e.get("name")).names,
    ),
    Search.REGISTERED_MODELS: SearchSpec(
        "/api/2.0/mlflow/registered-models/search",
        "GET",
        "registered_models",
        100,
        lambda m: model_resource(str(m.get("name"))).names,
    ),
    Search.MODEL_VERSIONS: SearchSpec(
        "/api/2.0/mlflow/model-versions/search",
        "GET",
        "model_versions",
        10000,
        lambda v: model_resource(str(v.get("name"))).names,
    ),
    # MLflow 3.18's skill registry (FastAPI): its query names the filter `filter_string`;
    # include_skill_identities only narrows what MLflow returns (every item is judged anyway).
    Search.SKILLS: SearchSpec(
        "/api/3.0/mlflow/skills",
        "GET",
        "skills",
        100,
        _skill_names,
        ("filter_string", "order_by", "max_results", "include_skill_identities"),
        frozenset({"order_by", "include_skill_identities"}),
    ),
}


@dataclass(frozen=True)
class PagePosition:
    upstream: str | None  # MLflow's token of the upstream page
    skip: int  # items of that page already gone through
    steered: bool = False  # the upstream query was narrowed to the caller's experiment ids


def encode_token(position: PagePosition) -> str:
    data: dict[str, Any] = {"u": position.upstream, "s": position.skip}
    if position.steered:
        data["f"] = 1
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode()


def decode_token(token: str) -> PagePosition:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        upstream, skip, steered = data["u"], int(data["s"]), data.get("f") == 1
    except (ValueError, KeyError, TypeError, AttributeError):
        raise Ambiguous("invalid page_token") from None
    if (upstream is not None and not isinstance(upstream, str)) or skip < 0:
        raise Ambiguous("invalid page_token")
    return PagePosition(upstream, skip, steered)


def steered_filter(ids: list[str], client_filter: str | None) -> str:
    """The caller's filter narrowed to ``ids``; the narrowing comes first, so nothing in the
    caller's text can reach into it."""
    narrowed = "attribute.experiment_id IN (" + ", ".join(f"'{i}'" for i in ids) + ")"
    rest = (client_filter or "").strip()
    return f"{narrowed} AND {rest}" if rest else narrowed


class SearchFilter:
    def __init__(
        self,
        session: Callable[[], aiohttp.ClientSession],
        upstream_url: str,
        enforcer: Enforcer,
    ) -> None:
        self._session = session
        self._base = upstream_url.rstrip("/")
        self._enforcer = enforcer
        # False once the upstream MLflow has refused a steered filter (it is too old to take one).
        self._steerable = True

    async def _page(
        self, spec: SearchSpec, query: dict[str, Any], token: str | None
    ) -> tuple[int, dict[str, Any]]:
        params = dict(query)
        if token:
            params["page_token"] = token
        url = self._base + spec.path
        if spec.method == "POST":
            # The proxy's session sends no Content-Type of its own: name it.
            request = self._session().post(
                url,
                data=json.dumps(params),
                headers={"Content-Type": "application/json"},
                timeout=LOOKUP_TIMEOUT,
            )
        else:
            flat = [
                (k, v) for k, vs in params.items() for v in (vs if isinstance(vs, list) else [vs])
            ]
            request = self._session().get(url, params=flat, timeout=LOOKUP_TIMEOUT)
        try:
            async with request as response:
                return response.status, await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise LookupFailed(f"search {spec.path} failed: {type(exc).__name__}") from exc

    def steer_ids(self, name: Search, principal: Principal) -> list[str] | None:
        """The experiment ids to narrow the upstream query to, or None (search everything)."""
        if name != Search.EXPERIMENTS or not self._steerable:
            return None
        ids = self._enforcer.readable_experiment_ids(principal)
        scope = principal.scope
        # A scope that lists models only leaves no experiment; one with patterns narrows nothing.
        listing = scope is not None and (scope.experiments or scope.registered_models)
        if scope is not None and listing and not any("*" in e for e in scope.experiments):
            listed = frozenset(scope.experiments)
            ids = listed if ids is None else ids & listed
        if ids is None:
            return None
        usable = sorted((i for i in ids if _EXPERIMENT_ID.match(i)), key=int)
        if len(usable) > STEER_LIMIT:
            return None
        return usable or [NO_EXPERIMENT]

    def _readable(self, principal: Principal, names: tuple[str, ...]) -> bool:
        if not self._enforcer.decide(principal, names, "read").allowed:
            return False
        # A scoped token sees only what its scope covers, in lists as everywhere else.
        scope = principal.scope
        return scope is None or scope_refusal(scope, Resource(names, names[0]), "read") is None

    async def search(
        self, name: Search, params: Params, principal: Principal
    ) -> tuple[int, dict[str, Any]]:
        """Status and body for the client: MLflow's error as is, or a filtered page."""
        spec = SEARCHES[name]
        query: dict[str, Any] = {}
        for key in spec.passed_on:
            values = params.values(key)
            if values:
                query[key] = values if key in spec.repeated else values[0]
        try:
            wanted = int(query.get("max_results", spec.default_max_results))
        except ValueError:
            raise Ambiguous("max_results must be a number") from None
        if wanted < 1:
            raise Ambiguous("max_results must be positive")
        query["max_results"] = wanted
        client_token = (params.values("page_token") or [""])[0]
        position = decode_token(client_token) if client_token else PagePosition(None, 0)
        ids = self.steer_ids(name, principal)
        if not position.steered and (ids is None or client_token):
            return await self._collect(spec, query, wanted, position, principal)
        if ids is None:
            raise Ambiguous(
                "page_token no longer applies: your rights changed since the first page; "
                "start the search again"
            )
        steered = dict(query, filter=steered_filter(ids, query.get("filter")))
        status, body = await self._collect(
            spec, steered, wanted, PagePosition(position.upstream, position.skip, True), principal
        )
        if status == 400 and _UNSTEERABLE in str(body.get("message", "")):
            log.warning(
                "MLflow cannot filter experiments by id (3.16 or older): experiment searches "
                "are filtered item by item from now on"
            )
            self._steerable = False
            if client_token:
                raise Ambiguous("page_token no longer applies: start the search again")
            return await self._collect(spec, query, wanted, PagePosition(None, 0), principal)
        return status, body

    async def _collect(
        self,
        spec: SearchSpec,
        query: dict[str, Any],
        wanted: int,
        position: PagePosition,
        principal: Principal,
    ) -> tuple[int, dict[str, Any]]:
        upstream_token, skip, steered = position.upstream, position.skip, position.steered
        kept: list[dict[str, Any]] = []
        for _ in range(MAX_UPSTREAM_PAGES):
            status, body = await self._page(spec, query, upstream_token)
            if status != 200:
                return status, body
            items = body.get(spec.items, [])
            for offset, item in enumerate(items[skip:], start=skip):
                if self._readable(principal, spec.readable(item)):
                    kept.append(item)
                    if len(kept) == wanted:
                        more = offset + 1 < len(items) or body.get("next_page_token")
                        token = (
                            encode_token(PagePosition(upstream_token, offset + 1, steered))
                            if more
                            else None
                        )
                        return 200, _page_body(spec, kept, token)
            upstream_token, skip = body.get("next_page_token") or None, 0
            if upstream_token is None:
                return 200, _page_body(spec, kept, None)
        return 200, _page_body(spec, kept, encode_token(PagePosition(upstream_token, 0, steered)))


def _page_body(spec: SearchSpec, items: list[dict[str, Any]], token: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {spec.items: items}
    if token:
        body["next_page_token"] = token
    return body
