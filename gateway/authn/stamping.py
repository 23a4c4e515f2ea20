"""Identity stamping: MLflow records who did what from what the client claims; we overwrite it.

CreateRun's ``user_id`` and its ``mlflow.user`` tag become the authenticated subject. Setting the
``mlflow.user`` tag to anyone else later (SetTag, LogBatch) is refused.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.authn.principal import Principal

USER_TAG = "mlflow.user"

_PREFIXES = ("/api/2.0/mlflow/", "/ajax-api/2.0/mlflow/")
CREATE_RUN = frozenset(p + "runs/create" for p in _PREFIXES)
SET_TAG = frozenset(p + "runs/set-tag" for p in _PREFIXES)
LOG_BATCH = frozenset(p + "runs/log-batch" for p in _PREFIXES)


class ForeignIdentity(Exception):
    """The request would record someone else as the author."""


def needs_stamping(method: str, path: str) -> bool:
    return method == "POST" and (path in CREATE_RUN or path in SET_TAG or path in LOG_BATCH)


def _is_user_tag(tag: Any) -> bool:
    return isinstance(tag, dict) and tag.get("key") == USER_TAG


def _tags(body: dict[str, Any]) -> list[Any]:
    tags = body.get("tags")
    return tags if isinstance(tags, list) else []


def stamp_identity(path: str, body: dict[str, Any], principal: Principal) -> bytes | None:
    """The JSON body to forward instead of the judged one, or None to forward it unchanged."""
    subject = principal.subject
    if path in CREATE_RUN:
        stamped = {k: v for k, v in body.items() if k != "userId"}
        stamped["user_id"] = subject
        tags = _tags(body)
        stamped["tags"] = [t for t in tags if not _is_user_tag(t)]
        stamped["tags"].append({"key": USER_TAG, "value": subject})
        return json.dumps(stamped).encode()
    if path in SET_TAG:
        if body.get("key") == USER_TAG and body.get("value") != subject:
            raise ForeignIdentity(f"The {USER_TAG} tag is set by the gateway.")
    else:
        tags = _tags(body)
        if any(_is_user_tag(t) and t.get("value") != subject for t in tags):
            raise ForeignIdentity(f"The {USER_TAG} tag is set by the gateway.")
    return None
