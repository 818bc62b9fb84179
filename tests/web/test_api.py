from __future__ import annotations

import csv
import io
import re
import threading
import warnings

import pytest

from riskpipe import schema as S
from riskpipe.labels import LabelStore

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from riskpipe.web import create_app

from .conftest import DAY, PASSWORD, XSS, csrf_of, login


@pytest.fixture()
def app(home_settings):
    return create_app(home_settings)


@pytest.fixture()
def analyst(app) -> TestClient:
    c = TestClient(app)
    assert login(c, "ana").status_code == 303
    return c


@pytest.fixture()
def supervisor(app) -> TestClient:
    c = TestClient(app)
    assert login(c, "sue").status_code == 303
    return c


@pytest.mark.parametrize(
    "path", ["/", "/list", "/list.csv", "/shipment/S1", "/health", "/users", "/rules", f"/report/{DAY}"]
)
def test_pages_need_login(app, path: str) -> None:
    r = TestClient(app).get(path, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"].startswith("/login?next=")


@pytest.mark.parametrize("path", ["/api/list", "/api/shipment/S1"])
def test_api_needs_login(app, path: str) -> None:
    assert TestClient(app).get(path).status_code == 401


def test_post_needs_login(app) -> None:
    r = TestClient(app).post("/shipment/S1/outcome", data={"outcome": "fentanyl"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert TestClient(app).post("/api/outcome", json={}).status_code == 401


def test_wrong_password_and_forged_cookie(app) -> None:
    c = TestClient(app)
    assert login(c, "ana", "not-the-password").status_code == 401
    assert login(c, "nobody", PASSWORD).status_code == 401
    c.cookies.set("riskpipe_session", "eyJ1Ijoic3VlIiwidCI6OTk5OTk5OTk5OSwiYyI6IngifQ.forged")
    assert c.get("/list", follow_redirects=False).status_code == 303


def test_login_requires_csrf(app) -> None:
    c = TestClient(app)
    c.get("/login")
    r = c.post("/login", data={"username": "ana", "password": PASSWORD})
    assert r.status_code == 403


def test_roles_enforced(analyst: TestClient, supervisor: TestClient) -> None:
    assert analyst.get("/users").status_code == 403
    assert analyst.get("/rules").status_code == 403
    token = csrf_of(analyst.get("/list").text)
    r = analyst.post(
        "/users", data={"csrf": token, "action": "add", "username": "eve", "password": "x" * 10, "role": "supervisor"}
    )
    assert r.status_code == 403
    assert supervisor.get("/users").status_code == 200
    assert supervisor.get("/rules").status_code == 200
    token = csrf_of(supervisor.get("/users").text)
    r = supervisor.post(
        "/users", data={"csrf": token, "action": "add", "username": "eve", "password": "x" * 10, "role": "analyst"}
    )
    assert r.status_code == 200 and "eve" in r.text


def test_csrf_rejected_without_token(app, analyst: TestClient) -> None:
    r = analyst.post(
        "/shipment/S1/outcome", data={"outcome": "fentanyl", "exam_reason": "targeted", "exam_date": "2026-01-06"}
    )
    assert r.status_code == 403
    r = analyst.post("/shipment/S1/outcome", data={"csrf": "wrong", "outcome": "fentanyl", "exam_reason": "targeted"})
    assert r.status_code == 403
    assert (
        analyst.post(
            "/api/outcome", json={S.SHIPMENT_ID: "S1", "outcome": "fentanyl", "exam_reason": "targeted"}
        ).status_code
        == 403
    )
    assert LabelStore(app.state.settings.db_url).current().height == 0


def test_record_outcome_form_and_audit(app, analyst: TestClient) -> None:
    token = csrf_of(analyst.get("/shipment/S1?day=2026-01-06").text)
    r = analyst.post(
        "/shipment/S1/outcome",
        data={
            "csrf": token,
            "outcome": "precursor",
            "exam_reason": "targeted",
            "exam_date": "2026-01-06",
            "notes": "<b>bold</b>",
            "confirm": "yes",
            "examiner": "Officer K",
        },
    )
    assert r.status_code == 200
    assert "Outcome saved" in r.text
    assert "&lt;b&gt;bold&lt;/b&gt;" in r.text and "<b>bold</b>" not in r.text
    cur = LabelStore(app.state.settings.db_url).current()
    assert cur.select(S.SHIPMENT_ID, S.OUTCOME).rows() == [("S1", "precursor")]
    hist = LabelStore(app.state.settings.db_url).history("S1")
    assert [h["actor"] for h in hist] == ["ana"]
    bad = analyst.post("/shipment/S1/outcome", data={"csrf": token, "outcome": "cocaine", "exam_reason": "targeted"})
    assert bad.status_code == 400


def test_concurrent_outcomes_both_in_audit(app) -> None:
    clients = []
    for name in ("ana", "sue"):
        c = TestClient(app)
        login(c, name)
        clients.append((c, csrf_of(c.get("/list").text)))
    barrier = threading.Barrier(2)
    codes: list[int] = []

    def post(c: TestClient, token: str, outcome: str) -> None:
        barrier.wait()
        r = c.post(
            "/api/outcome",
            json={
                S.SHIPMENT_ID: "S2",
                "outcome": outcome,
                "exam_reason": "targeted",
                "exam_date": "2026-01-06",
                "confirm": "yes",
                "examiner": "Officer K",
            },
            headers={"X-CSRF-Token": token},
        )
        codes.append(r.status_code)

    ts = [
        threading.Thread(target=post, args=(c, t, o))
        for (c, t), o in zip(clients, ["fentanyl", "no_finding"], strict=False)
    ]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert codes == [200, 200]
    hist = LabelStore(app.state.settings.db_url).history("S2")
    assert sorted(h["actor"] for h in hist) == ["ana", "sue"]
    assert sorted(h["after"]["outcome"] for h in hist) == ["fentanyl", "no_finding"]
    assert [h["action"] for h in hist] == ["insert", "update"]
    page = clients[0][0].get("/shipment/S2?day=2026-01-06").text
    assert page.count("<td>ana</td>") == 1 and page.count("<td>sue</td>") == 1


def test_xss_payloads_are_inert(analyst: TestClient) -> None:
    for path in ["/list", "/list?view=all", "/shipment/S1?day=2026-01-06", "/shipment/P1"]:
        html = analyst.get(path).text
        assert "<script>alert" not in html and "<img src=x" not in html
    html = analyst.get("/shipment/S1?day=2026-01-06").text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    r = analyst.get("/list")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    # a query string cannot inject markup either
    r = analyst.get('/list?port="><script>alert(2)</script>')
    assert "<script>alert(2)" not in r.text


def test_list_filters_sort_and_pagination(analyst: TestClient) -> None:
    j = analyst.get("/api/list").json()
    assert j["day"] == "2026-01-06" and [r[S.SHIPMENT_ID] for r in j["rows"]] == ["S1", "S3", "S2"]
    j = analyst.get("/api/list?view=all").json()
    assert [r[S.SHIPMENT_ID] for r in j["rows"]] == ["S1", "S3", "S2", "S4"]
    assert [r[S.SHIPMENT_ID] for r in analyst.get("/api/list?view=all&port=2720").json()["rows"]] == ["S2", "S4"]
    assert [r[S.SHIPMENT_ID] for r in analyst.get("/api/list?view=all&selection=none").json()["rows"]] == ["S4"]
    assert [r[S.SHIPMENT_ID] for r in analyst.get("/api/list?reason=rule:vague_description").json()["rows"]] == ["S3"]
    assert [r[S.SHIPMENT_ID] for r in analyst.get("/api/list?network=N1").json()["rows"]] == ["S1", "S2"]
    assert [r[S.SHIPMENT_ID] for r in analyst.get("/api/list?origin=IN&mode=postal").json()["rows"]] == ["S2"]
    assert [r[S.SHIPMENT_ID] for r in analyst.get("/api/list?view=all&sort=risk_score&desc=0").json()["rows"]] == [
        "S4",
        "S2",
        "S3",
        "S1",
    ]
    page2 = analyst.get("/api/list?view=all&sort=risk_score&desc=0&page=2&page_size=25").json()
    assert page2["page"] == 1 and page2["total"] == 4  # past the end: clamped to the last page


def test_csv_export_is_filtered_and_formula_safe(analyst: TestClient) -> None:
    r = analyst.get("/list.csv?origin=MX")
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row[S.SHIPMENT_ID] for row in rows] == ["S3"]
    assert rows[0][S.DESCRIPTION].startswith("'=HYPERLINK")
    assert rows[0][S.REASONS] == "rule:vague_description"
    rows = list(csv.DictReader(io.StringIO(analyst.get("/list.csv?view=all&sort=risk_score&desc=0").text)))
    assert [row[S.SHIPMENT_ID] for row in rows] == ["S4", "S2", "S3", "S1"]


def test_shipment_page_content(analyst: TestClient) -> None:
    html = analyst.get("/shipment/S3?day=2026-01-06").text
    assert "Exportadora SA" in html and "machine parts" in html  # partner side by side
    assert 'class="differs"' in html  # 20 USD declared vs 500 to the partner
    html = analyst.get("/shipment/S1?day=2026-01-06").text
    assert "<svg" in html and "consignee phone" in html  # S2 shares the phone
    assert 'href="/shipment/S2?day=2026-01-06"' in html
    assert "P1" in html and "earlier parcel" in html  # linked party history (same address key)
    assert analyst.get("/shipment/NOPE").status_code == 404


def test_health_without_model(analyst: TestClient) -> None:
    html = analyst.get("/health").text
    assert "No model yet" in html
    assert "<svg" in html


def test_logout_needs_csrf_and_ends_session(analyst: TestClient) -> None:
    assert analyst.post("/logout").status_code == 403
    token = csrf_of(analyst.get("/list").text)
    r = analyst.post("/logout", data={"csrf": token}, follow_redirects=False)
    assert r.status_code == 303
    analyst.cookies.clear()
    assert analyst.get("/list", follow_redirects=False).status_code == 303


def _post_api(client: TestClient, token: str, **values):
    body = {
        S.SHIPMENT_ID: "S1",
        "outcome": "fentanyl",
        "exam_reason": "targeted",
        "exam_date": "2026-01-06",
        "confirm": "yes",
        "examiner": "Officer K",
        **values,
    }
    return client.post("/api/outcome", json=body, headers={"X-CSRF-Token": token})


def test_outcome_for_an_unknown_shipment_is_refused(app, analyst: TestClient) -> None:
    token = csrf_of(analyst.get("/list").text)
    r = _post_api(analyst, token, shipment_id="DOES-NOT-EXIST-123")
    assert r.status_code == 404
    assert "DOES-NOT-EXIST-123" in r.json()["detail"] and "raw store" in r.json()["detail"]
    form = {
        "csrf": token,
        "outcome": "fentanyl",
        "exam_reason": "targeted",
        "exam_date": "2026-01-06",
        "confirm": "yes",
        "examiner": "Officer K",
    }
    r = analyst.post("/shipment/DOES-NOT-EXIST-123/outcome", data=form)
    assert r.status_code == 404 and "DOES-NOT-EXIST-123" in r.text
    store = LabelStore(app.state.settings.db_url)
    assert store.current().height == 0 and store.history("DOES-NOT-EXIST-123") == []
    # a day given with the form that does not hold the shipment is no way around it
    r = analyst.post("/shipment/P1/outcome", data={**form, "day": "2026-01-06"}, follow_redirects=False)
    assert r.status_code == 303  # P1 arrived the day before: found there
    assert store.current()[S.SHIPMENT_ID].to_list() == ["P1"]


def test_future_exam_date_is_refused_with_a_reason(app, analyst: TestClient) -> None:
    from datetime import UTC, datetime, timedelta

    token = csrf_of(analyst.get("/list").text)
    future = (datetime.now(UTC) + timedelta(days=3)).date().isoformat()  # past the tolerance in any time zone
    r = _post_api(analyst, token, exam_date=future)
    assert r.status_code == 400 and "future" in r.json()["detail"] and future in r.json()["detail"]
    r = analyst.post(
        "/shipment/S1/outcome",
        data={"csrf": token, "outcome": "fentanyl", "exam_reason": "targeted", "exam_date": future},
    )
    assert r.status_code == 400 and "future" in r.text
    store = LabelStore(app.state.settings.db_url)
    assert store.current().height == 0 and store.history("S1") == []
    today = datetime.now(UTC).date().isoformat()
    assert _post_api(analyst, token, exam_date=today).status_code == 200


def test_correction_with_an_earlier_exam_date_is_applied_and_audited(app, analyst: TestClient) -> None:
    token = csrf_of(analyst.get("/shipment/S1?day=2026-01-06").text)
    assert _post_api(analyst, token, exam_date="2026-01-07", outcome="fentanyl").status_code == 200
    # the exam was really on the 6th (S1 arrived that day) and found nothing: the correction is recorded later
    r = analyst.post(
        "/shipment/S1/outcome",
        data={
            "csrf": token,
            "outcome": "no_finding",
            "exam_reason": "targeted",
            "exam_date": "2026-01-06",
            "next": "/shipment/S1?day=2026-01-06&saved=1",
        },
    )
    assert r.status_code == 200 and "Outcome saved" in r.text
    store = LabelStore(app.state.settings.db_url)
    cur = store.get("S1")
    assert (cur[S.OUTCOME], cur[S.EXAM_DATE].isoformat()) == ("no_finding", "2026-01-06")
    hist = store.history("S1")
    assert [h["action"] for h in hist] == ["insert", "update"]
    assert hist[1]["before"][S.EXAM_DATE] == "2026-01-07" and hist[1]["after"][S.EXAM_DATE] == "2026-01-06"


def test_an_exam_date_before_the_arrival_is_refused(app, analyst: TestClient) -> None:
    """Review finding: exam_date had no lower bound (0001-01-01 was stored as a training label)."""
    token = csrf_of(analyst.get("/shipment/S1?day=2026-01-06").text)
    for early in ("0001-01-01", "2026-01-05"):  # S1 arrived on 2026-01-06
        r = _post_api(analyst, token, exam_date=early)
        assert r.status_code == 400 and early in r.json()["detail"] and "2026-01-06" in r.json()["detail"]
        assert "\n" not in r.json()["detail"]
        form = {"csrf": token, "outcome": "no_finding", "exam_reason": "targeted", "exam_date": early}
        r = analyst.post("/shipment/S1/outcome", data=form, follow_redirects=False)
        assert r.status_code == 400 and "before the shipment arrived" in r.text
    store = LabelStore(app.state.settings.db_url)
    assert store.current().height == 0 and store.history("S1") == []
    assert _post_api(analyst, token, exam_date="2026-01-06").status_code == 200  # the arrival day itself


def test_resubmitting_the_same_outcome_says_nothing_changed(app, analyst: TestClient) -> None:
    token = csrf_of(analyst.get("/shipment/S1?day=2026-01-06").text)
    assert _post_api(analyst, token).json()["changed"] is True
    again = _post_api(analyst, token)
    assert again.status_code == 200 and again.json()["changed"] is False
    form = {
        "csrf": token,
        "outcome": "fentanyl",
        "exam_reason": "targeted",
        "exam_date": "2026-01-06",
        "next": "/shipment/S1?day=2026-01-06&saved=1",
        "confirm": "yes",
        "examiner": "Officer K",
    }
    r = analyst.post("/shipment/S1/outcome", data=form)
    assert r.status_code == 200 and "No change" in r.text and "Outcome saved" not in r.text
    assert len(LabelStore(app.state.settings.db_url).history("S1")) == 1


def test_an_outcome_must_be_chosen(app, analyst: TestClient) -> None:
    token = csrf_of(analyst.get("/list").text)
    for form in ({}, {"outcome": ""}):
        r = analyst.post(
            "/shipment/S1/outcome", data={"csrf": token, "exam_reason": "targeted", "exam_date": "2026-01-06", **form}
        )
        assert r.status_code == 400 and "choose an outcome" in r.text
    r = _post_api(analyst, token, outcome="")
    assert r.status_code == 400 and "choose an outcome" in r.json()["detail"]
    assert LabelStore(app.state.settings.db_url).current().height == 0


@pytest.mark.parametrize("outcome", S.POSITIVE_OUTCOMES)
def test_a_positive_needs_confirmation_and_an_examiner(app, analyst: TestClient, outcome: str) -> None:
    token = csrf_of(analyst.get("/list").text)
    base = {"csrf": token, "outcome": outcome, "exam_reason": "targeted", "exam_date": "2026-01-06"}
    for extra in (
        {},
        {"confirm": "yes"},
        {"examiner": "Officer K"},
        {"confirm": "no", "examiner": "Officer K"},
        {"confirm": "yes", "examiner": "  "},
    ):
        r = analyst.post("/shipment/S1/outcome", data={**base, **extra})
        assert r.status_code == 400, extra
        assert "positive training label" in r.text and "examiner" in r.text
        r = analyst.post("/api/outcome", json={S.SHIPMENT_ID: "S1", **base, **extra}, headers={"X-CSRF-Token": token})
        assert r.status_code == 400 and "confirm" in r.json()["detail"]
    store = LabelStore(app.state.settings.db_url)
    assert store.current().height == 0 and store.history("S1") == []
    r = analyst.post(
        "/shipment/S1/outcome", data={**base, "confirm": "yes", "examiner": "Officer K"}, follow_redirects=False
    )
    assert r.status_code == 303
    assert store.current().select(S.OUTCOME, S.EXAMINER).rows() == [(outcome, "Officer K")]


def test_a_negative_outcome_needs_no_confirmation(app, analyst: TestClient) -> None:
    token = csrf_of(analyst.get("/list").text)
    r = analyst.post(
        "/shipment/S2/outcome",
        data={"csrf": token, "outcome": "no_finding", "exam_reason": "targeted", "exam_date": "2026-01-06"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert LabelStore(app.state.settings.db_url).current().select(S.OUTCOME).rows() == [("no_finding",)]


def test_list_filters_round_trip_through_the_url(analyst: TestClient) -> None:
    import html as htmlmod
    import re
    from urllib.parse import parse_qs, unquote, urlsplit

    r = analyst.get("/list?day=2026-01-06&view=all&port=2720&mode=postal&page_size=25&sort=risk_score&desc=0")
    page = r.text
    for name, value in (("port", "2720"), ("mode", "postal"), ("page_size", "25"), ("view", "all")):
        assert re.search(rf'<select name="{name}">.*?<option value="{value}"[^>]*selected', page, re.S), name
    assert re.search(r'name="sort" value="risk_score"', page) and re.search(r'name="desc" value="0"', page)
    wanted = {
        "day": ["2026-01-06"],
        "view": ["all"],
        "port": ["2720"],
        "mode": ["postal"],
        "page_size": ["25"],
        "sort": ["risk_score"],
        "desc": ["0"],
    }
    nexts = re.findall(r'name="next" value="([^"]+)"', page)
    assert nexts and all(
        {k: v for k, v in parse_qs(urlsplit(htmlmod.unescape(n)).query).items() if k != "page"} == wanted for n in nexts
    )
    backs = re.findall(r'href="/shipment/[^"]*&amp;back=([^"]+)"', page)
    assert backs
    back = unquote(htmlmod.unescape(backs[0]))
    assert {k: v for k, v in parse_qs(urlsplit(back).query).items() if k != "page"} == wanted
    # the shipment page leads back to the same filtered list (and only to a list page)
    ship = analyst.get("/shipment/S2", params={"day": "2026-01-06", "back": back}).text
    assert 'id="back">' in ship and htmlmod.escape(back) in ship
    evil = analyst.get("/shipment/S2", params={"day": "2026-01-06", "back": "https://evil.example/list?"}).text
    assert "evil.example" not in evil


def test_health_page_kpis_first_matplotlib_charts_metadata_folded(app, analyst: TestClient) -> None:
    import json
    from pathlib import Path

    from riskpipe.web import svg

    models = Path(app.state.settings.models_dir)
    (models / "m1").mkdir(parents=True)
    meta = {"feature_schema": {f"f{i}": "Float64" for i in range(87)}, "evaluation": {"precision_at_100": 0.42}}
    (models / "m1" / "meta.json").write_text(json.dumps(meta))
    (models / "champion.json").write_text(json.dumps({"version": "m1"}))
    token = csrf_of(analyst.get("/list").text)
    for sid, outcome in (("S1", "fentanyl"), ("S3", "no_finding"), ("S2", "no_finding")):
        body = {
            S.SHIPMENT_ID: sid,
            "outcome": outcome,
            "exam_reason": "random",
            "exam_date": "2026-01-06",
            "confirm": "yes",
            "examiner": "K",
        }
        assert analyst.post("/api/outcome", json=body, headers={"X-CSRF-Token": token}).status_code == 200
    html = analyst.get("/health").text
    assert html.index('id="kpis"') < html.index("<svg") < html.index('id="metadata"')  # KPIs first, metadata last
    assert "33.3%" in html and "hit rate, random exams" in html  # 1 of 3 random exams
    assert html.count("Created with Matplotlib") >= 5
    assert re.search(r'<details id="metadata"><summary>\d+ fields', html)  # the feature_schema rows folded away
    assert "e+0" not in html  # no scientific notation on the axes
    assert not hasattr(svg, "line_chart") and not hasattr(svg, "histogram")  # no hand-drawn charts left


def test_health_chart_labels_from_data_are_escaped(app, analyst: TestClient) -> None:
    import polars as pl

    from riskpipe.store import Layout, write_parquet_atomic

    layout = Layout(app.state.settings.home)
    path = layout.day_dir(layout.targets, DAY) / "targets.parquet"
    t = pl.read_parquet(path).with_columns(pl.lit(XSS).alias(S.PORT_OF_ENTRY))
    write_parquet_atomic(t, path)
    html = analyst.get("/health").text
    assert XSS not in html and "<script>" not in html
    assert "&lt;script&gt;" in html
