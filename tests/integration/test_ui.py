"""The MLflow UI loads through the gateway: its index page and its static bundle."""

from __future__ import annotations

import hashlib
import re
import urllib.request

from tests.helpers import Gateway, MlflowServer


def _get(
    url: str, accept: str = "*/*", auth: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={"Accept": accept, **(auth or {})})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, dict(response.headers), response.read()


def test_index_page_and_static_bundle_load_through_gateway(
    gateway: Gateway, mlflow_server: MlflowServer
) -> None:
    status, headers, page = _get(f"{gateway.url}/", accept="text/html", auth=gateway.auth)
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    html = page.decode()
    assert "<title>MLflow</title>" in html

    script = re.search(r'src="\.?/?(static-files/static/js/[^"]+\.js)"', html)
    assert script, "index page names no JavaScript bundle"
    status, headers, bundle = _get(f"{gateway.url}/{script.group(1)}", auth=gateway.auth)
    assert status == 200
    assert "javascript" in headers["Content-Type"]
    _, _, direct = _get(f"{mlflow_server.url}/{script.group(1)}")
    assert hashlib.sha256(bundle).digest() == hashlib.sha256(direct).digest()

    stylesheet = re.search(r'href="\.?/?(static-files/static/css/[^"]+\.css)"', html)
    assert stylesheet
    status, headers, _ = _get(f"{gateway.url}/{stylesheet.group(1)}", auth=gateway.auth)
    assert status == 200
    assert headers["Content-Type"].startswith("text/css")


def test_ui_api_calls_work_through_gateway(gateway: Gateway) -> None:
    # The UI's own data calls go to /ajax-api/; the search the experiments page makes on load.
    request = urllib.request.Request(
        f"{gateway.url}/ajax-api/2.0/mlflow/experiments/search",
        data=b'{"max_results": 25, "order_by": ["last_update_time DESC"]}',
        headers={"Content-Type": "application/json", "Origin": gateway.url, **gateway.auth},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        assert b'"experiments"' in response.read()
