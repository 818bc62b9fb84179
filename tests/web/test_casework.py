"""Issue 17, points 3 and 4 through the API: search pages, watchlist, saved views, case work
audited, the supervisors' audit page, rule feedback with known counts, rule editing (validation
with the loader's message, a diff, an audit row, stale edits refused), CSRF on every POST."""

from __future__ import annotations

import warnings

import polars as pl
import pytest

from riskpipe import schema as S
from riskpipe.cases import CaseStore
from riskpipe.labels import LabelStore
from riskpipe.store import Layout, write_parquet_atomic

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from riskpipe.web import create_app

from .conftest import DAY, PREV, XSS, csrf_of, login


@pytest.fixture()
def app(home_settings):
    return create_app(home_settings)


def _client(app, who: str) -> TestClient:
    c = TestClient(app)
    assert login(c, who).status_code == 303
    return c


@pytest.fixture()
def analyst(app) -> TestClient:
    return _client(app, "ana")


@pytest.fixture()
def supervisor(app) -> TestClient:
    return _client(app, "sue")


def _token(c: TestClient) -> str:
    return csrf_of(c.get("/search").text)


def test_search_page_lists_every_shipment_of_the_party_escaped_and_audited(analyst, home_settings) -> None:
    r = analyst.get("/search", params={"q": "(555) 0101"})
    assert r.status_code == 200
    assert 'href="/shipment/S1?day=2026-01-06"' in r.text and 'href="/shipment/S2?day=2026-01-06"' in r.text
    assert "S3" not in r.text.split('id="summary"')[1].split("<h2>")[0]
    assert "phone: 5550101" in r.text
    assert XSS not in r.text and "&lt;script&gt;" in r.text  # S1's description, escaped
    assert "0.910" in r.text  # the night's risk score beside the result
    log = CaseStore(home_settings.db_url).access_log(action="search")
    assert [(a["actor"], a["target"]) for a in log] == [("ana", "(555) 0101")]
    assert analyst.get("/search", params={"q": "x", "kind": "bogus"}).status_code == 400


def test_search_shows_outcomes(analyst, home_settings) -> None:
    LabelStore(home_settings.db_url).record_one("S2", DAY, "no_finding", "targeted", "ana", None, None)
    r = analyst.get("/search", params={"q": "555-0101"})
    assert "no_finding (2026-01-06)" in r.text


