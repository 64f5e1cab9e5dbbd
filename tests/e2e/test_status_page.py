"""End-to-end in a real browser: the status, run and history pages as an operator sees them.

The browser is :mod:`tests.e2e.browser` (Debian's Chromium at 1280x800, every request
with ``x-functions-key``) against the function app on the local stack. The world holds
what the page must tell apart: a healthy service, one on a certificate that expires within
30 days, one on an expired certificate, an untagged one and one that Azure
left ``Failed`` (``POST /cloudservices/fail-next``) after a failed run. The sandbox's own
page is checked the same way in tests/e2e/test_sandbox.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.conftest import LocalStack
from tests.e2e.browser import HEIGHT, SCREENSHOTS, WIDTH, chromium, fits, tiles_match
from tests.e2e.test_reliability import fail_next
from tests.e2e.test_status import deploy_with, imported
from tests.e2e.world import World, api, rotate_over_http


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory, stack: LocalStack) -> Iterator[Any]:
    with chromium(tmp_path_factory.mktemp("chromium-profile"), stack.env["FUNCTIONS_KEY"]) as b:
        yield b


def _page_url(world: World, path: str, **params: str) -> str:
    return f"{world.stack.env['FUNCTIONS_URL']}{path}?{urlencode(params)}"


def test_status_page_run_page_and_history_in_chromium(world: World, browser: Any) -> None:
    v1 = world.new_version()
    failing = world.deploy(v1)
    v2 = world.new_version()
    healthy = world.deploy(v2)
    soon, gone = imported(world, "short-lived", 12), imported(world, "expired", -3)
    expiring, _ = deploy_with(world, ("SslCert", soon))
    expired, _ = deploy_with(world, ("SslCert", gone))
    untagged = world.deploy(v2, tagged=False)
    fail_next(world, failing)
    run_id = rotate_over_http(world, failing)
    page = browser.new_page()

    page.goto(_page_url(world, "/api/status", format="html"))
    summary = api(world.stack, "GET", "/api/status").json()["summary"]

    status_width = fits(page)
    row = page.locator(f'tr[data-service="{failing.id}"]')
    assert row.is_visible()
    assert "failed" in (row.get_attribute("data-attention") or "").split()
    assert row.locator(".badge.b-failed").first.inner_text() == "failed"
    assert "last run failed" in row.inner_text()
    tiles_match(page, summary)
    order = page.eval_on_selector_all(
        "tr[data-service]", "rows => rows.map(r => r.dataset.service)"
    )
    mine = [o for o in order if world.rg_name.lower() in o.lower()]
    names = [o.rsplit("/", 1)[-1] for o in mine]
    assert names[0] == failing.name and names[-1] == healthy.name, names
    assert names.index(expired) < names.index(expiring) < names.index(untagged.name)
    page.locator(f'tr[data-service="{untagged.id}"] details summary').first.click()
    assert "cert-rotation-package" in page.locator(f'tr[data-service="{untagged.id}"]').inner_text()
    row.scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "status.png"), full_page=True)
    page.set_viewport_size({"width": WIDTH, "height": HEIGHT})

    row.locator(f'a[href*="rotations/{run_id}"]').click()
    page.wait_for_load_state()

    assert f"/api/rotations/{run_id}" in page.url
    assert run_id in page.locator("h1").inner_text()
    service = page.locator(f'section[data-service="{failing.id}"]')
    assert "failed" in service.locator(".badge").first.inner_text()
    assert "RoleInstanceStartupFailed" in service.inner_text()
    assert "cscfg diff" in service.inner_text() and "Timings" in service.inner_text()
    run_width = fits(page)
    page.screenshot(path=str(SCREENSHOTS / "run.png"), full_page=True)

    page.get_by_text("Run history").click()
    page.wait_for_load_state()

    assert page.locator(f'a[href*="rotations/{run_id}"]').count() >= 1
    history_width = fits(page)
    page.screenshot(path=str(SCREENSHOTS / "history.png"), full_page=True)
    print(f"\npage widths at {WIDTH}x{HEIGHT}: status {status_width}, run {run_width}, "
          f"history {history_width} px")
