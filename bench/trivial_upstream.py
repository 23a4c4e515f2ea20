"""A trivial upstream for measuring what the gateway adds: a tiny aiohttp server that answers every
request at once with a small MLflow-shaped JSON body (an experiment, for GetExperiment lookups).

    python bench/trivial_upstream.py --port 8123
"""

from __future__ import annotations

import argparse
import json

from aiohttp import web

BODY = json.dumps(
    {
        "experiment": {
            "experiment_id": "0",
            "name": "Default",
            "artifact_location": "mlflow-artifacts:/0",
            "lifecycle_stage": "active",
            "tags": [],
        }
    }
).encode()


async def answer(request: web.Request) -> web.Response:
    if request.body_exists:
        await request.read()
    if request.path == "/health":
        return web.Response(text="OK")
    return web.Response(body=BODY, content_type="application/json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
