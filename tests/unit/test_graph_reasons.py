"""Dated graph reasons on the list (issue 14, point 4): an officer reads which kind of identifier
a shipment shares with a seized parcel and when it was seized, never the identifier, and only
seizures known at the night's cut-off."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
from test_features_graph import IP, D, day, outcomes, sid, world

from riskpipe import publish
from riskpipe import schema as S
from riskpipe.config import load_settings
from riskpipe.features import build_features
from riskpipe.features import graph as G
from riskpipe.nightly import features_path, rank_and_stage_step
from riskpipe.store import Layout
from riskpipe.web.lists import ListData, ListQuery

SEIZED = day(10).isoformat()  # the exam date of the positive parcel of day(12) that shares the IP
IP_GENERIC = "Model: shares an account IP with a parcel seized earlier"


def _night(tmp_path: Path, recorded_at: datetime) -> tuple[pl.DataFrame, str, dict[str, dict]]:
    """D's list and report, the outcomes recorded at ``recorded_at``; the model named graph
    reasons on three shipments (0 shares the IP; 3 the seller; 4 nothing)."""
    lay: Layout = world(tmp_path)
    features_path(lay, D).parent.mkdir(parents=True)
    build_features(lay, D, outcomes(recorded_at)).write_parquet(features_path(lay, D))
    ids = [sid(D, i) for i in range(5)]
    reasons = [
        ["model:graph_account_ip_seized_days", "model:graph_link_score"],
        ["model:graph_hop2_score"],
        [],
        ["model:graph_seller_seized_days"],
        ["model:graph_account_ip_seized_days"],
    ]
    scored = pl.DataFrame(
        {
            S.SHIPMENT_ID: ids,
            S.RISK_SCORE: [0.9, 0.8, 0.1, 0.7, 0.6],
            S.RULE_SCORE: [0.0] * 5,
            S.REASONS: reasons,
            S.MODEL_VERSION: ["v1"] * 5,
        },
        schema={c: S.SCORES_SCHEMA[c] for c in S.SCORES_SCHEMA},
    )
    scored_file = tmp_path / "scored.parquet"
    scored.write_parquet(scored_file)
    settings = load_settings(lay.home)
    staged = publish.stage(lay, D)
    rank_and_stage_step(lay, settings, D, scored_file, staged, 10, {})
    targets = pl.read_parquet(Path(staged["targets"]) / "targets.parquet")
    report = (Path(staged["reports"]) / "report.html").read_text(encoding="utf-8")
    publish.commit(lay, staged)
    page = ListData(settings).list_page(D, ListQuery())  # the workbench's list
    return targets, report, {r[S.SHIPMENT_ID]: r for r in page.rows}


def _text(targets: pl.DataFrame, i: int) -> str:
    return targets.filter(pl.col(S.SHIPMENT_ID) == sid(D, i)).get_column(S.REASON_TEXT).item()


def test_a_night_after_a_seizure_shows_the_dated_kind_specific_reason(tmp_path):
    """Fails on the code before the change: the list said "seized earlier" (no date)."""
    targets, report, rows = _night(tmp_path, datetime(2026, 3, 1, tzinfo=UTC))  # recorded well before D
    linked = _text(targets, 0)
    assert f"Model: shares an account IP with a parcel seized on {SEIZED}" in linked.split("; ")
    assert IP_GENERIC not in linked
    # the link score names its links, dated, in one reason (the separator "; " stays the reasons')
    assert len(linked.split("; ")) == 2 and f"an account IP with a parcel seized on {SEIZED}" in linked.split("; ")[1]
    assert f"Model: shares a seller account with a parcel seized on {SEIZED}" == _text(targets, 3)
    # a graph reason without a link keeps its generic words; no identifier value is ever shown
    assert _text(targets, 4) == IP_GENERIC
    assert all(IP not in t for t in targets.get_column(S.REASON_TEXT).to_list())
    # the workbench's list: the first reason (its summary) and each code's words are dated
    assert rows[sid(D, 0)]["reason_first"] == f"Model: shares an account IP with a parcel seized on {SEIZED}"
    assert SEIZED in rows[sid(D, 0)]["reason_pairs"][1][1]
    assert rows[sid(D, 4)]["reason_first"] == IP_GENERIC
    # the report shows the list's words
    assert f"shares an account IP with a parcel seized on {SEIZED}" in report
    # the codes are unchanged (the reasons format is only widened in its words)
    assert targets.filter(pl.col(S.SHIPMENT_ID) == sid(D, 0)).get_column(S.REASONS).item().to_list() == [
        "model:graph_account_ip_seized_days",
        "model:graph_link_score",
    ]


def test_a_seizure_recorded_after_the_cut_off_never_shows(tmp_path):
    targets, report, rows = _night(tmp_path, datetime(D.year, D.month, D.day, 8, tzinfo=UTC))  # after the cut-off
    assert _text(targets, 0).split("; ")[0] == IP_GENERIC
    assert all(SEIZED not in t for t in targets.get_column(S.REASON_TEXT).to_list())
    assert SEIZED not in report
    assert all(SEIZED not in words for r in rows.values() for _, words in r["reason_pairs"])


def test_workbench_pairs_take_the_dated_words_of_the_list():
    text = f"Model: shares an account IP with a parcel seized on {SEIZED}; Unusual value per kg"
    pairs = [("model:graph_account_ip_seized_days", IP_GENERIC), ("model:value_per_kg", "Unusual value per kg")]
    assert G.dated_pairs(pairs, text) == [
        ("model:graph_account_ip_seized_days", f"Model: shares an account IP with a parcel seized on {SEIZED}"),
        ("model:value_per_kg", "Unusual value per kg"),
    ]
    assert G.dated_pairs(pairs, None) == pairs
    assert G.dated_pairs(pairs, "Unusual value per kg") == pairs


def test_the_seizure_date_is_the_exam_date_of_the_positive(tmp_path):
    lay = world(tmp_path)
    f = build_features(lay, D, outcomes(datetime(2026, 3, 1, tzinfo=UTC)))
    days = f.filter(pl.col(S.SHIPMENT_ID) == sid(D, 0)).get_column(G.seized_days_col("account_ip")).item()
    assert D - timedelta(days=days) == day(10)
