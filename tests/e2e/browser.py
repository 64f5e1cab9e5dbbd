"""A real browser for the page tests: Debian's Chromium driven by Playwright (PyPI).

Never a downloaded browser: ``/usr/bin/chromium``, which ``make test`` installs with
apt-get when it is missing and the user is root; elsewhere the page tests skip and say
why. Headless at 1280x800, with none of the background traffic a closed network refuses
(sync, component updates, QUIC), and every request carrying ``x-functions-key`` (the pages
never echo a key into their links: a key is a secret; in Azure, App Service
authentication fronts them). Screenshots go to ``.local/screenshots/`` for people to look
at; no assertion depends on them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from emulators.stack import ROOT

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / ".local" / "screenshots"
WIDTH, HEIGHT = 1280, 800
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium(profile: Path, functions_key: str) -> Iterator[Any]:
    """A fresh browser context (its own ``--user-data-dir``) signed in with the key."""
    if not CHROMIUM.exists():
        pytest.skip(
            f"browser tests skipped: Debian's chromium is not installed ({CHROMIUM}); "
            "'make test' installs it with apt-get when run as root"
        )
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
            viewport={"width": WIDTH, "height": HEIGHT},
            extra_http_headers={"x-functions-key": functions_key},
        )
        try:
            yield context
        finally:
            context.close()


def fits(page: Any) -> int:
    """The page's width, asserted to fit the viewport: no horizontal scroll."""
    width: int = page.evaluate("document.documentElement.scrollWidth")
    assert width <= WIDTH, f"{page.url}: {width} px wide, more than {WIDTH}"
    return width


def tiles_match(page: Any, summary: dict[str, int]) -> None:
    """Every summary tile shows the count the JSON status has."""
    for flag in ("failed", "run-failed", "expired", "expiring", "drift", "unmanaged"):
        shown = page.locator(f"#tile-{flag} .n").inner_text()
        assert int(shown) == summary[flag], (flag, shown, summary)
