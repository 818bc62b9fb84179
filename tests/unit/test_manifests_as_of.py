"""Point in time for manifests (issue 14, point 6): a past day is rebuilt from the latest filing
made before its cut-off, not from an amendment filed after it; superseded filings are kept."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import polars as pl
from manifest_rows import manifest_row, write_csv

from riskpipe import schema as S
from riskpipe.config import Settings
from riskpipe.holdout import evaluate_models
from riskpipe.ingest import ingest_paths
from riskpipe.store import Layout, scan_raw_shipments
from riskpipe.training import build_training_set, day_features

D = date(2026, 1, 5)
#: D's cut-off (00:00 UTC of D; spelled out so that the test runs, and fails, without the change)
CUT = datetime(2026, 1, 5, tzinfo=UTC)


def _home(tmp_path) -> Layout:
    """A: filed before the cut-off, amended after it (value 10 -> 900). B: filed and amended
    before it (20 -> 500). C: one filing. Two ingest runs, as a late amendment would arrive."""
    lay = Layout(tmp_path / "home")
    first = tmp_path / "in1" / "day.csv"
    write_csv(
        first,
        [
            manifest_row("A", "2026-01-05", "2026-01-04T10:00:00Z", "10"),
            manifest_row("B", "2026-01-05", "2026-01-04T11:00:00Z", "20"),
            manifest_row("C", "2026-01-05", "2026-01-04T12:00:00Z", "30"),
        ],
    )
    ingest_paths(lay, [first])
    second = tmp_path / "in2" / "amend.csv"
    write_csv(
        second,
        [
            manifest_row("A", "2026-01-05", "2026-01-05T09:00:00Z", "900"),
            manifest_row("B", "2026-01-05", "2026-01-04T20:00:00Z", "500"),
        ],
    )
    summary = ingest_paths(lay, [second])
    assert summary.rows_replaced_existing == 2
    return lay


def _values(frame: pl.DataFrame) -> dict[str, float]:
    return dict(frame.select(S.SHIPMENT_ID, S.DECLARED_VALUE_USD).sort(S.SHIPMENT_ID).iter_rows())


def _labels() -> pl.DataFrame:
    return pl.DataFrame(
        {
            S.SHIPMENT_ID: ["A", "B", "C"],
            S.EXAM_DATE: [D, D, D],
            S.OUTCOME: ["no_finding", "fentanyl", "no_finding"],
            S.EXAM_REASON: ["targeted"] * 3,
            "recorded_at": [datetime(2026, 1, 6, tzinfo=UTC)] * 3,
        },
        schema_overrides={S.OUTCOME: S.Outcome, S.EXAM_REASON: S.ExamReason},
    )


def test_retrain_and_holdout_rebuild_a_day_from_its_filings_before_the_cut_off(tmp_path):
    """Fails on the code before the change: A's amendment, filed 9 h after D's cut-off, was in
    D's retrain features and in the holdout's rows of D."""
    lay = _home(tmp_path)
    feats = day_features(lay, D, _labels(), cache=False)
    assert _values(feats) == {"A": 10.0, "B": 500.0, "C": 30.0}
    train = build_training_set(lay, _labels(), cache=False)
    assert _values(train) == {"A": 10.0, "B": 500.0, "C": 30.0}
    seen: list[pl.DataFrame] = []

    def scorer(joined: pl.DataFrame) -> np.ndarray:
        seen.append(joined)
        return np.zeros(joined.height)

    settings = Settings(port_capacity={"0401": 2}, other_port_capacity=1, exploration_share=0.0)
    evaluate_models(lay, settings, _labels(), [D], {"m": scorer})
    assert _values(seen[0]) == {"A": 10.0, "B": 500.0, "C": 30.0}
    # the current night still reads the latest filing of each shipment
    assert _values(scan_raw_shipments(lay, [D]).collect()) == {"A": 900.0, "B": 500.0, "C": 30.0}


def test_the_store_reads_a_day_as_of_a_cut_off(tmp_path):
    lay = _home(tmp_path)
    as_of = scan_raw_shipments(lay, [D], as_of=CUT).collect()
    assert _values(as_of) == {"A": 10.0, "B": 500.0, "C": 30.0}
    assert as_of.columns == scan_raw_shipments(lay, [D]).collect_schema().names()


def test_superseded_filings_are_kept_with_when_they_were_replaced(tmp_path):
    lay = _home(tmp_path)
    kept = pl.read_parquet(list(lay.raw_superseded_day(D).glob("*.parquet"))).sort(S.SHIPMENT_ID)
    assert kept[S.SHIPMENT_ID].to_list() == ["A", "B"]
    assert kept[S.DECLARED_VALUE_USD].to_list() == [10.0, 20.0]
    assert kept[S.SUPERSEDED_BY_FILED_AT].to_list() == [
        datetime(2026, 1, 5, 9, tzinfo=UTC),
        datetime(2026, 1, 4, 20, tzinfo=UTC),
    ]
    assert kept[S.SUPERSEDED_BY_INGESTED_AT].null_count() == 0
    assert kept[S.INGESTED_AT].null_count() == 0
    # the store itself still holds one row per shipment (every reader of it unchanged)
    assert scan_raw_shipments(lay, [D]).select(pl.len()).collect().item() == 3


def test_a_day_without_amendments_reads_only_its_partition(tmp_path):
    lay = Layout(tmp_path / "home")
    f = tmp_path / "in" / "day.csv"
    write_csv(f, [manifest_row("X", "2026-01-05", "2026-01-05T08:00:00Z", "10")])
    ingest_paths(lay, [f])
    assert not lay.raw_superseded_day(D).exists()
    plain = scan_raw_shipments(lay, [D])
    # a filing after the cut-off with nothing before it stays (the shipment is not dropped)
    assert _values(scan_raw_shipments(lay, [D], as_of=CUT).collect()) == {"X": 10.0}
    assert scan_raw_shipments(lay, [D], as_of=CUT).explain() == plain.explain()


def test_a_second_amendment_chains_and_a_late_older_filing_does_not_win(tmp_path):
    lay = _home(tmp_path)
    third = tmp_path / "in3" / "more.csv"
    write_csv(
        third,
        [
            manifest_row("A", "2026-01-05", "2026-01-05T12:00:00Z", "950"),  # after the first amendment
            manifest_row("C", "2026-01-05", "2026-01-04T06:00:00Z", "3"),  # older than C's filing, late
        ],
    )
    ingest_paths(lay, [third])
    assert _values(scan_raw_shipments(lay, [D]).collect()) == {"A": 950.0, "B": 500.0, "C": 30.0}
    assert _values(scan_raw_shipments(lay, [D], as_of=CUT).collect()) == {"A": 10.0, "B": 500.0, "C": 30.0}
    between = datetime(2026, 1, 5, 10, tzinfo=UTC)
    assert _values(scan_raw_shipments(lay, [D], as_of=between).collect())["A"] == 900.0
    early = datetime(2026, 1, 4, 8, tzinfo=UTC)  # only C's late, older filing had been filed
    assert _values(scan_raw_shipments(lay, [D], as_of=early).collect()) == {"A": 10.0, "B": 20.0, "C": 3.0}


def test_a_shipment_moved_to_another_day_is_in_the_day_its_filing_said_at_the_cut_off(tmp_path):
    lay = Layout(tmp_path / "home")
    first = tmp_path / "in1" / "day.csv"
    write_csv(
        first,
        [
            manifest_row("M", "2026-01-05", "2026-01-04T10:00:00Z", "10"),
            manifest_row("N", "2026-01-05", "2026-01-04T10:00:00Z", "10"),
        ],
    )
    ingest_paths(lay, [first])
    second = tmp_path / "in2" / "move.csv"
    write_csv(
        second,
        [
            manifest_row("M", "2026-01-07", "2026-01-04T20:00:00Z", "10"),  # moved before D's cut-off
            manifest_row("N", "2026-01-07", "2026-01-05T20:00:00Z", "10"),  # moved after it
        ],
    )
    ingest_paths(lay, [second])
    assert scan_raw_shipments(lay, [D]).collect().is_empty()
    as_of = scan_raw_shipments(lay, [D], as_of=CUT).collect()
    assert as_of[S.SHIPMENT_ID].to_list() == ["N"]
    assert as_of[S.ARRIVAL_DATE].to_list() == [D]


def test_a_shipment_moved_onto_a_day_after_its_cut_off_is_not_on_it_then(tmp_path):
    """A late amendment (filed after the cut-offs) moving a shipment from E onto D: as of D's
    cut-off it is not on D (its filing then said E), and it is on E once as of E's cut-off.
    Before the fix D's current filing passed untouched (D's superseded filings were matched
    only against D's partition; the earlier filing is kept in E's), with or without other
    amendments on D."""
    e = date(2026, 1, 7)
    cut_e = datetime(2026, 1, 7, tzinfo=UTC)
    for with_other_amendment in (False, True):
        lay = Layout(tmp_path / f"home-{with_other_amendment}")
        first = tmp_path / f"in1-{with_other_amendment}" / "day.csv"
        write_csv(
            first,
            [
                manifest_row("X", "2026-01-07", "2026-01-04T10:00:00Z", "10"),
                manifest_row("Y", "2026-01-07", "2026-01-04T10:00:00Z", "20"),
                manifest_row("C", "2026-01-05", "2026-01-04T12:00:00Z", "30"),
            ],
        )
        ingest_paths(lay, [first])
        moves = [
            manifest_row("X", "2026-01-05", "2026-01-07T20:00:00Z", "11"),  # onto D after D's and E's cut-offs
            manifest_row("Y", "2026-01-05", "2026-01-04T20:00:00Z", "21"),  # onto D before it
        ]
        if with_other_amendment:
            moves.append(manifest_row("C", "2026-01-05", "2026-01-05T21:00:00Z", "31"))
        second = tmp_path / f"in2-{with_other_amendment}" / "move.csv"
        write_csv(second, moves)
        ingest_paths(lay, [second])
        assert lay.raw_superseded_day(D).exists() == with_other_amendment
        assert _values(scan_raw_shipments(lay, [D]).collect()) == {
            "X": 11.0,
            "Y": 21.0,
            "C": 31.0 if with_other_amendment else 30.0,
        }
        on_d = scan_raw_shipments(lay, [D], as_of=CUT).collect()
        assert _values(on_d) == {"Y": 21.0, "C": 30.0}
        assert on_d.columns == scan_raw_shipments(lay, [D]).collect_schema().names()
        on_e = scan_raw_shipments(lay, [e], as_of=cut_e).collect()
        assert on_e[S.SHIPMENT_ID].to_list() == ["X"] and on_e[S.ARRIVAL_DATE].to_list() == [e]
        assert _values(on_e) == {"X": 10.0}
        both = scan_raw_shipments(lay, [D, e], as_of=CUT).collect()
        assert both.filter(pl.col(S.SHIPMENT_ID) == "X")[S.ARRIVAL_DATE].to_list() == [e]
