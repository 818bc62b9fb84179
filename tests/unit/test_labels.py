from __future__ import annotations

import threading
import time
from datetime import date, timedelta

import polars as pl
import pytest

from riskpipe import schema as S
from riskpipe.errors import RiskpipeError
from riskpipe.labels import RECORDED_AT, LabelStore


@pytest.fixture()
def store(db_url: str) -> LabelStore:
    """A store on SQLite, then on PostgreSQL (tests/conftest.py)."""
    return LabelStore(db_url)


def frame(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={S.SHIPMENT_ID: pl.String, S.EXAM_DATE: pl.Date, S.OUTCOME: pl.String, S.EXAM_REASON: pl.String},
        orient="row",
    )


def test_record_and_current(store: LabelStore) -> None:
    n = store.record(
        frame([("A", date(2026, 1, 5), "fentanyl", "targeted"), ("B", date(2026, 1, 6), "no_finding", "random")]),
        actor="import",
    )
    assert n == 2
    cur = store.current()
    assert cur.columns == [*S.LABEL_SCHEMA, RECORDED_AT]
    assert cur.schema[S.OUTCOME] == S.Outcome
    assert cur.schema[RECORDED_AT] == pl.Datetime("us", "UTC")
    assert cur[S.SHIPMENT_ID].to_list() == ["A", "B"]
    assert cur[S.OUTCOME].cast(pl.String).to_list() == ["fentanyl", "no_finding"]
    assert cur[S.EXAMINER].to_list() == [None, None]
    assert store.current(until=date(2026, 1, 5))[S.SHIPMENT_ID].to_list() == ["A"]


def test_identical_rerecord_changes_nothing(store: LabelStore) -> None:
    f = frame([("A", date(2026, 1, 5), "fentanyl", "targeted")])
    assert store.record(f, actor="x") == 1
    assert store.record(f, actor="x") == 0
    assert len(store.history("A")) == 1


def test_later_outcome_replaces_and_audit_keeps_before_after(store: LabelStore) -> None:
    store.record_one("A", date(2026, 1, 5), "no_finding", "targeted", actor="alice")
    store.record_one("A", date(2026, 1, 5), "precursor", "targeted", actor="bob", examiner="E1", notes="lab")
    cur = store.current()
    assert cur.height == 1
    assert cur.row(0, named=True)[S.OUTCOME] == "precursor"
    assert cur.row(0, named=True)[S.EXAMINER] == "E1"
    h = store.history("A")
    assert [r["actor"] for r in h] == ["alice", "bob"]
    assert [r["action"] for r in h] == ["insert", "update"]
    assert h[0]["before"] is None
    assert h[1]["before"][S.OUTCOME] == "no_finding"
    assert h[1]["after"][S.OUTCOME] == "precursor"
    assert h[1]["after"][S.EXAM_DATE] == "2026-01-05"
    assert h[1]["changed_at"].tzinfo is not None


def test_correction_with_an_earlier_exam_date_applies_and_is_audited(store: LabelStore) -> None:
    # was: silently dropped (no change, no audit row) because the stored exam date was later
    store.record_one("A", date(2026, 1, 9), "fentanyl", "targeted", actor="a")
    changed = store.record_one("A", date(2026, 1, 2), "no_finding", "random", actor="b")
    row = store.current().row(0, named=True)
    assert (row[S.OUTCOME], row[S.EXAM_DATE]) == ("no_finding", date(2026, 1, 2))
    assert changed is True
    h = store.history("A")
    assert [(r["actor"], r["action"]) for r in h] == [("a", "insert"), ("b", "update")]
    assert h[1]["before"][S.EXAM_DATE] == "2026-01-09" and h[1]["after"][S.EXAM_DATE] == "2026-01-02"
    # an import of an older file is a later recording too: applied and audited
    f = frame([("A", date(2026, 1, 1), "precursor", "targeted")])
    assert store.record(f, actor="import:old.csv") == 1
    assert store.history("A")[-1]["actor"] == "import:old.csv"


def test_future_exam_date_is_refused_and_nothing_is_written(store: LabelStore) -> None:
    future = date.today() + timedelta(days=30)
    with pytest.raises(RiskpipeError, match="exam_date .*future"):
        store.record_one("A", future, "fentanyl", "targeted", actor="a")
    f = frame([("B", date(2026, 1, 5), "fentanyl", "targeted"), ("C", future, "no_finding", "random")])
    with pytest.raises(RiskpipeError, match=r"row 2: exam_date"):
        store.record(f, actor="import")
    assert store.current().height == 0 and store.history("A") == []


def test_future_tolerance_is_one_day_in_the_configured_time_zone(tmp_path) -> None:
    from datetime import UTC, datetime

    # 23:30 UTC on the 9th is already the 10th in Tokyo
    now = datetime(2026, 1, 9, 23, 30, tzinfo=UTC)
    tokyo = LabelStore(f"sqlite:///{tmp_path / 't.db'}", timezone="Asia/Tokyo", clock=lambda: now)
    assert tokyo.latest_exam_date() == date(2026, 1, 11)
    tokyo.record_one("A", date(2026, 1, 11), "fentanyl", "targeted", actor="a")
    with pytest.raises(RiskpipeError, match="future"):
        tokyo.record_one("A", date(2026, 1, 12), "fentanyl", "targeted", actor="a")
    utc = LabelStore(f"sqlite:///{tmp_path / 'u.db'}", clock=lambda: now)
    assert utc.latest_exam_date() == date(2026, 1, 10)


