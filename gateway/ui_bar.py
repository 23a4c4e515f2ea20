"""A small bar on MLflow's own pages: who is signed in, a way to the console, sign out.

MLflow's UI is one HTML page that loads its scripts; the gateway adds one more script tag to that
page (and nothing else): `/.gateway/static/bar.js` draws the bar after MLflow has rendered. The
validators of the original page (ETag, Last-Modified) are dropped, so a browser never keeps a copy
with an older bar.
"""

from __future__ import annotations

from aiohttp import web

from gateway.paths import STATIC

BAR_TAG = f'<script defer src="{STATIC}bar.js"></script>'.encode()
UI_OPERATION = "UiIndex"


def with_bar(response: web.Response, body: bytes) -> web.Response:
    """MLflow's page with the bar's script, or the answer untouched when it is not that page."""
    if response.status != 200 or not response.content_type.startswith("text/html"):
        return response
    marker = body.rfind(b"</head>")
    if marker < 0:
        return response
    response.body = body[:marker] + BAR_TAG + body[marker:]
    for validator in ("ETag", "Last-Modified"):
        response.headers.popall(validator, None)
    return response
