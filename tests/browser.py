"""A real headless browser for the tests: Python Playwright (sync API) driving Debian's Chromium.

`playwright install` cannot download browsers on these machines, so Playwright launches the system
Chromium at /usr/bin/chromium (`apt-get install chromium`, see .ci/install-system-deps). Without
the flags below Chromium keeps opening background connections that the sandbox refuses.

    from playwright.sync_api import sync_playwright
    from tests.browser import launch_chromium, new_offline_context

    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        context = new_offline_context(browser)
        page = context.new_page()
        ...
        browser.close()
"""

from __future__ import annotations

import importlib.util
import os
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Playwright, Route

CHROMIUM_PATH = os.environ.get("GATEWAY_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS: tuple[str, ...] = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def playwright_available() -> bool:
    return importlib.util.find_spec("playwright") is not None


def chromium_available() -> bool:
    return Path(CHROMIUM_PATH).is_file() and os.access(CHROMIUM_PATH, os.X_OK)


def missing_browser_reason() -> str | None:
    missing: list[str] = []
    if not playwright_available():
        missing.append("the `playwright` Python package (pip install -e '.[dev]')")
    if not chromium_available():
        missing.append(f"Chromium at {CHROMIUM_PATH} (bash .ci/install-system-deps)")
    if not missing:
        return None
    return "browser tests need " + " and ".join(missing)


def require_browser() -> None:
    """Skip (locally) or fail (GATEWAY_TEST_REQUIRE_E2E=1) when Playwright/Chromium is missing."""
    from tests.oidc_provider import skip_or_fail

    reason = missing_browser_reason()
    if reason:
        skip_or_fail(reason)


def launch_chromium(
    playwright: Playwright,
    *,
    extra_args: Sequence[str] = (),
    headless: bool = True,
    **launch_kwargs: Any,
) -> Browser:
    """Launch Debian's Chromium through Playwright (sync API). Close it with `browser.close()`."""
    return playwright.chromium.launch(
        executable_path=CHROMIUM_PATH,
        headless=headless,
        args=[*CHROMIUM_ARGS, *extra_args],
        **launch_kwargs,
    )


def _is_loopback(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in {"data", "blob", "about"}:
        return True
    host = (parts.hostname or "").lower()
    return host in LOOPBACK_HOSTS or host.startswith("127.") or host.endswith(".localhost")


def _abort_non_loopback(route: Route) -> None:
    if _is_loopback(route.request.url):
        route.continue_()
    else:
        route.abort("blockedbyclient")


def new_offline_context(browser: Browser, **context_kwargs: Any) -> BrowserContext:
    """A browser context whose pages can reach loopback addresses only (others are aborted).

    Tests must talk to nothing but this machine; this also keeps pages that reference outside
    assets (fonts, CDNs) from waiting on them.
    """
    context = browser.new_context(**context_kwargs)
    context.route("**/*", _abort_non_loopback)
    return context
