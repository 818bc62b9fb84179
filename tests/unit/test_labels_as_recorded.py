"""Point in time, as of recording (issue 14, point 6): the features of arrival day D see only
outcomes recorded before D's cut-off, and a correction recorded after it leaves D with the value
as it was recorded before; training targets are the latest outcome."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from test_point_in_time import D, make_home

from riskpipe import labels as L
from riskpipe import schema as S
from riskpipe.config import Settings
from riskpipe.features import build_features
from riskpipe.labels import LabelStore
from riskpipe.nightly import load_labels
from riskpipe.training import build_training_set, cache_key

#: a shipment of D-2 at the address every day shares ("9 Pine Rd"), examined the day before D
SHIP = f"S{D - timedelta(days=2):%m%d}-0001"
EXAM = D - timedelta(days=1)
POS = "hist_cons_addr_prior_positives"
#: D's cut-off, 00:00 UTC of D (``riskpipe.labels.cutoff``; spelled out so that these tests run,
#: and fail, on a version without it)
CUT = datetime(D.year, D.month, D.day, tzinfo=UTC)
EXAMS = "hist_cons_addr_prior_exams"


def record(store: LabelStore, monkeypatch, at: datetime, outcome: str, exam_date: date = EXAM) -> None:
    """Record one outcome of SHIP as if at ``at`` (the store stamps its own clock)."""
    monkeypatch.setattr(L, "_now_utc", lambda: at)
    assert store.record_one(SHIP, exam_date, outcome, "targeted", actor="analyst")


@pytest.fixture()
def home(tmp_path):
    return make_home(tmp_path / "home", 1)


def test_an_outcome_recorded_after_the_cut_off_does_not_change_the_day(home, db_url, monkeypatch):
    store = LabelStore(db_url)
    settings = Settings(home=home.home, database_url=db_url)
    before = build_features(home, D)
    assert before.get_column(POS).max() == 0
    # examined the day before D, but recorded an hour into D's night (after the cut-off)
    record(store, monkeypatch, CUT + timedelta(hours=1), "precursor")
    for labels in (store.current(), load_labels(settings)):
        assert_frame_equal(build_features(home, D, labels), before)
    # the next day knows it (the test would catch a label that never counts)
    assert build_features(home, D + timedelta(days=1), load_labels(settings)).get_column(POS).max() > 0


def test_a_correction_after_the_cut_off_leaves_the_value_recorded_before(home, db_url, monkeypatch):
    store = LabelStore(db_url)
    settings = Settings(home=home.home, database_url=db_url)
    record(store, monkeypatch, CUT - timedelta(hours=3), "precursor")
    seen_that_night = build_features(home, D, load_labels(settings))
    assert seen_that_night.get_column(POS).max() > 0
    # corrected to no finding the morning after: D rebuilt later still sees the precursor
    record(store, monkeypatch, CUT + timedelta(hours=9), "no_finding")
    assert_frame_equal(build_features(home, D, load_labels(settings)), seen_that_night)
    # the day after the correction sees it: still an exam of the party, no longer a positive
    after = build_features(home, D + timedelta(days=1), load_labels(settings))
    assert after.get_column(EXAMS).max() > 0 and after.get_column(POS).max() == 0
    from riskpipe.labels import known_at, latest

    versions = store.versions()
    assert versions.height == 2
    assert known_at(versions, D)[S.OUTCOME].cast(pl.String).to_list() == ["precursor"]
    assert known_at(versions, D + timedelta(days=1))[S.OUTCOME].cast(pl.String).to_list() == ["no_finding"]
    # the training target is the latest outcome (what the shipment held, as known at retrain)
    assert latest(versions)[S.OUTCOME].cast(pl.String).to_list() == ["no_finding"]
    assert_frame_equal(latest(versions), store.current())


def test_a_corrected_exam_date_counts_as_of_its_version(db_url, monkeypatch):
    from riskpipe.labels import known_at

    store = LabelStore(db_url)
    record(store, monkeypatch, CUT - timedelta(days=1), "fentanyl", exam_date=D)  # exam on D: not before D
    record(store, monkeypatch, CUT + timedelta(hours=1), "fentanyl", exam_date=EXAM)  # date corrected later
    assert known_at(store.versions(), D).is_empty()
    assert known_at(store.versions(), D + timedelta(days=1)).height == 1


def test_training_targets_are_latest_and_features_as_of_the_cut_off(home, db_url, monkeypatch):
    store = LabelStore(db_url)
    settings = Settings(home=home.home, database_url=db_url)
    # a second shipment of D at the same address, examined on D: D's training row
    monkeypatch.setattr(L, "_now_utc", lambda: CUT + timedelta(days=1, hours=2))
    store.record_one(f"S{D:%m%d}-0001", D, "no_finding", "random", actor="import")
    record(store, monkeypatch, CUT - timedelta(hours=3), "precursor")
    record(store, monkeypatch, CUT + timedelta(hours=9), "no_finding")
    data = build_training_set(home, load_labels(settings), [D], cache=True)
    assert data[S.SHIPMENT_ID].to_list() == [f"S{D:%m%d}-0001"]
    assert data[S.IS_POSITIVE].to_list() == [0]
    # the row's features: the party's precursor as recorded before D's cut-off
    assert data[POS].to_list() == [1] and data[EXAMS].to_list() == [1]
    # the cache key of D does not move with a change recorded after the cut-off
    k = cache_key(home, D, load_labels(settings), [])
    record(store, monkeypatch, CUT + timedelta(days=2), "pill_press")
    assert cache_key(home, D, load_labels(settings), []) == k


def test_a_recorded_at_given_is_the_versions_time_and_never_goes_back(db_url):
    from riskpipe.errors import RiskpipeError
    from riskpipe.labels import known_at

    store = LabelStore(db_url)

    def frame(outcome: str, at: datetime | None) -> pl.DataFrame:
        return pl.DataFrame(
            {
                S.SHIPMENT_ID: [SHIP],
                S.EXAM_DATE: [EXAM],
                S.OUTCOME: [outcome],
                S.EXAM_REASON: ["targeted"],
                "recorded_at": [at],
            },
            schema_overrides={"recorded_at": pl.Datetime("us", "UTC")},
        )

    # an archive's outcome recorded the evening of the exam counts for D
    assert store.record(frame("precursor", CUT - timedelta(hours=4)), actor="import:archive.csv") == 1
    assert store.current()["recorded_at"].to_list() == [CUT - timedelta(hours=4)]
    assert known_at(store.versions(), D)[S.OUTCOME].cast(pl.String).to_list() == ["precursor"]
    with pytest.raises(RiskpipeError, match=r"shipment .*: recorded_at .* is before the stored outcome's"):
        store.record(frame("no_finding", CUT - timedelta(hours=5)), actor="import:older.csv")
    with pytest.raises(RiskpipeError, match="recorded_at is in the future"):
        store.record(frame("no_finding", datetime(2999, 1, 1, tzinfo=UTC)), actor="import:future.csv")
    assert store.versions().height == 1  # nothing written by the refused frames
