"""A refusal: what the caller is told, in MLflow's error shape, and what the audit log keeps.

Every stage that stops a request raises ``Refused``; one function turns it into the answer, with
the header that says the gateway refused (not MLflow).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.errors import BAD_GATEWAY, BAD_REQUEST, PERMISSION_DENIED
from gateway.paths import REFUSED_HEADER


class Refused(Exception):
    """The request stops here: ``kind`` and ``message`` for the caller, ``reason`` for audit."""

    def __init__(
        self,
        kind: tuple[str, int],
        message: str,
        reason: str,
        *,
        body: dict[str, Any] | None = None,
        stage: str = "authorization",
    ) -> None:
        super().__init__(reason)
        self.kind, self.message, self.reason = kind, message, reason
        self.body = body  # a whole answer of MLflow's own shape (its 404s)
        self.stage = stage
        # What was judged up to the refusal (route, decisions), for the audit log.
        self.judgement: Any = None

    def response(self) -> web.Response:
        error_code, status = self.kind
        body = self.body or {"error_code": error_code, "message": self.message}
        return web.json_response(body, status=status, headers={REFUSED_HEADER: self.stage})


def denied(message: str, reason: str) -> Refused:
    return Refused(PERMISSION_DENIED, message, reason)


def bad_request(message: str) -> Refused:
    return Refused(BAD_REQUEST, message, f"ambiguous request: {message}")


def as_missing(message: str, reason: str) -> Refused:
    """MLflow's own 404 for a missing object, answered by the gateway (nothing is forwarded)."""
    body = {
        "error_code": "RESOURCE_DOES_NOT_EXIST",
        "message": message,
        "sqlstate": "KAM00",
        "error_class": "RESOURCE_NOT_FOUND",
    }
    return Refused(("RESOURCE_DOES_NOT_EXIST", 404), message, reason, body=body)


def unreachable(reason: str) -> Refused:
    return Refused(
        BAD_GATEWAY,
        "The gateway could not check this request with MLflow.",
        f"lookup failed: {reason}",
    )
