"""The workbench in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright):
log in, filter the list, open a shipment, record an outcome, see it in the audit history and in
the labels the next retrain reads; an outcome is never recorded by accident (no default, a
positive needs an examiner and a confirmation); the list fits 1280 px and works from the
keyboard. Screenshots go to riskpipe/docs/screenshots/ for the README."""

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

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
)
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
    config = uvicorn.Config(
        create_app(home_settings), host="127.0.0.1", port=port, log_level="warning", access_log=False
    )
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
        context = browser.new_context(viewport={"width": 1280, "height": 900})
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

    # open the shipment (keyboard: the focus row, Enter), record an outcome
    page.keyboard.press("j")
    assert page.locator("tr.focus a.sid").inner_text() == "S2"
    page.keyboard.press("Enter")
    page.wait_for_url("**/shipment/S2**")
    assert page.locator("#sid").inner_text() == "S2"
    assert "port=2720" in page.locator("#back").get_attribute("href")  # the way back keeps the filters
    assert page.locator("#outcome").input_value() == ""  # no default outcome
    assert not page.locator("#confirm").is_visible()  # asked for positives only
    page.select_option("#outcome", "pill_press")
    assert page.locator("#confirm").is_visible()
    page.select_option("#exam_reason", "targeted")
    assert "positive training label" in page.locator("#learn").inner_text()
    page.fill("input[name=examiner]", "Officer K")
    page.click("#outcome-form button[type=submit]")  # not confirmed yet: the browser asks
    assert page.locator("#confirm:invalid").count() == 1 and "saved" not in page.url
    page.check("#confirm")
    page.click("#outcome-form button[type=submit]")
    page.wait_for_url("**saved=1**")
    audit = page.locator("#audit tbody").inner_text()
    assert "ana" in audit and "pill_press" in audit and "insert" in audit
    assert "pill_press" in page.locator("#current-outcome").inner_text()
    page.click("#back")
    page.wait_for_url("**port=2720**")
    page.goto(f"{base}/shipment/S1?day={DAY.isoformat()}")
    page.screenshot(path=str(SCREENSHOTS / "shipment.png"), full_page=True)
    assert page.locator("svg.network").count() == 1
    assert dialogs == []

    cur = LabelStore(settings.db_url).current()
    assert cur.filter(cur[S.SHIPMENT_ID] == "S2").select(S.OUTCOME, S.EXAM_REASON, S.EXAMINER).rows() == [
        ("pill_press", "targeted", "Officer K")
    ]
    assert (SCREENSHOTS / "list.png").stat().st_size > 10_000


def _login(page, base: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=username]", "ana")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/list")


def test_list_rows_never_record_an_outcome_by_accident(server, page) -> None:
    base, settings = server
    _login(page, base)
    store = LabelStore(settings.db_url)
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280  # no horizontal scroll
    row = page.locator("tr[data-sid=S1]")
    assert row.locator("select[name=outcome]").input_value() == ""  # no default
    # saving without choosing does nothing but ask
    row.locator("button[type=submit]").click()
    assert row.locator("select[name=outcome]:invalid").count() == 1
    assert row.locator("select[name=outcome]").evaluate("e => e.validationMessage") != ""
    page.wait_for_timeout(300)
    assert page.url == f"{base}/list"
    assert store.current().height == 0 and store.history("S1") == []
    # a positive asks for the examiner and a confirmation before it is sent
    row.locator("select[name=outcome]").select_option("fentanyl")
    assert row.locator(".confirm-fields").is_visible()
    assert "Positive training label for retrains after 2026-01-06" in row.locator(".learn").inner_text()
    row.locator("button[type=submit]").click()
    assert row.locator("input[name=examiner]:invalid").count() == 1
    page.wait_for_timeout(300)
    assert store.current().height == 0
    row.locator("input[name=examiner]").fill("Officer K")
    row.locator("input[name=confirm]").check()
    row.locator("button[type=submit]").click()
    page.wait_for_load_state()
    page.wait_for_function("() => document.querySelector('tr[data-sid=S1] select[name=outcome]').value === ''")
    assert store.current().select(S.SHIPMENT_ID, S.OUTCOME, S.EXAMINER).rows() == [("S1", "fentanyl", "Officer K")]
    # a negative needs no confirmation
    row = page.locator("tr[data-sid=S3]")
    row.locator("select[name=outcome]").select_option("no_finding")
    assert not row.locator(".confirm-fields").is_visible()
    assert "Negative training label" in row.locator(".learn").inner_text()
    row.locator("button[type=submit]").click()
    page.wait_for_function("() => document.querySelector('tr[data-sid=S3] select[name=outcome]').value === ''")
    cur = LabelStore(settings.db_url).current()
    assert cur.filter(cur[S.SHIPMENT_ID] == "S3").select(S.OUTCOME).rows() == [("no_finding",)]


def test_list_layout_and_keyboard_at_1280(server, page) -> None:
    base, _settings = server
    _login(page, base)
    for view in ("targets", "all"):
        page.goto(f"{base}/list?view={view}")
        assert page.evaluate("document.documentElement.scrollWidth") <= 1280, view
    page.goto(f"{base}/list")
    # port and HTS names beside the codes, why-selected in words, the risk as a percentile
    s1 = page.locator("tr[data-sid=S1]")
    assert "New York, NY (JFK)" in s1.inner_text()
    assert "p75.0" in s1.inner_text()
    assert s1.locator("td.sel .badge").inner_text() == "risk"
    s1.locator("td.sel summary").click()
    assert "1 of 2 risk picks at port 4701" in s1.locator("td.sel").inner_text()
    s1.locator("td.why summary").click()
    assert "rule:precursor_cas" in s1.locator("td.why").inner_text()
    # k/j and arrow keys move one focus row
    assert page.locator("tr.focus").get_attribute("data-sid") == "S1"  # the row clicked
    page.keyboard.press("ArrowDown")
    page.keyboard.press("j")
    assert page.locator("tr.focus").get_attribute("data-sid") == "S2"  # rank order: S1, S3, S2
    page.keyboard.press("k")
    assert page.locator("tr.focus").get_attribute("data-sid") == "S3"
    assert page.locator("tr.focus").count() == 1
    page.keyboard.press("o")
    assert page.evaluate("document.activeElement.name") == "outcome"
    # the health page: KPIs first, matplotlib charts, no horizontal scroll either
    page.goto(f"{base}/health")
    assert page.locator("#kpis .kpi").count() >= 3
    assert page.locator("svg.mpl").count() >= 4
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    page.screenshot(path=str(SCREENSHOTS / "health.png"), full_page=True)