def test_within_frame_latest_exam_wins(store: LabelStore) -> None:
    f = frame([("A", date(2026, 1, 7), "pill_press", "targeted"), ("A", date(2026, 1, 3), "no_finding", "random")])
    assert store.record(f, actor="x") == 1
    assert store.current()[S.OUTCOME].cast(pl.String).to_list() == ["pill_press"]


@pytest.mark.parametrize(("col", "value"), [(S.OUTCOME, "cocaine"), (S.EXAM_REASON, "hunch"), (S.OUTCOME, None)])
def test_enums_validated(store: LabelStore, col: str, value) -> None:
    f = frame([("A", date(2026, 1, 5), "fentanyl", "targeted")]).with_columns(pl.lit(value, pl.String).alias(col))
    with pytest.raises(RiskpipeError, match=col):
        store.record(f, actor="x")
    assert store.current().height == 0


def test_missing_column_and_string_dates(store: LabelStore) -> None:
    with pytest.raises(RiskpipeError, match="exam_reason"):
        store.record(
            pl.DataFrame({S.SHIPMENT_ID: ["A"], S.EXAM_DATE: [date(2026, 1, 1)], S.OUTCOME: ["fentanyl"]}), "x"
        )
    f = pl.DataFrame(
        {S.SHIPMENT_ID: ["A"], S.EXAM_DATE: ["2026-01-04"], S.OUTCOME: ["fentanyl"], S.EXAM_REASON: ["other"]}
    )
    assert store.record(f, "x") == 1
    assert store.current()[S.EXAM_DATE].to_list() == [date(2026, 1, 4)]


def test_concurrent_updates_both_audited(db_url: str) -> None:
    url = db_url
    LabelStore(url).record_one("S1", date(2026, 1, 5), "no_finding", "targeted", actor="seed")
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker(actor: str, outcome: str) -> None:
        try:
            st = LabelStore(url)
            barrier.wait()
            st.record_one("S1", date(2026, 1, 5), outcome, "targeted", actor=actor)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=a) for a in [("alice", "fentanyl"), ("bob", "precursor")]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    h = LabelStore(url).history("S1")
    assert sorted(r["actor"] for r in h[1:]) == ["alice", "bob"]
    # serialised: the second writer saw the first one's value as "before"
    assert h[2]["before"][S.OUTCOME] == h[1]["after"][S.OUTCOME]
    assert LabelStore(url).current()[S.OUTCOME].cast(pl.String).to_list() == [h[2]["after"][S.OUTCOME]]


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def test_bulk_record_is_fast(backend: str, tmp_path, request) -> None:
    # PostgreSQL: about 5 s for the two writes here (psycopg executemany), hence slow
    url = f"sqlite:///{tmp_path / 'bulk.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    store = LabelStore(url)
    n = 50_000
    f = pl.DataFrame(
        {
            S.SHIPMENT_ID: [f"S{i:06d}" for i in range(n)],
            S.EXAM_DATE: [date(2026, 1, 5)] * n,
            S.OUTCOME: ["no_finding"] * n,
            S.EXAM_REASON: ["random"] * n,
        }
    )
    t0 = time.perf_counter()
    assert store.record(f, actor="import") == n
    elapsed = time.perf_counter() - t0
    assert store.current().height == n
    assert elapsed < 10.0  # a couple of seconds on an idle machine; generous under shared CPU
    # half of them change: only those count and get audited
    f2 = f.with_columns(
        pl.when(pl.int_range(pl.len()) % 2 == 0).then(pl.lit("fentanyl")).otherwise(pl.col(S.OUTCOME)).alias(S.OUTCOME)
    )
    assert store.record(f2, actor="import") == n // 2
    assert len(store.history("S000000")) == 2
    assert len(store.history("S000001")) == 1


def test_a_writer_waiting_behind_another_stamps_a_later_time(
    store: LabelStore, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two analysts record an outcome of one shipment at once: the one that waited for the write
    lock must stamp its outcome after the one committed meanwhile (it was refused with "recorded_at
    ... is before the stored outcome's" when the clock was read before the lock: a 400 in the
    workbench, seen once in tests/web/test_api.py::test_concurrent_outcomes_both_in_audit)."""
    import contextlib

    from riskpipe import labels as L

    original = L.write_transaction
    other = LabelStore(db_url)
    raced = []

    @contextlib.contextmanager
    def racing(engine):  # the other analyst commits while this writer waits for the lock
        if not raced:
            raced.append(True)
            other.record_one("S2", date(2026, 1, 6), "no_finding", "targeted", actor="sue")
        with original(engine) as conn:
            yield conn

    monkeypatch.setattr(L, "write_transaction", racing)
    assert store.record_one("S2", date(2026, 1, 6), "fentanyl", "targeted", actor="ana")
    assert raced
    cur = store.current()
    assert cur[S.OUTCOME].cast(pl.String).to_list() == ["fentanyl"]  # the later writer's outcome is current
    versions = store.versions()
    assert versions.height == 2
