"""The OpenAPI document of /.gateway/api/, built from the same `Endpoint`s that route the calls."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway import __version__
from gateway.admin.endpoints import API_PREFIX, Endpoint
from gateway.admin.fields import object_schema

# Answers every authenticated call may get besides its own: bad credentials, lockout, Redis down.
COMMON_ERRORS = (401, 429, 503)
ERROR_TEXT = {
    400: "The input does not fit (the message names the field).",
    401: "No or invalid credentials.",
    403: "Not allowed (admins only, never with a scoped token; or the token's scope is too "
    "narrow for what it asks).",
    404: "No such user, group, token or policy line.",
    409: "Conflicts with the current state.",
    415: "The body is not sent as application/json.",
    429: "Too many failed sign-ins from this client; retry later.",
    503: "Redis or the database is unreachable.",
}


def _string(nullable: bool = False, **extra: Any) -> dict[str, Any]:
    return {"type": "string", **({"nullable": True} if nullable else {}), **extra}


def _strings() -> dict[str, Any]:
    return {"type": "array", "items": {"type": "string"}}


def _ref(name: str, nullable: bool = False) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{name}"}
    return {"allOf": [ref], "nullable": True} if nullable else ref


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties)}


def _list_of(key: str, item: str) -> dict[str, Any]:
    return _object({key: {"type": "array", "items": _ref(item)}})


BOOL = {"type": "boolean"}
INT = {"type": "integer"}
TOKEN_STATES = ["active", "expired", "revoked"]

SCHEMAS: dict[str, Any] = {
    "Error": _object({"error_code": _string(), "message": _string()}),
    "Rule": _object(
        {
            "subject": _string(),
            "object": _string(),
            "action": _string(),
            "effect": {"type": "string", "enum": ["allow", "deny"]},
            "expires_at": _string(nullable=True, format="date-time"),
        }
    ),
    "Grouping": _object({"member": _string(), "group": _string()}),
    "Line": {
        "type": "object",
        "description": "a rule (kind p: subject, object, action, effect, expires_at) or a g line "
        "(kind g: member, group), with its CSV form",
        "properties": {"line": _string(), "kind": {"type": "string", "enum": ["p", "g"]}},
        "required": ["line", "kind"],
    },
    "History": _object(
        {
            "version": INT,
            "changes": {
                "type": "array",
                "items": _object(
                    {
                        "version": INT,
                        "time": _string(format="date-time"),
                        "actor": _string(nullable=True),
                        "op": {"type": "string", "enum": ["add", "remove"]},
                        "line": _string(),
                    }
                ),
            },
        }
    ),
    "PolicyDiff": _object(
        {
            "from": INT,
            "to": INT,
            "added": {"type": "array", "items": _ref("Line")},
            "removed": {"type": "array", "items": _ref("Line")},
        }
    ),
    "RollbackResult": _object(
        {
            "rolled_back_to": INT,
            "version": INT,
            "added": {"type": "array", "items": _ref("Line")},
            "removed": {"type": "array", "items": _ref("Line")},
        }
    ),
    "Right": {
        "allOf": [_ref("Rule"), _object({"via": _string()})],
    },
    "Token": _object(
        {
            "id": _string(),
            "owner": _string(),
            "name": _string(),
            "scope": _strings(),
            "state": {"type": "string", "enum": TOKEN_STATES},
            "created_at": _string(format="date-time"),
            "expires_at": _string(nullable=True, format="date-time"),
            "revoked_at": _string(nullable=True, format="date-time"),
            "last_used_at": _string(nullable=True, format="date-time"),
        }
    ),
    "User": _object(
        {
            "username": _string(),
            "admin": BOOL,
            "disabled": BOOL,
            "email": _string(nullable=True),
            "groups": _strings(),
            "local_password": BOOL,
            "created_at": _string(format="date-time"),
            "last_login_at": _string(nullable=True, format="date-time"),
        }
    ),
    "Group": _object({"name": _string(), "members": _strings()}),
    "Me": _object(
        {
            "username": _string(),
            "method": _string(),
            "groups": _strings(),
            "admin": BOOL,
            "service_account": BOOL,
            "token": {
                **_object({"id": _string(), "scope": _strings()}),
                "nullable": True,
            },
            "rights": {"type": "array", "items": _ref("Right")},
            "csrf_token": _string(
                nullable=True,
                description="a browser session's CSRF token (for its forms); null otherwise",
            ),
        }
    ),
    "TokenList": _list_of("tokens", "Token"),
    "TokenAnswer": _object({"token": _ref("Token")}),
    "CreatedToken": _object(
        {"token": _ref("Token"), "secret": _string(description="shown this once only")}
    ),
    "UserList": _list_of("users", "User"),
    "UserAnswer": _object({"user": _ref("User")}),
    "UserDetail": _object(
        {"user": _ref("User"), "tokens": {"type": "array", "items": _ref("Token")}}
    ),
    "GroupList": _list_of("groups", "Group"),
    "GroupAnswer": _object({"group": _ref("Group")}),
    "Policy": _object(
        {
            "version": INT,
            "total_rules": INT,
            "total_groupings": INT,
            "rules": {"type": "array", "items": _ref("Rule")},
            "groupings": {"type": "array", "items": _ref("Grouping")},
        }
    ),
    "RuleChange": _object({"changed": BOOL, "rule": _ref("Rule"), "version": INT}),
    "GroupingChange": _object({"changed": BOOL, "grouping": _ref("Grouping"), "version": INT}),
    "ImportResult": _object({"added": INT, "removed": INT, "unchanged": INT, "version": INT}),
    "Explanation": _object(
        {
            "allowed": BOOL,
            "object": _string(),
            "names": _strings(),
            "action": _string(),
            "rule": _ref("Rule", nullable=True),
            "explanation": _string(),
            "user": _string(),
            "known_user": BOOL,
            "groups": _strings(),
        }
    ),
    "WhoCan": _object(
        {
            "object": _string(),
            "names": _strings(),
            "action": _string(),
            "holders": {
                "type": "array",
                "items": _object({"subject": _string(), "rule": _ref("Rule", nullable=True)}),
            },
        }
    ),
    "AuditPage": _object(
        {"events": {"type": "array", "items": {"type": "object"}}, "next_cursor": _string(True)}
    ),
    "AuditTail": _object(
        {"events": {"type": "array", "items": {"type": "object"}}, "last_id": _string(True)}
    ),
    "Verification": _object(
        {
            "intact": BOOL,
            "events": INT,
            "instances": INT,
            "problems": _strings(),
            "problem_count": INT,
            "checked_at": _string(),
            "checked_by": _string(),
        }
    ),
}


def _operation(endpoint: Endpoint) -> dict[str, Any]:
    parameters = [
        {"name": f.name, "in": "path", "required": True, "schema": f.schema()}
        for f in endpoint.path_fields
    ]
    for f in endpoint.query:
        param: dict[str, Any] = {"name": f.name, "in": "query", "required": f.required}
        param["schema"] = f.schema()
        if f.kind == "array":
            param.update(style="form", explode=True)
        if f.description:
            param["description"] = f.description
        parameters.append(param)
    if endpoint.response:
        content = {"application/json": {"schema": _ref(endpoint.response)}}
    else:
        content = {media: {"schema": {"type": "string"}} for media in endpoint.media_types}
    responses: dict[str, Any] = {
        str(endpoint.status): {"description": endpoint.summary, "content": content}
    }
    errors = endpoint.errors if endpoint.access == "public" else endpoint.errors + COMMON_ERRORS
    if endpoint.body is not None:
        errors += (415,)
    for status in sorted(set(errors)):
        responses[str(status)] = {
            "description": ERROR_TEXT[status],
            "content": {"application/json": {"schema": _ref("Error")}},
        }
    operation: dict[str, Any] = {
        "operationId": endpoint.operation_id,
        "summary": endpoint.summary,
        "tags": [endpoint.tag],
        "parameters": parameters,
        "responses": responses,
    }
    if endpoint.description:
        operation["description"] = endpoint.description
    if endpoint.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": object_schema(endpoint.body)}},
        }
    if endpoint.access == "admin":
        operation["description"] = (endpoint.description + " Admins only.").strip()
    return operation


def document(endpoints: list[Endpoint], server_url: str, cookie: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for endpoint in endpoints:
        paths.setdefault(API_PREFIX + endpoint.path, {})[endpoint.method.lower()] = _operation(
            endpoint
        )
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "mlflow-gateway admin API",
            "version": __version__,
            "description": (
                "Users, groups, policy, tokens and the audit trail of an mlflow-gateway. "
                "Authenticate with a gateway token (Bearer), basic auth, or a browser session "
                "(changes from a session also need the X-CSRF-Token header). Errors use "
                'MLflow\'s shape: {"error_code": ..., "message": ...}.'
            ),
        },
        "servers": [{"url": server_url}],
        "security": [{"bearer": []}, {"basic": []}, {"session": []}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "mlgw_ token"},
                "basic": {"type": "http", "scheme": "basic"},
                "session": {"type": "apiKey", "in": "cookie", "name": cookie},
            },
        },
    }


def openapi_handler(
    endpoints: list[Endpoint], server_url: str, cookie: str
) -> Callable[[web.Request], Awaitable[web.Response]]:
    built = document(endpoints, server_url, cookie)

    async def openapi_json(request: web.Request) -> web.Response:
        return web.json_response(built)

    return openapi_json
