"""Identity stamping, after the decision: MLflow records who did what from what the client
claims; the gateway overwrites it.

CreateRun's ``user_id`` and its ``mlflow.user`` tag become the authenticated subject. Setting the
``mlflow.user`` tag to anyone else later (SetTag, LogBatch) is refused. Keyed on the rule's
operation, so every route MLflow serves it under is covered.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.authn.principal import Principal
from gateway.refusals import denied

USER_TAG = "mlflow.user"

STAMPED = frozenset({"CreateRun", "SetTag", "LogBatch"})


def needs_stamping(operation: str) -> bool:
    return operation in STAMPED


def _is_user_tag(tag: Any) -> bool:
    return isinstance(tag, dict) and tag.get("key") == USER_TAG


def _tags(body: dict[str, Any]) -> list[Any]:
    tags = body.get("tags")
    return tags if isinstance(tags, list) else []


def stamp_identity(operation: str, body: dict[str, Any], principal: Principal) -> bytes | None:
    """The JSON body to forward instead of the judged one, or None to forward it unchanged;
    Refused when the request would record someone else as the author."""
    subject = principal.subject
    if operation == "CreateRun":
        stamped = {k: v for k, v in body.items() if k != "userId"}
        stamped["user_id"] = subject
        tags = _tags(body)
        stamped["tags"] = [t for t in tags if not _is_user_tag(t)]
        stamped["tags"].append({"key": USER_TAG, "value": subject})
        return json.dumps(stamped).encode()
    if operation == "SetTag":
        foreign = body.get("key") == USER_TAG and body.get("value") != subject
    else:
        foreign = any(_is_user_tag(t) and t.get("value") != subject for t in _tags(body))
    if foreign:
        message = f"The {USER_TAG} tag is set by the gateway."
        raise denied(message, f"{USER_TAG} set to someone else")
    return None
