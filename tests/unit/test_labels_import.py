"""Labels import: validation, unknown shipments quarantined, hash ledger, LabelStore."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from riskpipe import schema as S
from riskpipe.errors import RiskpipeError
from riskpipe.ingest import import_labels, ingest_paths
from riskpipe.store import Layout


class FakeStore:
    """Records what it is given (same ``record`` signature as riskpipe.labels.LabelStore)."""

    def __init__(self) -> None:
        self.calls: list[tuple[pl.DataFrame, str]] = []

    def record(self, frame: pl.DataFrame, actor: str) -> int:
        self.calls.append((frame, actor))
        return frame.height

    def latest_exam_date(self) -> date:
        return date.today() + timedelta(days=1)

    def current(self) -> pl.DataFrame:
        return pl.DataFrame(schema={S.SHIPMENT_ID: pl.String, S.EXAM_DATE: pl.Date})


def manifest_row(sid: str) -> dict[str, str]:
    return {
        S.SHIPMENT_ID: sid,
        S.FILED_AT: "2026-01-05T08:00:00Z",
        S.ARRIVAL_DATE: "2026-01-05",
        S.ENTRY_TYPE: "321",
        S.MODE: "express",
        S.CARRIER_CODE: "DHL",
        S.PORT_OF_ENTRY: "4701",
        S.SHIPPER_NAME: "A",
        S.SHIPPER_ADDRESS: "B",
        S.SHIPPER_COUNTRY: "CN",
        S.CONSIGNEE_NAME: "C",
        S.CONSIGNEE_ADDRESS: "1 Main St",
        S.CONSIGNEE_CITY: "X",
        S.CONSIGNEE_STATE: "NY",
        S.CONSIGNEE_POSTAL_CODE: "10001",
        S.DESCRIPTION: "toys",
        S.COUNTRY_OF_ORIGIN: "CN",
        S.DECLARED_VALUE: "5",
        S.CURRENCY: "USD",
        S.GROSS_WEIGHT_KG: "0.2",
        S.PIECE_COUNT: "1",
    }


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    lay = Layout(tmp_path / "home")
    lay.landing.mkdir(parents=True)
    pl.DataFrame([manifest_row("S1"), manifest_row("S2")]).write_csv(lay.landing / "m.csv")
    assert ingest_paths(lay).rows_ingested == 2
    return lay


def label(sid: str, outcome: str = "no_finding", **over) -> dict:
    return {
        S.SHIPMENT_ID: sid,
        S.EXAM_DATE: "2026-01-06",
        S.OUTCOME: outcome,
        S.EXAM_REASON: "random",
        S.EXAMINER: "e1",
        S.NOTES: None,
        **over,
    }


def test_import_records_valid_and_quarantines_the_rest(layout: Layout, tmp_path: Path) -> None:
    path = tmp_path / "outcomes.csv"
    pl.DataFrame(
        [
            label("S1", "fentanyl", exam_reason="targeted"),
            label("S2"),
            label("NOPE"),  # unknown shipment
            label("S2", "cake"),  # bad outcome
            label("S1", exam_date="2026-02-31"),  # bad date
        ]
    ).write_csv(path)
    store = FakeStore()
    summary = import_labels(layout, path, store)
    assert len(store.calls) == 1
    frame, actor = store.calls[0]
    assert actor == "import:outcomes.csv"
    assert frame.schema == pl.Schema({**S.LABEL_SCHEMA, "recorded_at": pl.Datetime("us", "UTC")})
    assert frame["recorded_at"].null_count() == 2  # not in the file: the store stamps its clock
    assert frame[S.SHIPMENT_ID].to_list() == ["S1", "S2"]
    assert frame[S.OUTCOME].cast(pl.String).to_list() == ["fentanyl", "no_finding"]
    assert frame[S.EXAM_DATE].to_list() == [date(2026, 1, 6)] * 2
    assert (summary.rows_in, summary.rows_valid, summary.rows_recorded, summary.rows_quarantined) == (5, 2, 2, 3)
    assert summary.quarantine_reasons == {"bad_date:exam_date": 1, "bad_enum:outcome": 1, "unknown_shipment": 1}
    q = pl.read_parquet(next(layout.quarantine_rows.glob("labels-*.parquet")))
    assert q["row_number"].to_list() == [3, 4, 5]
    assert q[S.SHIPMENT_ID].to_list() == ["NOPE", "S2", "S1"]


def test_reimport_records_nothing(layout: Layout, tmp_path: Path) -> None:
    path = tmp_path / "o.ndjson"
    path.write_text(json.dumps(label("S1")) + "\n")
    store = FakeStore()
    first = import_labels(layout, path, store)
    second = import_labels(layout, path, store)
    assert first.rows_recorded == 1
    assert (second.files_skipped, second.rows_in, second.rows_recorded) == (1, 0, 0)
    assert len(store.calls) == 1


def test_folder_of_files_and_broken_file(layout: Layout, tmp_path: Path) -> None:
    folder = tmp_path / "outcomes"
    folder.mkdir()
    pl.DataFrame([label("S1")]).write_parquet(folder / "a.parquet")
    pl.DataFrame([label("S2")]).drop(S.OUTCOME).write_csv(folder / "b.csv")
    store = FakeStore()
    summary = import_labels(layout, folder, store)
    assert [a for _, a in store.calls] == ["import:a.parquet"]
    assert summary.files_quarantined == 1
    assert json.loads((layout.quarantine_files / "b.csv.reason.json").read_text())["reason"] == "missing_columns"


def test_missing_path_is_a_user_error(layout: Layout, tmp_path: Path) -> None:
    with pytest.raises(RiskpipeError, match="no such file"):
        import_labels(layout, tmp_path / "nothing.csv", FakeStore())


def test_with_the_real_label_store(layout: Layout, tmp_path: Path) -> None:
    labels = pytest.importorskip("riskpipe.labels")
    store = labels.LabelStore(f"sqlite:///{tmp_path / 'labels.db'}")
    path = tmp_path / "o.csv"
    pl.DataFrame([label("S1", "precursor"), label("S9")]).write_csv(path)
    summary = import_labels(layout, path, store)
    assert summary.rows_recorded == 1 and summary.rows_quarantined == 1
    current = store.current()
    assert current[S.SHIPMENT_ID].to_list() == ["S1"]
    assert current[S.OUTCOME].cast(pl.String).to_list() == ["precursor"]
    assert import_labels(layout, path, store).rows_recorded == 0


def test_future_exam_dates_are_quarantined_with_a_reason(layout: Layout, tmp_path: Path) -> None:
    labels = pytest.importorskip("riskpipe.labels")
    store = labels.LabelStore(f"sqlite:///{tmp_path / 'labels.db'}")
    future = (date.today() + timedelta(days=30)).isoformat()
    path = tmp_path / "o.csv"
    pl.DataFrame([label("S1", "precursor"), label("S2", "fentanyl", exam_date=future)]).write_csv(path)
    summary = import_labels(layout, path, store)
    assert (summary.rows_recorded, summary.rows_quarantined) == (1, 1)
    assert summary.quarantine_reasons == {"future:exam_date": 1}
    q = pl.read_parquet(next(layout.quarantine_rows.glob("labels-*.parquet")))
    assert q[S.SHIPMENT_ID].to_list() == ["S2"]
    assert store.current()[S.SHIPMENT_ID].to_list() == ["S1"]


def test_links_in_an_outcomes_folder_are_refused_not_followed(layout: Layout, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.csv"
    pl.DataFrame([label("S2")]).write_csv(outside)
    folder = tmp_path / "outcomes"
    folder.mkdir()
    pl.DataFrame([label("S1")]).write_csv(folder / "a.csv")
    (folder / "b.csv").symlink_to(outside)
    store = FakeStore()
    summary = import_labels(layout, folder, store)
    assert [f[S.SHIPMENT_ID].to_list() for f, _ in store.calls] == [["S1"]]
    assert summary.files_refused == 1
    assert [(f.file, f.status, f.reason) for f in summary.files if f.status == "refused"] == [
        ("b.csv", "refused", "symlink")
    ]
    with pytest.raises(RiskpipeError, match="symbolic link"):
        import_labels(layout, folder / "b.csv", store)


def test_an_import_with_an_older_exam_date_does_not_undo_a_later_outcome(layout: Layout, tmp_path: Path) -> None:
    """Review finding: a lab export still carrying a preliminary no_finding (exam 01-09) silently
    overwrote the confirmed fentanyl recorded in the workbench (exam 01-10); the next retrain
    learned a negative. Such a row is quarantined (older_than_stored); the stored outcome stays."""
    labels = pytest.importorskip("riskpipe.labels")
    store = labels.LabelStore(f"sqlite:///{tmp_path / 'labels.db'}")
    first = tmp_path / "first.csv"
    pl.DataFrame(
        [label("S1", "fentanyl", exam_date="2026-01-10"), label("S2", "no_finding", exam_date="2026-01-10")]
    ).write_csv(first)
    assert import_labels(layout, first, store).rows_recorded == 2
    second = tmp_path / "second.csv"
    pl.DataFrame(
        [
            label("S1", "no_finding", exam_date="2026-01-09"),  # older: refused
            label("S2", "precursor", exam_date="2026-01-10"),
        ]
    ).write_csv(second)  # same day: a correction
    summary = import_labels(layout, second, store)
    assert (summary.rows_recorded, summary.rows_quarantined) == (1, 1)
    assert summary.quarantine_reasons == {"older_than_stored": 1}
    now = dict(store.current().select(S.SHIPMENT_ID, pl.col(S.OUTCOME).cast(pl.String)).iter_rows())
    assert now == {"S1": "fentanyl", "S2": "precursor"}


def test_import_keeps_a_files_recorded_at_and_quarantines_a_future_one(layout: Layout, tmp_path: Path) -> None:
    """Contract section 3: ``recorded_at`` is optional; given, it is when the outcome entered the
    system (an archive's own time), which point-in-time features trust."""
    path = tmp_path / "outcomes.csv"
    pl.DataFrame(
        [
            label("S1", "fentanyl", recorded_at="2026-01-06T20:00:00Z"),
            label("S2", recorded_at="2999-01-01T00:00:00Z"),  # in the future
            label("S1", recorded_at="yesterday"),
        ]
    ).write_csv(path)
    store = FakeStore()
    summary = import_labels(layout, path, store)
    frame, _ = store.calls[0]
    assert frame[S.SHIPMENT_ID].to_list() == ["S1"]
    assert frame["recorded_at"].to_list() == [datetime(2026, 1, 6, 20, tzinfo=UTC)]
    assert summary.quarantine_reasons == {"future:recorded_at": 1, "bad_timestamp:recorded_at": 1}
