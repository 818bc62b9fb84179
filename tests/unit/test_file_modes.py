"""Files holding hashes or personal data are owner-only (files 0600, folders 0700) whatever the
umask: the raw store, quarantine, the ingest ledger and run log, the SQLite database (and its
WAL files) and the Prefect home."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import polars as pl
import pytest
from manifest_rows import manifest_row, write_csv

from riskpipe import schema as S
from riskpipe.ingest import import_labels, ingest_paths
from riskpipe.store import Layout


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _open_to_others(paths: list[Path]) -> list[str]:
    return [f"{p} {stat.filemode(p.stat().st_mode)}" for p in paths if p.stat().st_mode & 0o077]


def test_private_data_is_created_owner_only_whatever_the_umask(tmp_path: Path, umask_022) -> None:
    from riskpipe.config import load_settings
    from riskpipe.labels import LabelStore
    from riskpipe.prefect_env import configure_prefect

    home = tmp_path / "home"
    layout = Layout(home)
    write_csv(layout.landing / "m.csv", [manifest_row("S1"), manifest_row("S2", value="not-a-number")])
    write_csv(layout.landing / "broken.csv", [{"no": "manifest columns"}])
    write_csv(
        layout.landing / "partner-exports-1.csv",
        [
            {
                S.SHIPMENT_ID: "S1",
                S.EXPORT_COUNTRY: "MX",
                S.EXPORTER_NAME: "Exp",
                S.EXPORTER_AEO: "false",
                S.PARTNER_DECLARED_VALUE_USD: "9",
                S.GROSS_WEIGHT_KG: "1",
                S.DESCRIPTION: "shirts",
                S.DECLARED_AT: "2026-01-04T10:00:00Z",
            }
        ],
    )
    write_csv(
        layout.landing / "outcomes" / "labels.csv",
        [
            {S.SHIPMENT_ID: "S1", S.EXAM_DATE: "2026-01-06", S.OUTCOME: "no_finding", S.EXAM_REASON: "random"},
            {S.SHIPMENT_ID: "NOPE", S.EXAM_DATE: "2026-01-06", S.OUTCOME: "no_finding", S.EXAM_REASON: "random"},
        ],
    )
    summary = ingest_paths(layout)
    assert (summary.files_quarantined, summary.rows_quarantined) == (1, 1)
    settings = load_settings(home)
    store = LabelStore(settings.db_url)
    import_labels(layout, layout.landing / "outcomes", store)
    configure_prefect(home, environ={})

    private = [p for base in ("raw", "quarantine", "ingest") for p in [home / base, *(home / base).rglob("*")]]
    private += [p for p in home.glob("riskpipe.db*")] + [home / ".prefect"]
    names = {str(p.relative_to(home)) for p in private}
    for expected in (
        "raw/shipments/arrival_date=2026-01-05",
        "raw/partner_exports/declared_date=2026-01-04",
        "quarantine/files/broken.csv",
        "quarantine/files/broken.csv.reason.json",
        "ingest/ledger.jsonl",
        "ingest/runs.jsonl",
        "ingest/labels_ledger.jsonl",
        "riskpipe.db",
        ".prefect",
    ):
        assert expected in names, expected
    assert any(n.startswith("raw/shipments/arrival_date=2026-01-05/part-") for n in names)
    assert len(list((home / "quarantine" / "rows").glob("*.parquet"))) == 2  # manifest row, label row
    assert _open_to_others(private) == []
    for p in private:
        assert stat.S_IMODE(p.stat().st_mode) == (0o700 if p.is_dir() else 0o600), p


def test_an_existing_database_is_tightened_when_opened(tmp_path: Path, umask_022) -> None:
    from riskpipe.db import dispose_engine, get_engine

    db = tmp_path / "other.db"
    db.write_bytes(b"")
    os.chmod(db, 0o644)
    url = f"sqlite:///{db}"
    with get_engine(url).connect() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    dispose_engine(url)
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_published_outputs_are_owner_only(tmp_path: Path, umask_022) -> None:
    """Review finding: targets/D/ holds names and addresses but was published 0755/0644."""
    from datetime import date

    from riskpipe import publish

    layout = Layout(tmp_path / "home")
    staged = publish.stage(layout, date(2026, 1, 5))
    for kind in publish.OUTPUT_KINDS:
        (staged[kind] / "file.txt").write_text("x")
    finals = publish.commit(layout, staged)
    for kind, final in finals.items():
        assert stat.S_IMODE(final.stat().st_mode) & 0o077 == 0, kind


def test_provisional_scores_folder_is_owner_only(tmp_path: Path, umask_022, monkeypatch) -> None:
    """Review finding: ``<home>/provisional`` (scores of identifiable shipments) was made 0755."""
    from datetime import date

    from riskpipe import provisional

    frame = pl.DataFrame(
        {S.SHIPMENT_ID: ["P1"], S.RISK_SCORE: [0.5], S.RULE_SCORE: [0.0], S.REASONS: [["model:score"]]}
    ).with_columns(pl.lit("v1").alias(S.MODEL_VERSION))
    monkeypatch.setattr(provisional, "_features_and_scores", lambda *a, **k: frame)
    layout = Layout(tmp_path / "home")
    (tmp_path / "home").mkdir()
    done = provisional.score_provisional(layout, None, date(2026, 1, 5))  # type: ignore[arg-type]
    assert done is not None and done.rows == 1
    root = provisional.provisional_root(layout)
    assert _open_to_others([root, done.path.parent]) == []  # the files inside are behind them


def test_features_and_history_tables_are_owner_only(tmp_path: Path, umask_022) -> None:
    """Review finding: the features file (one batch, batches, and the distributed night's join of
    its id ranges) and the daily history tables hold hashed party keys but were 0644 in 0755
    folders; the window table alone was 0600."""
    from datetime import date, timedelta

    from riskpipe import distnight
    from riskpipe.bench.features import make_bench_world
    from riskpipe.features import history as H
    from riskpipe.features.build import write_features
    from riskpipe.nightly import features_path

    home = tmp_path / "home"
    home.mkdir()
    layout = Layout(home)
    day = date(2026, 1, 8)
    make_bench_world(layout, day, rows=600, history_days=2)
    first = pl.read_parquet(layout.raw_shipments_day(day - timedelta(days=2))).head(3)
    labels = first.select(S.SHIPMENT_ID).with_columns(
        pl.lit(day - timedelta(days=1)).alias(S.EXAM_DATE), pl.lit("fentanyl").cast(S.Outcome).alias(S.OUTCOME)
    )
    for d in (day - timedelta(days=2), day - timedelta(days=1)):
        H.update_history(layout, d)
    H.update_window(layout, day)
    write_features(layout, day, labels, features_path(layout, day))  # one batch, labelled parties cached
    write_features(
        layout, day - timedelta(days=1), None, features_path(layout, day - timedelta(days=1)), batch_rows=200
    )
    ranges = tmp_path / "ranges.parquet"
    pl.read_parquet(features_path(layout, day)).write_parquet(ranges)
    rows = pl.read_parquet(ranges).height
    distnight.join_ranges(layout, day - timedelta(days=2), [str(ranges)], rows)

    private = [p for base in ("features", "history") for p in [home / base, *(home / base).rglob("*")]]
    names = {str(p.relative_to(home)) for p in private}
    for expected in (
        f"features/{day}/features.parquet",
        f"features/{day - timedelta(days=1)}/features.parquet",
        f"features/{day - timedelta(days=2)}/features.parquet",
        f"history/entities/day={day - timedelta(days=1)}.parquet",
        f"history/headings/day={day - timedelta(days=1)}.parquet",
        f"history/window/day={day}.parquet",
        "history/labelled_parties.parquet",
    ):
        assert expected in names, expected
    assert _open_to_others(private) == []
    for p in private:
        assert stat.S_IMODE(p.stat().st_mode) == (0o700 if p.is_dir() else 0o600), p


def test_the_retrain_feature_cache_is_owner_only(tmp_path: Path, umask_022) -> None:
    """Review finding: the retrain's cached day features (``features/D/features.parquet`` and its
    key file) hold hashed party keys and were written with the umask's modes (0644 in 0755)."""
    from datetime import date

    from riskpipe.bench.features import make_bench_world
    from riskpipe.labels import LabelStore
    from riskpipe.training import FEATURES_FILE, KEY_FILE, day_features

    home = tmp_path / "home"
    home.mkdir()
    layout = Layout(home)
    day = date(2026, 1, 8)
    make_bench_world(layout, day, rows=300, history_days=1)
    labels = LabelStore(f"sqlite:///{tmp_path / 'labels.db'}").versions()  # none recorded
    day_features(layout, day, labels)
    folder = layout.day_dir(layout.features, day)
    written = [home / "features", folder, folder / FEATURES_FILE, folder / KEY_FILE]
    for p in written:
        assert stat.S_IMODE(p.stat().st_mode) == (0o700 if p.is_dir() else 0o600), p
