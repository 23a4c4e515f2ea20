"""The audit event: what happened, who did it, to what, and what the gateway decided.

Never a password, token, cookie or request body. Parameters that matter for review (a stage
transition's target stage, an alias name) are kept.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from datetime import UTC, datetime
from typing import Any

SCHEMA_VERSION = 1
GENESIS = "0" * 64
# Request parameters worth keeping for review (never bodies or secrets).
REVIEW_PARAMS = ("stage", "alias", "archive_existing_versions", "name", "new_name", "version")


def new_event_id() -> str:
    """Time-ordered and unique: milliseconds then randomness."""
    return f"{int(time.time() * 1000):013d}-{secrets.token_hex(6)}"


def canonical(event: dict[str, Any]) -> bytes:
    return json.dumps(event, sort_keys=True, separators=(",", ":"), default=str).encode()


def _body(event: dict[str, Any]) -> bytes:
    return canonical({k: v for k, v in event.items() if k != "hash"})


def chain_hash(previous: str, event: dict[str, Any]) -> str:
    """The hash of an event: over the previous hash and every field but its own hash."""
    return hashlib.sha256(previous.encode() + _body(event)).hexdigest()


def sealed(previous: str, event: dict[str, Any]) -> bytes:
    """Chain ``event`` to ``previous`` (sets its hash) and return its stored form.

    Serialised once: the stored form is the canonical form the hash covers with the hash appended
    as the last field, which reads back as the same event.
    """
    body = _body(event)
    event["hash"] = hashlib.sha256(previous.encode() + body).hexdigest()
    return body[:-1] + b',"hash":"' + event["hash"].encode() + b'"}'


def base_event(kind: str, instance: str) -> dict[str, Any]:
    return {
        "v": SCHEMA_VERSION,
        "id": new_event_id(),
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "instance": instance,
        "type": kind,
    }
