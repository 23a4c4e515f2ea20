"""Identity stamping: MLflow records who did what from what the client claims; we overwrite it.

CreateRun's ``user_id`` and its ``mlflow.user`` tag become the authenticated subject. Setting the
``mlflow.user`` tag to anyone else later (SetTag, LogBatch) is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.authn.principal import Principal
from gateway.errors import BAD_REQUEST, PERMISSION_DENIED, mlflow_error

USER_TAG = "mlflow.user"
MAX_STAMPED_BODY = 16 * 1024 * 1024

_PREFIXES = ("/api/2.0/mlflow/", "/ajax-api/2.0/mlflow/")
CREATE_RUN = {p + "runs/create" for p in _PREFIXES}
SET_TAG = {p + "runs/set-tag" for p in _PREFIXES}
LOG_BATCH = {p + "runs/log-batch" for p in _PREFIXES}


class StampRefused(Exception):
    def __init__(self, response: web.Response) -> None:
        super().__init__(response.text)
        self.response = response


@dataclass(frozen=True)
class Stamped:
    body: bytes


def needs_stamping(method: str, path: str) -> bool:
    return method == "POST" and (path in CREATE_RUN or path in SET_TAG or path in LOG_BATCH)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate keys")
    return dict(pairs)


def _bad(message: str) -> StampRefused:
    return StampRefused(mlflow_error(BAD_REQUEST, message))


async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.headers.get("Content-Encoding", "identity").lower() != "identity":
        raise _bad("Compressed request bodies are not accepted for this operation.")
    if request.content_length is not None and request.content_length > MAX_STAMPED_BODY:
        raise _bad("Request body too large.")
    raw = await request.content.read(MAX_STAMPED_BODY + 1)
    if len(raw) > MAX_STAMPED_BODY:
        raise _bad("Request body too large.")
    try:
        data = json.loads(raw or b"{}", object_pairs_hook=_no_duplicates)
    except (ValueError, UnicodeDecodeError):
        raise _bad("The request body must be a JSON object without duplicate keys.") from None
    if not isinstance(data, dict):
        raise _bad("The request body must be a JSON object.")
    return data


def _tags(data: dict[str, Any]) -> list[Any]:
    tags = data.get("tags", [])
    if not isinstance(tags, list):
        raise _bad("'tags' must be a list.")
    return tags


def _foreign_user_tag(tags: list[Any], subject: str) -> bool:
    return any(
        isinstance(t, dict) and t.get("key") == USER_TAG and t.get("value") != subject for t in tags
    )


async def stamp_identity(request: web.Request, principal: Principal) -> Stamped:
    """The body to forward instead of the client's. Raises StampRefused with the error to send."""
    data = await _json_body(request)
    subject = principal.subject
    if request.path in CREATE_RUN:
        data.pop("userId", None)
        data["user_id"] = subject
        tags = [t for t in _tags(data) if not (isinstance(t, dict) and t.get("key") == USER_TAG)]
        data["tags"] = [*tags, {"key": USER_TAG, "value": subject}]
    elif request.path in SET_TAG:
        if data.get("key") == USER_TAG and data.get("value") != subject:
            raise StampRefused(
                mlflow_error(PERMISSION_DENIED, f"The {USER_TAG} tag is set by the gateway.")
            )
    elif _foreign_user_tag(_tags(data), subject):
        raise StampRefused(
            mlflow_error(PERMISSION_DENIED, f"The {USER_TAG} tag is set by the gateway.")
        )
    return Stamped(json.dumps(data).encode())
