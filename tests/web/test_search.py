"""Search by identifier (issue 17, point 3): the query is normalised as the party keys are, the
per-day index finds every shipment of the party across days and is private; a watchlisted
identifier flags its shipments as a WATCHLIST reason, point in time."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta

import polars as pl

from riskpipe import schema as S
from riskpipe.store import Layout, write_parquet_atomic

from .conftest import DAY, PREV, raw_rows


def _home(tmp_path):
    from .conftest import build_home

    settings = build_home(tmp_path / "home")
    layout = Layout(settings.home)
    extra = raw_rows(
        PREV,
        [
            {
                S.SHIPMENT_ID: "P1",
                S.CONSIGNEE_ADDRESS_KEY: "k1",
                S.DESCRIPTION: "earlier parcel",
                S.CONSIGNEE_PHONE: "(555) 0101",
                S.CONSIGNEE_EMAIL: "Pat.Doe@Example.COM",
                S.ACCOUNT_IP: " 10.0.0.7 ",
            },
            {
                S.SHIPMENT_ID: "P2",
                S.CONSIGNEE_NAME: "Someone Else",
                S.SHIPPER_NAME: "Other Co",
                S.CONSIGNEE_ADDRESS: "9 Elm",
                S.CONSIGNEE_PHONE: "999-1234567",
                S.SELLER_ID: "SELLER-9",
            },
        ],
    )
    write_parquet_atomic(extra, layout.raw_shipments_day(PREV) / "part-0.parquet")
    return settings, layout


def test_query_normalised_like_the_party_keys() -> None:
    from riskpipe.search import normalise, query_kinds

    assert normalise("phone", "+1 (555) 010-1999") == "5550101999"
    assert normalise("email", "  Pat.Doe@Example.COM ") == "pat.doe@example.com"
    assert normalise("name", "PAT   DOE!") == "pat doe"
    assert "phone" not in query_kinds("Pat Doe 12")  # letters: not a phone number
    assert query_kinds("555-0101", "phone") == {"phone": "5550101"}


def test_search_finds_the_party_across_days_and_index_is_private(tmp_path) -> None:
    from riskpipe.search import index_path, search

    settings, layout = _home(tmp_path)
    _, found = search(layout, "555 0101")  # S1 and S2 today, P1 the day before (written "(555) 0101")
    assert sorted(found[S.SHIPMENT_ID].to_list()) == ["P1", "S1", "S2"]
    assert found[S.ARRIVAL_DATE].to_list()[0] == DAY  # newest first
    assert set(found.filter(pl.col(S.SHIPMENT_ID) == "P1")["matched"]) == {"consignee phone"}
    _, by_mail = search(layout, "pat.doe@EXAMPLE.com")
    assert by_mail[S.SHIPMENT_ID].to_list() == ["P1"]
    _, by_ip = search(layout, "10.0.0.7")
    assert by_ip[S.SHIPMENT_ID].to_list() == ["P1"]
    _, by_name = search(layout, "pat doe", kind="name")
    assert {"S1", "S2", "S3", "S4", "P1"} <= set(by_name[S.SHIPMENT_ID].to_list()) and "P2" not in by_name[
        S.SHIPMENT_ID
    ].to_list()
    _, by_seller = search(layout, "seller-9")
    assert by_seller[S.SHIPMENT_ID].to_list() == ["P2"]
    _, none = search(layout, "no such person")
    assert none.height == 0
    path = index_path(layout, PREV)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_reingested_day_gets_a_fresh_index(tmp_path) -> None:
    import os

    from riskpipe.search import index_path, search

    _, layout = _home(tmp_path)
    first = index_path(layout, PREV)
    again = raw_rows(PREV, [{S.SHIPMENT_ID: "P9", S.CONSIGNEE_PHONE: "555-0101"}])
    f = layout.raw_shipments_day(PREV) / "part-0.parquet"
    write_parquet_atomic(again, f)
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 1_000_000))
    _, found = search(layout, "5550101")
    assert "P9" in found[S.SHIPMENT_ID].to_list() and "P1" not in found[S.SHIPMENT_ID].to_list()
    assert not first.exists() and index_path(layout, PREV) != first


def test_watchlist_flags_shipments_point_in_time(tmp_path) -> None:
    from riskpipe.cases import CaseStore, cutoff
    from riskpipe.rank import load_reason_texts, reason_text_expr
    from riskpipe.search import WATCHLIST_CODE, normalise, watchlist_step

    settings, layout = _home(tmp_path)
    now = [cutoff(DAY) - timedelta(hours=3)]
    store = CaseStore(settings.db_url, clock=lambda: now[0])
    store.watch("phone", normalise("phone", "(555) 0101"), "sue")  # before DAY's cut-off
    now[0] = cutoff(DAY) + timedelta(minutes=5)
    store.watch("name", normalise("name", "Pat Doe"), "sue")  # after it: not for DAY
    scored = pl.DataFrame(
        {
            S.SHIPMENT_ID: ["S1", "S2", "S3", "S4"],
            S.REASONS: [["PRECURSOR_NAMED"], [], ["X1", "X2", "X3", "X4", "X5"], []],
        },
        schema={S.SHIPMENT_ID: pl.String, S.REASONS: pl.List(pl.String)},
    )
    out = watchlist_step(layout, settings, DAY, scored)
    reasons = dict(zip(out[S.SHIPMENT_ID], out[S.REASONS].to_list(), strict=True))
    assert reasons == {
        "S1": [WATCHLIST_CODE, "PRECURSOR_NAMED"],
        "S2": [WATCHLIST_CODE],
        "S3": ["X1", "X2", "X3", "X4", "X5"],
        "S4": [],
    }
    # the day after, the name entry counts too (every shipment here is consigned to Pat Doe)
    assert cutoff(DAY) < datetime.now(UTC)
    later = watchlist_step(layout, settings, DAY + timedelta(days=1), scored)  # no raw data that day
    assert later[S.REASONS].to_list() == scored[S.REASONS].to_list()
    entries = store.watchlist_at(cutoff(DAY + timedelta(days=1)))
    assert ("name", "pat doe") in entries
    # a removal after the cut-off does not change DAY
    store.unwatch(store.watchlist()[-1]["id"], "sue")
    assert watchlist_step(layout, settings, DAY, scored)[S.REASONS].to_list() == out[S.REASONS].to_list()
    text = out.select(reason_text_expr(load_reason_texts({}))).to_series().to_list()
    assert "watchlist" in text[0].lower()


def test_bench_search_builds_the_indexes_then_times_each_query(tmp_path) -> None:
    from riskpipe.bench.search import bench_search
    from riskpipe.search import ready_index_path, search_days

    _, layout = _home(tmp_path)
    out = bench_search(layout, ["555 0101", "seller-9", "no such person"], repeat=2)
    assert out["n"] == 6
    assert 0 < out["p50_s"] <= out["p95_s"] <= out["max_s"]
    assert out["cpu"]["n"] == 6 and out["found"] == 3  # "555 0101": S1, S2 and P1
    assert all(ready_index_path(layout, d) is not None for d in search_days(layout))  # built before the clock
    # several identifier kinds, each reported apart, over the last day only
    kinds = bench_search(layout, [("555 0101", "phone"), ("pat doe", "name"), ("seller-9", "")], n_days=1)
    assert kinds["days"] == 1 and kinds["n"] == 3
    assert set(kinds["by_kind"]) == {"phone", "name", "any"} and kinds["by_kind"]["phone"]["n"] == 1


def test_an_older_builder_never_deletes_the_current_index(tmp_path, monkeypatch) -> None:
    """Review finding: the watcher's build of the day as it was (before the nightly ingest landed
    a new part) deleted every other index file, the nightly's current one included, which the
    nightly had just built and was reading."""
    import threading

    from riskpipe import search as sm

    _, layout = _home(tmp_path)
    real_build = sm.build_index
    building, go_on = threading.Event(), threading.Event()

    def gated_build(layout_, day):
        frame = real_build(layout_, day)  # the day as the watcher saw it
        if threading.current_thread().name == "watcher":
            building.set()
            go_on.wait(timeout=10)
        return frame

    monkeypatch.setattr(sm, "build_index", gated_build)
    got: dict[str, object] = {}
    watcher = threading.Thread(target=lambda: got.setdefault("w", sm.index_path(layout, DAY)), name="watcher")
    watcher.start()
    assert building.wait(timeout=10)
    # the nightly ingest lands a new part for the day, then the nightly builds and reads its index
    part = raw_rows(DAY, [{S.SHIPMENT_ID: "S9", S.CONSIGNEE_PHONE: "555-0101"}])
    write_parquet_atomic(part, layout.raw_shipments_day(DAY) / "part-1.parquet")
    sm._FP_CACHE.clear()
    nightly = threading.Thread(target=lambda: got.setdefault("n", sm.index_path(layout, DAY)), name="nightly")
    nightly.start()
    nightly.join(timeout=2)  # without the lock it finishes now; with it, it waits for the watcher
    go_on.set()
    watcher.join(timeout=30)
    nightly.join(timeout=30)
    current = got["n"]
    assert isinstance(current, type(layout.home)) and current.exists()  # the current index is still there
    assert "S9" in sm._shipment_ids(current, pl.read_parquet(current)["row"]).to_list()
    assert (current.parent / "build.lock").stat().st_mode & 0o077 == 0


def test_a_reader_whose_index_was_replaced_rebuilds_instead_of_failing(tmp_path, monkeypatch) -> None:
    """The other half of the finding: a file resolved, then deleted by another builder before it
    is read, is resolved (rebuilt) again."""
    from riskpipe import search as sm

    _, layout = _home(tmp_path)
    real_index_path = sm.index_path
    removed: list[object] = []

    def replaced_once(layout_, day):
        path = real_index_path(layout_, day)
        if path is not None and not removed:
            path.unlink()  # another builder's clean-up, between resolving the file and reading it
            removed.append(path)
        return path

    monkeypatch.setattr(sm, "index_path", replaced_once)
    _, found = sm.search(layout, "555 0101")
    assert removed and sorted(found[S.SHIPMENT_ID].to_list()) == ["P1", "S1", "S2"]
    removed.clear()
    assert sm.watchlisted_ids(layout, DAY, [("phone", "5550101")]) == {"S1", "S2"}
    assert removed


def test_the_pages_candidate_rows_survive_an_index_replaced_before_the_read(tmp_path, monkeypatch) -> None:
    """The shipment page's reader of ready indexes (column_candidates): a file deleted between
    resolving and reading it is resolved again (here: none ready, so the day is scanned) rather
    than failing the page."""
    from riskpipe import search as sm

    _, layout = _home(tmp_path)
    sm.index_path(layout, DAY)
    real_ready = sm.ready_index_path
    removed: list[object] = []

    def replaced_once(layout_, day):
        path = real_ready(layout_, day)
        if path is not None and not removed:
            removed.append(path)
            path.unlink()  # another builder's clean-up (its newer index not ready yet)
        return path

    monkeypatch.setattr(sm, "ready_index_path", replaced_once)
    pairs, full = sm.column_candidates(layout, [DAY], {S.CONSIGNEE_PHONE: "555-0101"})
    assert removed and full == [DAY] and pairs is None  # the day is scanned in full, as an unindexed one


def test_index_equals_every_normalised_identifier_once_in_hash_then_field_order(tmp_path) -> None:
    """The index build reads the day once and joins ids by position (a speed-up): its entries are
    still every (field, hash of the normalised value, shipment id) once, sorted by hash then field,
    when two fields share a value (same hash, two fields) and when a day repeats an id."""
    from riskpipe.search import _SEED, FIELDS, build_index, normaliser

    settings, layout = _home(tmp_path)
    same = {S.CONSIGNEE_NAME: "Acme Co", S.SHIPPER_NAME: "ACME CO", S.CONSIGNEE_ADDRESS: "acme co"}
    rows = [{S.SHIPMENT_ID: f"Z{i}", **(same if i % 2 else {}), S.SELLER_ID: f"s{i % 3}"} for i in range(12)]
    path = layout.raw_shipments_day(DAY) / "part-1.parquet"
    for dup in (False, True):
        write_parquet_atomic(raw_rows(DAY, rows + (rows[:3] if dup else [])), path)
        raw = pl.read_parquet(list(layout.raw_shipments_day(DAY).glob("*.parquet")))
        want = (
            pl.concat(
                [
                    raw.select(pl.lit(code, pl.UInt8).alias("field"), normaliser(kind, col).alias("v"), S.SHIPMENT_ID)
                    .filter(pl.col("v").is_not_null() & (pl.col("v") != ""))
                    .select("field", pl.col("v").hash(seed=_SEED).alias("h"), S.SHIPMENT_ID)
                    for code, (_label, kind, col) in FIELDS.items()
                ]
            )
            .unique()
            .sort("h", "field", S.SHIPMENT_ID)
        )
        index = build_index(layout, DAY)
        assert index.ids.len() == index.details.height == raw.height  # one row each
        got = index.entries.select("field", "h", index.ids.gather(index.entries["row"]).alias(S.SHIPMENT_ID))
        assert got.schema == want.schema
        assert got.sort("h", "field", S.SHIPMENT_ID).equals(want)  # each entry once, duplicates or not
        assert got.equals(got.sort("h", "field", maintain_order=True))  # hash then field order
        # a row's details are its raw row's (what a result shows of the shipment)
        shown = index.details.with_columns(index.ids).join(
            raw.unique(S.SHIPMENT_ID).select(S.SHIPMENT_ID, pl.col(S.CONSIGNEE_NAME).alias("raw")), on=S.SHIPMENT_ID
        )
        assert shown.height == raw.height and shown[S.CONSIGNEE_NAME].equals(shown["raw"].rename(S.CONSIGNEE_NAME))
        shared = want.group_by("h").agg(pl.col("field").n_unique()).filter(pl.col("field") > 1)
        assert shared.height > 0  # the case of one value in two fields is exercised


def test_search_never_opens_a_raw_day_once_its_index_is_built(tmp_path, monkeypatch) -> None:
    """Issue 17's 1 s p95: reading each hit's details from the raw days (about 0.1 s a day with
    hits on the 4 M-row home) was most of a search; the index carries what the page shows. The
    answer is that of the raw rows (the description cut to what the page shows)."""
    from riskpipe import search as sm

    settings, layout = _home(tmp_path)
    long = raw_rows(PREV, [{S.SHIPMENT_ID: "P3", S.SELLER_ID: "SELLER-9", S.DESCRIPTION: "x" * 100 + "<b>"}])
    write_parquet_atomic(long, layout.raw_shipments_day(PREV) / "part-1.parquet")
    for d in layout.raw_days():
        sm.index_path(layout, d)
    raw = pl.concat(
        [pl.read_parquet(list(layout.raw_shipments_day(d).glob("*.parquet"))) for d in layout.raw_days()],
        how="vertical_relaxed",
    )

    def no_raw(*_a, **_k):
        raise AssertionError("a raw day was opened")

    monkeypatch.setattr(sm, "scan_raw_shipments", no_raw)
    monkeypatch.setattr(pl, "scan_parquet", _only_index(pl.scan_parquet))
    queries = [("555 0101", ""), ("pat doe", "name"), ("seller-9", ""), ("no such person", "")]
    for q, k in queries:
        _, got = sm.search(layout, q, k)
        want = (
            got.select(S.ARRIVAL_DATE, S.SHIPMENT_ID)
            .join(raw, on=[S.ARRIVAL_DATE, S.SHIPMENT_ID], how="left")
            .select(
                S.CONSIGNEE_NAME,
                S.SHIPPER_NAME,
                pl.col(S.DESCRIPTION).str.slice(0, sm.DESCRIPTION_CHARS),
                pl.col(S.PORT_OF_ENTRY).cast(pl.String),
            )
        )
        assert got.select(want.columns).equals(want)
        if q == "seller-9":
            assert got[S.SHIPMENT_ID].to_list() == ["P2", "P3"] and got[S.DESCRIPTION][1] == "x" * 80


def _only_index(scan):
    def guarded(source, *a, **k):
        files = source if isinstance(source, list) else [source]
        assert all("/index/search/" in str(f) for f in files), files
        return scan(source, *a, **k)

    return guarded


def test_a_search_counts_every_match_and_reads_one_page_newest_first(tmp_path) -> None:
    """A seller with thousands of parcels must not make a page slow: every match is counted, the
    details of one page are read; pages follow one another without overlap."""
    from riskpipe import search as sm

    _, layout = _home(tmp_path)
    many = raw_rows(DAY, [{S.SHIPMENT_ID: f"M{i:02d}", S.SELLER_ID: "SELLER-9"} for i in range(7)])
    write_parquet_atomic(many, layout.raw_shipments_day(DAY) / "part-1.parquet")
    whole = sm.find(layout, "seller-9", limit=100)
    assert whole.total == 8 and whole.rows.height == 8  # M00..M06 today, P2 the day before
    assert whole.rows[S.SHIPMENT_ID].to_list() == [f"M{i:02d}" for i in range(7)] + ["P2"]
    pages = [sm.find(layout, "seller-9", offset=o, limit=3) for o in (0, 3, 6, 9)]
    assert [p.total for p in pages] == [8] * 4 and [p.rows.height for p in pages] == [3, 3, 2, 0]
    assert pl.concat([p.rows for p in pages]).equals(whole.rows)
    assert pages[2].rows[S.ARRIVAL_DATE].to_list() == [DAY, PREV]


def test_an_index_of_an_older_format_is_rebuilt_not_read(tmp_path, monkeypatch) -> None:
    """The index format changed (3: the details file and each entry's row): a home indexed by an
    older version answers from a rebuilt index, and the old files are removed."""
    from riskpipe import search as sm

    _, layout = _home(tmp_path)
    monkeypatch.setattr(sm, "INDEX_VERSION", 2)
    sm._FP_CACHE.clear()
    old = sm.index_path(layout, PREV)
    assert old is not None
    # as version 2 wrote it: (field, h, shipment_id), no row, no details file
    entries = pl.read_parquet(old).drop("row")
    entries.write_parquet(old)
    sm.details_path(old).unlink()
    monkeypatch.setattr(sm, "INDEX_VERSION", 3)
    sm._FP_CACHE.clear()
    _, found = sm.search(layout, "555 0101")
    assert sorted(found[S.SHIPMENT_ID].to_list()) == ["P1", "S1", "S2"]
    assert found.filter(pl.col(S.SHIPMENT_ID) == "P1")[S.DESCRIPTION].to_list() == ["earlier parcel"]
    new = sm.index_path(layout, PREV)
    assert new != old and not old.exists() and sm.details_path(new).exists()
    assert sorted(p.name.split("-")[0] for p in new.parent.iterdir() if p.name != "build.lock") == [
        "ids",
        "rows",
        "sid",
    ]
    for f in (new, sm.details_path(new), sm.shipment_ids_path(new)):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    # an incomplete index (a file of the three lost) is rebuilt, not read
    sm.shipment_ids_path(new).unlink()
    _, again = sm.search(layout, "555 0101")
    assert again.equals(found) and sm.shipment_ids_path(new).exists()


def test_the_search_page_shows_one_page_of_many_and_links_to_the_rest(tmp_path, monkeypatch) -> None:
    """A seller with thousands of parcels: the page says how many were found, shows the newest
    page and links to the older ones; each page is audited; the links escape the query."""
    import warnings

    from riskpipe.cases import CaseStore
    from riskpipe.web import create_app
    from riskpipe.web.routes import search as route

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from .conftest import login

    settings, layout = _home(tmp_path)
    many = raw_rows(DAY, [{S.SHIPMENT_ID: f"M{i:02d}", S.SELLER_ID: "SELLER-9&x"} for i in range(5)])
    write_parquet_atomic(many, layout.raw_shipments_day(DAY) / "part-1.parquet")
    monkeypatch.setattr(route, "PAGE_ROWS", 2)
    c = TestClient(create_app(settings))
    assert login(c, "ana").status_code == 303
    first = c.get("/search", params={"q": "SELLER-9&x"})
    assert first.status_code == 200
    summary = first.text.split('id="summary"')[1].split("</p>")[0]
    assert "5 shipments" in summary and "showing 1&ndash;2" in summary
    assert first.text.count('class="result"') == 2 and ">M00</a>" in first.text and ">M01</a>" in first.text
    assert 'href="/search?q=SELLER-9%26x&amp;kind=&amp;offset=2" rel="next"' in first.text
    last = c.get("/search", params={"q": "SELLER-9&x", "offset": 4})
    assert last.text.count('class="result"') == 1 and ">M04</a>" in last.text and 'rel="next"' not in last.text
    assert 'offset=2" rel="prev"' in last.text
    assert c.get("/search", params={"q": "x", "offset": -1}).status_code == 400
    log = CaseStore(settings.db_url).access_log(action="search")
    assert len(log) == 2 and {a["target"] for a in log} == {"SELLER-9&x"}
