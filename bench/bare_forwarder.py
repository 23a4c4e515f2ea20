"""The floor: the least an aiohttp reverse proxy can do — receive, forward on a pooled keep-alive
connection, relay the answer. No authentication, authorization, audit, metrics or header hygiene.
What the gateway adds beyond this is the price of its own work.

    python bench/bare_forwarder.py --port 8124 --upstream http://127.0.0.1:8123
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

SESSION = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM = web.AppKey("upstream", str)


async def forward(request: web.Request) -> web.Response:
    body = await request.read() if request.body_exists else None
    async with request.app[SESSION].request(
        request.method, request.app[UPSTREAM] + request.path_qs, data=body
    ) as upstream:
        return web.Response(
            body=await upstream.read(),
            status=upstream.status,
            content_type=upstream.content_type,
        )


async def session(app: web.Application) -> AsyncIterator[None]:
    app[SESSION] = aiohttp.ClientSession()
    yield
    await app[SESSION].close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    app = web.Application()
    app[UPSTREAM] = args.upstream.rstrip("/")
    app.cleanup_ctx.append(session)
    app.router.add_route("*", "/{tail:.*}", forward)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
