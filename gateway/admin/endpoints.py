"""The admin API's plumbing: endpoint descriptions, access rules, input checks, errors.

An `Endpoint` says everything about one operation — path, who may call it, its parameters and body,
its answer — and is the single source for both the aiohttp route and the OpenAPI document. Handlers
receive a `Call` with the input already checked and never see a request that does not fit.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal, TypeVar

from aiohttp import web
from redis.exceptions import RedisError

from gateway.admin.fields import BadInput, Field, read_body, read_query
from gateway.admin.service import Actor, Conflict, Missing, NotPermitted, admin_refusal
from gateway.authn.csrf import SAFE_METHODS, form_token_matches
from gateway.authn.principal import Principal
from gateway.authz.enforcer import Enforcer
from gateway.context import context_of
from gateway.errors import (
    CONFLICT,
    INTERNAL_ERROR,
    INVALID_PARAMETER,
    METHOD_NOT_ALLOWED,
    NOT_FOUND_RESOURCE,
    PERMISSION_DENIED,
    UNAVAILABLE,
    UNSUPPORTED_MEDIA_TYPE,
    mlflow_error,
)
from gateway.policy_lines import PolicyError
from gateway.store.users import StoreError

log = logging.getLogger(__name__)

API_PREFIX = "/.gateway/api"
CSRF_HEADER = "X-CSRF-Token"
# Bodies of admin calls are small; a policy import is the largest.
MAX_BODY = 4 * 1024 * 1024

# Who may call: anyone (the schema), any signed-in person (about themselves), admins.
Access = Literal["public", "self", "admin"]
# The error answers of calls that look something up, and of calls that change something.
LOOKUP_ERRORS = (400, 401, 403, 404)
CHANGE_ERRORS = (400, 401, 403, 404, 409)


class Refused(Exception):
    def __init__(self, kind: tuple[str, int], message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class Call:
    """One checked call: who, from where, and its parameters."""

    request: web.Request
    principal: Principal
    path: dict[str, Any]
    query: dict[str, Any]
    body: dict[str, Any]

    @property
    def actor(self) -> Actor:
        ctx = context_of(self.request)
        return Actor(self.principal, ctx.client_ip, ctx.request_id)


Handler = Callable[[Call], Awaitable[web.StreamResponse | dict[str, Any]]]
H = TypeVar("H", bound=Callable[..., Any])


async def _unbound(call: Call) -> dict[str, Any]:
    raise RuntimeError("an Endpoint answers once `Area.endpoints` has bound it to its handler")


@dataclass(frozen=True)
class Endpoint:
    """One operation. Written as the decorator of its handler in an `Area`, which fills in
    ``handler`` and ``tag``."""

    method: str
    path: str  # below /.gateway/api, with {name} placeholders described by `path_fields`
    summary: str
    access: Access = "admin"
    path_fields: tuple[Field, ...] = ()
    query: tuple[Field, ...] = ()
    body: tuple[Field, ...] | None = None
    # The component schema of a JSON answer; other answers (exports) name their media types.
    response: str = ""
    media_types: tuple[str, ...] = ("application/json",)
    status: int = 200
    errors: tuple[int, ...] = field(default=(400, 401, 403))
    description: str = ""
    handler: Handler = _unbound
    tag: str = ""

    @property
    def operation_id(self) -> str:
        return self.handler.__name__.strip("_")

    def __call__(self, handler: H) -> H:
        """As a decorator: ``handler`` answers this endpoint."""
        _DECLARED.setdefault(handler, []).append(self)
        return handler


# The endpoints each handler function was decorated with, in the order written.
_DECLARED: dict[object, list[Endpoint]] = {}


class Area:
    """The handlers of one part of the API (one OpenAPI tag), each decorated with its endpoint."""

    tag: ClassVar[str]

    def endpoints(self) -> list[Endpoint]:
        """This area's endpoints, bound to its handlers, in the order the handlers are written."""
        return [
            replace(endpoint, handler=getattr(self, name), tag=self.tag)
            for name, member in vars(type(self)).items()
            if inspect.isfunction(member)
            for endpoint in _DECLARED.get(member, ())
        ]


