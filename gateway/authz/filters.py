"""Search results limited to what the principal may read, keeping MLflow's paging contract.

A page holds up to `max_results` readable items. When filtering thins an upstream page out, the
gateway fetches further upstream pages. Its own `next_page_token` records the upstream page it
stopped in and how many of that page's items it already went through, so paging is complete and
never repeats an item. Tokens are opaque to clients; a tampered one can only skip items, never
reveal one (every item is judged again).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from gateway.authn.principal import Principal
from gateway.authz.canonical import Ambiguous, Params
from gateway.authz.enforcer import Enforcer
from gateway.authz.resolve import LookupFailed, Resource, experiment_resource, model_resource
from gateway.authz.scope import scope_refusal

LOOKUP_TIMEOUT = aiohttp.ClientTimeout(total=60)
# Upstream pages fetched for one client page at most; past that the page is returned short, with a
# token to continue (MLflow's contract allows short pages).
MAX_UPSTREAM_PAGES = 50


@dataclass(frozen=True)
class SearchSpec:
    path: str
    method: str
    items: str
    default_max_results: int
    readable: Callable[[dict[str, Any]], tuple[str, ...]]


SEARCHES: dict[str, SearchSpec] = {
    "experiments": SearchSpec(
        "/api/2.0/mlflow/experiments/search",
        "POST",
        "experiments",
        1000,
        lambda e: experiment_resource(str(e.get("experiment_id")), e.get("name")).names,
    ),
    "registered_models": SearchSpec(
        "/api/2.0/mlflow/registered-models/search",
        "GET",
        "registered_models",
        100,
        lambda m: model_resource(str(m.get("name"))).names,
    ),
    "model_versions": SearchSpec(
        "/api/2.0/mlflow/model-versions/search",
        "GET",
        "model_versions",
        10000,
        lambda v: model_resource(str(v.get("name"))).names,
    ),
}
_PASSED_ON = ("filter", "order_by", "view_type", "max_results")


def encode_token(upstream: str | None, skip: int) -> str:
    raw = json.dumps({"u": upstream, "s": skip}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_token(token: str) -> tuple[str | None, int]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        upstream, skip = data["u"], int(data["s"])
    except (ValueError, KeyError, TypeError):
        raise Ambiguous("invalid page_token") from None
    if (upstream is not None and not isinstance(upstream, str)) or skip < 0:
        raise Ambiguous("invalid page_token")
    return upstream, skip


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

    def _readable(self, principal: Principal, names: tuple[str, ...]) -> bool:
        if not self._enforcer.decide(principal, names, "read").allowed:
            return False
        # A scoped token sees only what its scope covers, in lists as everywhere else.
        scope = principal.scope
        return scope is None or scope_refusal(scope, Resource(names, names[0]), "read") is None

    async def search(
        self, name: str, params: Params, principal: Principal
    ) -> tuple[int, dict[str, Any]]:
        """Status and body for the client: MLflow's error as is, or a filtered page."""
        spec = SEARCHES[name]
        query: dict[str, Any] = {}
        for key in _PASSED_ON:
            values = params.values(key)
            if values:
                query[key] = values if key == "order_by" else values[0]
        try:
            wanted = int(query.get("max_results", spec.default_max_results))
        except ValueError:
            raise Ambiguous("max_results must be a number") from None
        if wanted < 1:
            raise Ambiguous("max_results must be positive")
        query["max_results"] = wanted
        client_token = (params.values("page_token") or [""])[0]
        upstream_token, skip = decode_token(client_token) if client_token else (None, 0)

        kept: list[dict[str, Any]] = []
        for _ in range(MAX_UPSTREAM_PAGES):
            status, body = await self._page(spec, query, upstream_token)
            if status != 200:
                return status, body
            items = body.get(spec.items, [])
            for position, item in enumerate(items[skip:], start=skip):
                if self._readable(principal, spec.readable(item)):
                    kept.append(item)
                    if len(kept) == wanted:
                        more = position + 1 < len(items) or body.get("next_page_token")
                        token = encode_token(upstream_token, position + 1) if more else None
                        return 200, _page_body(spec, kept, token)
            upstream_token, skip = body.get("next_page_token") or None, 0
            if upstream_token is None:
                return 200, _page_body(spec, kept, None)
        return 200, _page_body(spec, kept, encode_token(upstream_token, 0))


def _page_body(spec: SearchSpec, items: list[dict[str, Any]], token: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {spec.items: items}
    if token:
        body["next_page_token"] = token
    return body
