"""Search in a real headless Chromium (issue 17, point 3): an analyst searches a phone number as
written on a manifest, sees every shipment of that party, and opens one."""

from __future__ import annotations

from .conftest import PASSWORD
from .test_browser import page, server  # noqa: F401 - the shared Chromium and workbench fixtures


def test_search_then_open_a_result(server, page, tmp_path) -> None:  # noqa: F811
    base, settings = server
    page.goto(f"{base}/search")
    assert "/login" in page.url
    page.fill("input[name=username]", "ana")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/search")
    page.fill("#q", "(555) 0101")
    page.press("#q", "Enter")
    page.wait_for_selector("table.results")
    assert "2 shipments" in page.inner_text("#summary")
    links = page.locator("a.result")
    assert sorted(links.all_inner_texts()) == ["S1", "S2"]
    page.screenshot(path=str(tmp_path / "search.png"), full_page=True)
    page.locator("a.result", has_text="S2").click()
    page.wait_for_url(f"{base}/shipment/S2?day=2026-01-06")
    assert "S2" in page.inner_text("h1")
    assert not page.locator("script:not([src])").count()  # nothing injected into the page
