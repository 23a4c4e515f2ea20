"""The gateway's own calls to MLflow for approvals, over the proxy's upstream client: what a model
version and an alias are now, the approved request itself, and the tags that record it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from gateway.approvals.store import DELETE_ALIAS, SET_ALIAS, TRANSITION_STAGE, Approval
from gateway.paths import REQUEST_ID_HEADER

TAG_PREFIX = "mlflow_gateway.approval."
REQUESTED_BY = TAG_PREFIX + "requested_by"
APPROVED_BY = TAG_PREFIX + "approved_by"
APPROVAL_ID = TAG_PREFIX + "approval_id"
APPROVED_AT = TAG_PREFIX + "approved_at"
REQUEST = TAG_PREFIX + "request"
TIMEOUT = aiohttp.ClientTimeout(total=30)
API = "/api/2.0/mlflow/"

_PATHS = {
    TRANSITION_STAGE: ("POST", API + "model-versions/transition-stage"),
    SET_ALIAS: ("POST", API + "registered-models/alias"),
    DELETE_ALIAS: ("DELETE", API + "registered-models/alias"),
}


class MlflowUnreachable(Exception):
    """MLflow did not answer (the message says how)."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]

    @property
    def message(self) -> str:
        return str(self.body.get("message") or self.body.get("error_code") or self.status)


def request_body(approval: Approval) -> dict[str, Any]:
    """The approved request, as the gateway judged it (MLflow reads DELETE bodies as JSON)."""
    if approval.operation == TRANSITION_STAGE:
        return {
            "name": approval.model,
            "version": approval.version,
            "stage": approval.stage,
            "archive_existing_versions": approval.archive_existing_versions,
        }
    if approval.operation == SET_ALIAS:
        return {"name": approval.model, "alias": approval.alias, "version": approval.version}
    return {"name": approval.model, "alias": approval.alias}


class MlflowCalls:
    def __init__(self, session: Callable[[], aiohttp.ClientSession], upstream_url: str) -> None:
        self._session = session
        self._base = upstream_url.rstrip("/")

    async def _call(
        self,
        method: str,
        path: str,
        request_id: str,
        *,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> Answer:
        headers = {REQUEST_ID_HEADER: request_id, "Accept-Encoding": "identity"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        try:
            async with self._session().request(
                method, self._base + path, params=params, data=data, headers=headers,
                timeout=TIMEOUT, allow_redirects=False,
            ) as response:  # fmt: skip
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise MlflowUnreachable(f"MLflow is unreachable ({type(exc).__name__})") from None
        try:
            parsed = json.loads(raw) if raw else {}
        except ValueError:
            parsed = {}
        return Answer(status, parsed if isinstance(parsed, dict) else {})

    async def _model_version(
        self, path: str, request_id: str, params: dict[str, str]
    ) -> dict[str, Any] | None:
        """The model version MLflow answers at ``path``; None when it has no such thing."""
        answer = await self._call("GET", path, request_id, params=params)
        if answer.status in (400, 404):
            return None
        if answer.status != 200:
            raise MlflowUnreachable(f"MLflow answered {answer.status} to {path.removeprefix(API)}")
        found = answer.body.get("model_version")
        return found if isinstance(found, dict) else None

    async def version(self, name: str, version: str, request_id: str) -> dict[str, Any] | None:
        """The model version now; None when MLflow has no such version."""
        params = {"name": name, "version": version}
        return await self._model_version(API + "model-versions/get", request_id, params)

    async def alias_version(self, name: str, alias: str, request_id: str) -> str:
        """The version ``alias`` points at now; empty when it is not set."""
        params = {"name": name, "alias": alias}
        found = await self._model_version(API + "registered-models/alias", request_id, params)
        return str((found or {}).get("version") or "")

    async def perform(self, approval: Approval, request_id: str) -> Answer:
        method, path = _PATHS[approval.operation]
        return await self._call(method, path, request_id, body=request_body(approval))

    async def record(self, approval: Approval, approved_at: str, request_id: str) -> list[str]:
        """Who asked and who approved, as tags of the version; the tags MLflow refused."""
        if not approval.version:
            return []  # deleting an alias that pointed nowhere: no version to tag
        tags = {
            REQUESTED_BY: approval.requested_by,
            APPROVED_BY: approval.decided_by,
            APPROVAL_ID: approval.id,
            APPROVED_AT: approved_at,
            REQUEST: approval.describe(),
        }
        refused = []
        for key, value in tags.items():
            answer = await self._call(
                "POST",
                API + "model-versions/set-tag",
                request_id,
                body={
                    "name": approval.model,
                    "version": approval.version,
                    "key": key,
                    "value": value,
                },
            )
            if answer.status != 200:
                refused.append(key)
        return refused