def check_access(
    endpoint: Endpoint, request: web.Request, principal: Principal, enforcer: Enforcer
) -> None:
    """Admin calls: admins, never with a token that has a scope. The caller's own calls (/me):
    anyone signed in; what a token may do with tokens is the token service's rule."""
    if endpoint.access == "public":
        return
    ctx = context_of(request)
    if endpoint.access == "admin" and (why := admin_refusal(enforcer, principal)):
        raise Refused(PERMISSION_DENIED, why)
    # The authentication stage already checked Origin; a header a foreign page cannot set is the
    # second lock on changes made from a browser session.
    session = ctx.session
    if (
        principal.method == "session"
        and session is not None
        and request.method not in SAFE_METHODS
        and not form_token_matches(session.csrf_token, request.headers.get(CSRF_HEADER))
    ):
        raise Refused(
            PERMISSION_DENIED, f"Changes from a browser session need the {CSRF_HEADER} header."
        )


def route(endpoint: Endpoint, enforcer: Enforcer) -> Callable[[web.Request], Awaitable[Any]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        ctx = context_of(request)
        try:
            check_access(endpoint, request, ctx.principal, enforcer)
            path = {
                f.name: f.check(request.match_info[f.name], "path parameter")
                for f in endpoint.path_fields
            }
            query = read_query(request.query, endpoint.query)
            raw = await _read_body(request) if request.body_exists else b""
            body: dict[str, Any] = {}
            if endpoint.body is not None:
                # JSON only: a cross-site HTML form cannot send it without the browser asking
                # first (CORS), which the gateway never allows.
                if request.content_type != "application/json":
                    raise Refused(
                        UNSUPPORTED_MEDIA_TYPE, "Send the body as JSON (application/json)."
                    )
                body = read_body(raw, endpoint.body)
            elif raw.strip():
                raise BadInput("this call takes no body")
            answer = await endpoint.handler(Call(request, ctx.principal, path, query, body))
        except Refused as exc:
            ctx.authz_refusal = exc.message
            return mlflow_error(exc.kind, exc.message)
        except BadInput as exc:
            return mlflow_error(INVALID_PARAMETER, str(exc))
        except NotPermitted as exc:
            ctx.authz_refusal = str(exc)
            return mlflow_error(PERMISSION_DENIED, str(exc))
        except Missing as exc:
            return mlflow_error(NOT_FOUND_RESOURCE, str(exc))
        except Conflict as exc:
            return mlflow_error(CONFLICT, str(exc))
        except (StoreError, PolicyError, ValueError) as exc:
            return mlflow_error(INVALID_PARAMETER, str(exc))
        except RedisError as exc:
            log.warning("admin API: Redis unavailable: %s", exc)
            return mlflow_error(UNAVAILABLE, "Redis (sessions, audit trail) is unreachable.")
        except Exception:  # a defect: said in MLflow's shape, with the id that finds it in the log
            log.exception("admin API: %s failed", endpoint.operation_id)
            return mlflow_error(
                INTERNAL_ERROR,
                f"The gateway failed on this call (request id {ctx.request_id}); its log says why.",
            )
        if isinstance(answer, web.StreamResponse):
            return answer
        return web.json_response(answer, status=endpoint.status)

    handle.__name__ = endpoint.operation_id
    return handle


async def _read_body(request: web.Request) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY:
            raise BadInput(f"the body is larger than {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _not_allowed(allowed: list[str]) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def refuse(request: web.Request) -> web.Response:
        return mlflow_error(
            METHOD_NOT_ALLOWED,
            f"{request.path} answers {', '.join(allowed)} only.",
            headers={"Allow": ", ".join(allowed)},
        )

    return refuse


def add_routes(app: web.Application, endpoints: list[Endpoint], enforcer: Enforcer) -> None:
    by_path: dict[str, list[Endpoint]] = {}
    for endpoint in endpoints:
        by_path.setdefault(endpoint.path, []).append(endpoint)
    for path, group in by_path.items():
        resource = app.router.add_resource(API_PREFIX + path)
        for endpoint in group:
            resource.add_route(endpoint.method, route(endpoint, enforcer))
        # Any other method on a known path: 405 with Allow, not the gateway's generic 404.
        resource.add_route("*", _not_allowed([e.method for e in group]))
