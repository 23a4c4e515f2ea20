"""Runs the gateway app on a socket until asked to stop."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from gateway.app import create_app
from gateway.config import Settings
from gateway.tls import server_ssl_context

log = logging.getLogger(__name__)

ACCESS_LOG_FORMAT = '%a "%r" %s %b %Tf "%{User-Agent}i"'


async def start_gateway(settings: Settings) -> web.AppRunner:
    runner = web.AppRunner(
        create_app(settings),
        access_log_format=ACCESS_LOG_FORMAT,
        handle_signals=False,
        shutdown_timeout=10.0,
    )
    await runner.setup()
    ssl_context = None
    if settings.tls_cert_file and settings.tls_key_file:
        ssl_context = server_ssl_context(settings.tls_cert_file, settings.tls_key_file)
    site = web.TCPSite(
        runner,
        settings.host,
        settings.port,
        reuse_address=True,
        backlog=1024,
        ssl_context=ssl_context,
    )
    await site.start()
    return runner


def stop_event_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM, so shutdown runs in order instead of unwinding."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def serve_forever(settings: Settings) -> None:
    stop = stop_event_on_signals()
    runner = await start_gateway(settings)
    log.info(
        "gateway listening on %s (upstream %s)",
        settings.effective_public_url,
        settings.upstream_url,
    )
    try:
        await stop.wait()
    finally:
        log.info("gateway stopping")
        await runner.cleanup()
