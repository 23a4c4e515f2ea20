"""A real Chromium for the end-to-end tests: one per module, a fresh offline context per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.browser import launch_chromium, new_offline_context, require_browser

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

# A module may set PAGE_TIMEOUT_MS to its own bound.
DEFAULT_PAGE_TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = launch_chromium(pw)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = new_offline_context(browser)
    context.set_default_timeout(getattr(request.module, "PAGE_TIMEOUT_MS", DEFAULT_PAGE_TIMEOUT_MS))
    yield context.new_page()
    context.close()
