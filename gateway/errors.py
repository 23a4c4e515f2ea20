"""Errors in MLflow's own JSON shape, so the mlflow client shows them as it shows MLflow's."""

from __future__ import annotations

from aiohttp import web

# MLflow error codes (databricks.proto ErrorCode) and the HTTP status MLflow pairs them with.
UNAUTHENTICATED = ("UNAUTHENTICATED", 401)
PERMISSION_DENIED = ("PERMISSION_DENIED", 403)
BAD_REQUEST = ("BAD_REQUEST", 400)
INVALID_PARAMETER = ("INVALID_PARAMETER_VALUE", 400)
UNSUPPORTED_MEDIA_TYPE = ("INVALID_PARAMETER_VALUE", 415)  # a body that is not JSON
METHOD_NOT_ALLOWED = ("METHOD_NOT_ALLOWED", 405)
NOT_FOUND = ("ENDPOINT_NOT_FOUND", 404)
NOT_FOUND_RESOURCE = ("RESOURCE_DOES_NOT_EXIST", 404)
CONFLICT = ("RESOURCE_CONFLICT", 409)
UNAVAILABLE = ("TEMPORARILY_UNAVAILABLE", 503)
BAD_GATEWAY = ("TEMPORARILY_UNAVAILABLE", 502)  # MLflow unreachable
UPSTREAM_TIMEOUT = ("DEADLINE_EXCEEDED", 504)
INTERNAL_ERROR = ("INTERNAL_ERROR", 500)


def mlflow_error(
    kind: tuple[str, int], message: str, headers: dict[str, str] | None = None
) -> web.Response:
    error_code, status = kind
    return web.json_response(
        {"error_code": error_code, "message": message}, status=status, headers=headers
    )
