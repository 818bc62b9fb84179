"""The workbench in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright):
log in, filter the list, open a shipment, record an outcome, see it in the audit history and in
the labels the next retrain reads. Screenshots go to riskpipe/docs/screenshots/ for the README."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from riskpipe import schema as S
from riskpipe.labels import LabelStore

from .conftest import DAY, PASSWORD

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "riskpipe" / "docs" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
if not Path(CHROMIUM).exists():
    pytest.skip("chromium is not installed (apt-get install -y chromium)", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server(home_settings):
    import uvicorn

    from riskpipe.web import create_app

    port = _free_port()
    config = uvicorn.Config(create_app(home_settings), host="127.0.0.1", port=port, log_level="warning", access_log=False)
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started:
        if time.time() > deadline:
            raise RuntimeError("workbench did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", home_settings
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture()
def page():
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        pg = context.new_page()
        pg.set_default_timeout(15_000)
        yield pg
        context.close()
        browser.close()


def test_analyst_flow_in_chromium(server, page) -> None:
    base, settings = server
    page.goto(f"{base}/list")
    assert "/login" in page.url  # login required
    page.fill("input[name=username]", "ana")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/list")
    assert page.locator("table.list tbody tr").count() == 3
    # the XSS payload in S1's description is text, not markup: no dialog, visible as characters
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    assert "<script>" in page.locator("td.desc").first.inner_text()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "list.png"), full_page=True)

    # filter by port 2720: only S2 on the targeting list
    page.select_option("select[name=port]", "2720")
    page.click("#apply")
    page.wait_for_url("**port=2720**")
    rows = page.locator("table.list tbody tr")
    assert rows.count() == 1
    assert page.locator("#total").inner_text() == "1"

    # open the shipment, record an outcome
    page.click("a.sid")
    page.wait_for_url("**/shipment/S2**")
    assert page.locator("#sid").inner_text() == "S2"
    page.select_option("#outcome", "pill_press")
    page.select_option("#exam_reason", "targeted")
    page.fill("input[name=examiner]", "Officer K")
    page.click("#outcome-form button[type=submit]")
    page.wait_for_url("**saved=1**")
    audit = page.locator("#audit tbody").inner_text()
    assert "ana" in audit and "pill_press" in audit and "insert" in audit
    assert "pill_press" in page.locator("#current-outcome").inner_text()
    page.goto(f"{base}/shipment/S1?day={DAY.isoformat()}")
    page.screenshot(path=str(SCREENSHOTS / "shipment.png"), full_page=True)
    assert page.locator("svg.network").count() == 1
    assert dialogs == []

    cur = LabelStore(settings.db_url).current()
    assert cur.filter(cur[S.SHIPMENT_ID] == "S2").select(S.OUTCOME, S.EXAM_REASON, S.EXAMINER).rows() == [
        ("pill_press", "targeted", "Officer K")
    ]
    assert (SCREENSHOTS / "list.png").stat().st_size > 10_000