def test_watchlist_and_saved_views(analyst, home_settings) -> None:
    t = _token(analyst)
    r = analyst.post(
        "/watchlist",
        data={"csrf": t, "action": "add", "kind": "phone", "value": "+1 (555) 010-1999"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    entries = CaseStore(home_settings.db_url).watchlist()
    assert [(e["kind"], e["value"], e["added_by"]) for e in entries] == [("phone", "5550101999", "ana")]
    assert "5550101999" in analyst.get("/watchlist").text
    analyst.post("/views", data={"csrf": t, "action": "save", "name": "<b>port 2720</b>", "url": "/list?port=2720"})
    page = analyst.get("/views").text
    assert 'href="/list?port=2720"' in page and "&lt;b&gt;port 2720&lt;/b&gt;" in page
    r = analyst.post("/views", data={"csrf": t, "action": "save", "name": "evil", "url": "//evil.example/x"})
    assert "workbench address" in r.text
    assert [v["name"] for v in CaseStore(home_settings.db_url).views("ana")] == ["<b>port 2720</b>"]
    assert CaseStore(home_settings.db_url).views("sue") == []


def test_assignment_status_and_notes_are_audited(analyst, supervisor, home_settings) -> None:
    ts, ta = _token(supervisor), _token(analyst)
    assert (
        supervisor.post(
            "/case/S1", data={"csrf": ts, "action": "assign", "assignee": "ana"}, follow_redirects=False
        ).status_code
        == 303
    )
    assert (
        analyst.post(
            "/case/S1", data={"csrf": ta, "action": "status", "status": "examined"}, follow_redirects=False
        ).status_code
        == 303
    )
    analyst.post("/case/S1", data={"csrf": ta, "action": "note", "note": XSS})
    # an analyst cannot hand a case to someone else
    assert analyst.post("/case/S1", data={"csrf": ta, "action": "assign", "assignee": "sue"}).status_code == 403
    assert (
        analyst.post("/case/S1", data={"csrf": ta, "action": "status", "status": "lost"}).text.count(
            "case status must be one of"
        )
        == 1
    )
    audit = CaseStore(home_settings.db_url).case_audit("S1")
    assert [(a["actor"], a["action"], a["before"], a["after"]) for a in audit] == [
        ("sue", "assign", '{"assignee": null}', '{"assignee": "ana"}'),
        ("ana", "status", '{"status": "open"}', '{"status": "examined"}'),
        ("ana", "note", None, '{"note": ' + __import__("json").dumps(XSS) + "}"),
    ]
    page = analyst.get("/case/S1").text
    assert 'id="status">examined' in page and 'id="assignee">ana' in page
    assert XSS not in page and "&lt;script&gt;" in page
    assert "S1" in analyst.get("/cases").text
    assert analyst.get("/case/NOPE").status_code == 404


def test_audit_page_is_for_supervisors_and_shows_views_exports_searches(analyst, supervisor) -> None:
    assert analyst.get(f"/shipment/S1?day={DAY}").status_code == 200
    assert analyst.get(f"/list.csv?day={DAY}").status_code == 200
    analyst.get("/search", params={"q": "Pat Doe"})
    assert analyst.get("/audit").status_code == 403
    assert TestClient(analyst.app).get("/audit", follow_redirects=False).status_code == 303
    page = supervisor.get("/audit").text
    rows = page.split('id="access"')[1].split("</table>")[0]
    assert "view_shipment" in rows and ">S1<" in rows and "export_csv" in rows and "Pat Doe" in rows
    assert rows.count("<td>ana</td>") == 3


def test_the_list_api_is_audited_as_an_export(analyst, supervisor) -> None:
    """Review finding: /api/list hands out the same rows as /list.csv, page by page, unaudited."""
    assert analyst.get("/api/list", params={"day": str(DAY)}).status_code == 200
    rows = supervisor.get("/audit").text.split('id="access"')[1].split("</table>")[0]
    assert "export_api" in rows and "/api/list?" in rows and rows.count("<td>ana</td>") == 1


@pytest.mark.parametrize("url", ["/\t/evil.example", "/\n/evil.example", "/ /evil.example"])
def test_a_saved_view_with_a_control_character_cannot_point_off_site(analyst, url: str) -> None:
    """Review finding: browsers drop tabs and newlines, so "/<TAB>/evil" became "//evil"."""
    r = analyst.post("/views", data={"csrf": _token(analyst), "action": "save", "name": "odd", "url": url})
    assert "workbench address" in r.text
    assert "evil.example" not in analyst.get("/views").text


def _rule_home(settings) -> None:
    """A second night of scores and three outcomes (conftest: S1 precursor_cas + model, S3
    vague_description; targets S1, S3, S2; here S3 becomes the exploration pick)."""
    layout = Layout(settings.home)
    tpath = layout.day_dir(layout.targets, DAY) / "targets.parquet"
    targets = pl.read_parquet(tpath)
    sel = pl.when(pl.col(S.SHIPMENT_ID) == "S3").then(pl.lit("exploration")).otherwise(pl.lit("risk"))
    write_parquet_atomic(targets.with_columns(sel.cast(targets.schema[S.SELECTION]).alias(S.SELECTION)), tpath)
    prev = pl.DataFrame(
        {
            S.SHIPMENT_ID: ["P1"],
            S.RISK_SCORE: [0.5],
            S.RULE_SCORE: [1.0],
            S.REASONS: [["rule:precursor_cas"]],
            S.MODEL_VERSION: ["v1"],
        },
        schema=S.SCORES_SCHEMA,
    )
    write_parquet_atomic(prev, layout.day_dir(layout.scores, PREV) / "scores.parquet")
    labels = LabelStore(settings.db_url)
    labels.record_one("S1", DAY, "fentanyl", "targeted", "ana", "E1", None)
    labels.record_one("S3", DAY, "no_finding", "targeted", "ana", "E1", None)  # an exploration pick
    labels.record_one("P1", PREV, "precursor", "random", "ana", "E2", None)


def test_rule_stats_on_known_counts(home_settings) -> None:
    from riskpipe.rulestats import rule_stats, wilson

    _rule_home(home_settings)
    stats, per_night = rule_stats(Layout(home_settings.home), LabelStore(home_settings.db_url).current())
    got = {r["code"]: r for r in stats.iter_rows(named=True)}
    assert set(got) == {"rule:precursor_cas", "rule:vague_description"}  # model: codes are not rules
    p = got["rule:precursor_cas"]
    assert (
        p["hits"],
        p["nights"],
        p["exams"],
        p["exams_caused"],
        p["findings"],
        p["random_exams"],
        p["random_findings"],
    ) == (2, 2, 2, 1, 2, 1, 1)
    v = got["rule:vague_description"]
    assert (v["hits"], v["exams"], v["exams_caused"], v["findings"], v["random_exams"], v["random_findings"]) == (
        1,
        1,
        1,
        0,
        1,
        0,
    )
    assert (
        v["precision"] == 0.0
        and v["precision_lo"] == 0.0
        and v["precision_hi"] == pytest.approx(3.8415 / 4.8415, abs=1e-4)
    )
    assert p["precision"] == 1.0 and p["precision_lo"] == pytest.approx(wilson(2, 2)[0]) and p["precision_hi"] == 1.0
    assert sorted(per_night.iter_rows()) == [
        (PREV, "rule:precursor_cas", 1),
        (DAY, "rule:precursor_cas", 1),
        (DAY, "rule:vague_description", 1),
    ]


def test_rules_page_shows_stats_and_is_for_supervisors(analyst, supervisor, home_settings) -> None:
    _rule_home(home_settings)
    assert analyst.get("/rules").status_code == 403
    page = supervisor.get("/rules").text
    row = page.split('data-code="rule:vague_description"')[1].split("</tr>")[0]
    assert '<td class="exams">1</td>' in row and '<td class="findings">0</td>' in row and "0.0 % (0.0–79.3)" in row
    assert "PRECURSOR_NAMED" in page  # the rules text in the editor (shipped rules)


GOOD_RULE = """[[rule]]
code = "HEAVY"
text = "Heavy parcel <b>"
weight = 0.2
all = [ { field = "gross_weight_kg", op = "gt", value = 10 } ]
"""


def test_rule_edit_validates_diffs_saves_atomically_and_audits(supervisor, home_settings) -> None:
    from riskpipe.errors import RiskpipeError
    from riskpipe.rules import load_rules, parse_rules, rules_file

    page = supervisor.get("/rules").text
    t = csrf_of(page)
    base = page.split('name="base_sha" value="')[1].split('"')[0]
    target = home_settings.home / "rules.toml"
    bad = GOOD_RULE.replace('"gross_weight_kg"', '"no_such_field"')
    with pytest.raises(RiskpipeError) as exc:
        parse_rules(bad, str(target))
    r = supervisor.post("/rules/preview", data={"csrf": t, "base_sha": base, "text": bad})
    assert r.status_code == 400
    import html

    assert "\n" not in str(exc.value) and str(exc.value) in html.unescape(
        r.text.split('id="rule-error">')[1].split("</p>")[0]
    )
    assert "/rules/save" not in r.text
    r = supervisor.post("/rules/preview", data={"csrf": t, "base_sha": base, "text": GOOD_RULE})
    assert r.status_code == 200 and 'id="diff"' in r.text
    assert (
        "+code = &#34;HEAVY&#34;" in r.text
        and "-code = &#34;PRECURSOR_NAMED&#34;" in r.text
        and "<b>" not in r.text.split('id="diff"')[1]
    )
    assert not target.exists()  # nothing saved by a preview
    assert supervisor.post("/rules/save", data={"csrf": t, "base_sha": "0" * 64, "text": GOOD_RULE}).status_code == 409
    assert supervisor.post("/rules/save", data={"csrf": t, "base_sha": base, "text": bad}).status_code == 400
    r = supervisor.post("/rules/save", data={"csrf": t, "base_sha": base, "text": GOOD_RULE}, follow_redirects=False)
    assert r.status_code == 303
    assert rules_file(home_settings) == target and [x.code for x in load_rules(rules_file(home_settings)).rules] == [
        "HEAVY"
    ]
    edits = CaseStore(home_settings.db_url).rule_edits()
    assert len(edits) == 1 and edits[0]["actor"] == "sue" and '+code = "HEAVY"' in edits[0]["diff"]
    assert "HEAVY" in supervisor.get("/audit").text


def test_two_saves_from_the_same_version_one_wins_the_other_gets_409(app, home_settings, monkeypatch) -> None:
    """Review finding: the base_sha check and the write were not atomic, so two supervisors
    saving from the same version both succeeded and one edit was silently lost."""
    import threading
    import time

    from riskpipe.web.routes import rules as rules_routes

    real_parse = rules_routes.parse_rules

    def slow_parse(*a, **k):
        time.sleep(0.3)  # widen the window between the check and the write
        return real_parse(*a, **k)

    monkeypatch.setattr(rules_routes, "parse_rules", slow_parse)
    clients = [_client(app, "sue"), _client(app, "sue")]
    page = clients[0].get("/rules").text
    base = page.split('name="base_sha" value="')[1].split('"')[0]
    codes: dict[str, int] = {}

    def save(c: TestClient, code: str) -> None:
        text = GOOD_RULE.replace("HEAVY", code)
        r = c.post("/rules/save", data={"csrf": _token(c), "base_sha": base, "text": text}, follow_redirects=False)
        codes[code] = r.status_code

    threads = [
        threading.Thread(target=save, args=(c, code)) for c, code in zip(clients, ["HEAVY_A", "HEAVY_B"], strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes.values()) == [303, 409]
    winner = next(code for code, status in codes.items() if status == 303)
    saved = (home_settings.home / "rules.toml").read_text()
    assert winner in saved and ({"HEAVY_A", "HEAVY_B"} - {winner}).pop() not in saved
    assert len(CaseStore(home_settings.db_url).rule_edits()) == 1
    lock = home_settings.home / "rules.toml.lock"
    assert lock.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    "path,data",
    [
        ("/views", {"action": "save", "name": "n", "url": "/list"}),
        ("/watchlist", {"action": "add", "kind": "phone", "value": "5550101"}),
        ("/case/S1", {"action": "note", "note": "x"}),
        ("/rules/preview", {"text": GOOD_RULE}),
        ("/rules/save", {"text": GOOD_RULE, "base_sha": "x"}),
    ],
)
def test_every_post_needs_csrf(supervisor, home_settings, path: str, data: dict) -> None:
    assert supervisor.post(path, data=data).status_code == 403
    assert supervisor.post(path, data={**data, "csrf": "forged"}).status_code == 403
    store = CaseStore(home_settings.db_url)
    assert store.watchlist() == [] and store.views("sue") == [] and store.notes("S1") == [] and store.rule_edits() == []


@pytest.mark.parametrize("path", ["/search", "/cases", "/case/S1", "/watchlist", "/views", "/audit", "/rules"])
def test_new_pages_need_login(app, path: str) -> None:
    r = TestClient(app).get(path, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")


@pytest.mark.parametrize(("path", "action"), [("/views", "delete"), ("/watchlist", "remove")])
@pytest.mark.parametrize("bad", ["9999999999999999999999999", str(2**63), "-9999999999999999999999999"])
def test_an_id_beyond_the_database_range_is_a_400_not_a_500(analyst, path: str, action: str, bad: str) -> None:
    """Review finding: an id past 2**63-1 overflowed in the database driver (500)."""
    t = _token(analyst)
    analyst.post("/watchlist", data={"csrf": t, "action": "add", "kind": "phone", "value": "5550101999"})
    analyst.post("/views", data={"csrf": t, "action": "save", "name": "mine", "url": "/list"})
    r = analyst.post(path, data={"csrf": t, "action": action, "id": bad}, follow_redirects=False)
    assert r.status_code == 400
    assert "5550101999" in analyst.get("/watchlist").text and "mine" in analyst.get("/views").text
