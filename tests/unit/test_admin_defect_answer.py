"""A defect in an admin call is answered in MLflow's error shape, with the request id that finds
its traceback in the gateway log: never aiohttp's bare text."""

from __future__ import annotations

import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.admin.endpoints import Call, Endpoint, route
from gateway.edge import edge_middleware
from gateway.paths import REQUEST_ID_HEADER

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _fails(_call: Call) -> dict[str, str]:
    raise RuntimeError("a row vanished under the change")


async def test_a_defect_is_an_internal_error_in_mlflow_shape(
    caplog: pytest.LogCaptureFixture,
) -> None:
    endpoint = Endpoint("GET", "/defect", "A call that fails", access="public", handler=_fails)
    app = web.Application(middlewares=[edge_middleware(())])
    app.router.add_get("/defect", route(endpoint, enforcer=None))  # type: ignore[arg-type]
    async with TestClient(TestServer(app)) as client:
        with caplog.at_level(logging.ERROR, logger="gateway.admin.endpoints"):
            response = await client.get("/defect")
            body = await response.json()
    request_id = response.headers[REQUEST_ID_HEADER]
    assert response.status == 500
    assert body["error_code"] == "INTERNAL_ERROR"
    assert request_id in body["message"]
    assert "a row vanished" not in body["message"]  # details stay in the log
    assert any("a row vanished" in (r.exc_text or "") for r in caplog.records)
