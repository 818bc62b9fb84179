"""Provisional scores: a day scored during the day, from what has landed so far, until its night.

When the watcher (:mod:`riskpipe.watch`) ingests a file, every arrival date the file wrote and
whose nightly scores are not published yet is scored again, whole, the way the night scores it:
the same features (history before the day, outcomes recorded before the day's cut-off, the day's
rows ingested so far), the same champion, the same rules and watchlist. So a provisional score
equals the nightly score of the same shipment when nothing else arrived that day (tested); a
shipment that later gets more neighbours (network, same-day counts) may move at night.

Store: ``<home>/provisional/D/scores.parquet`` (the contract's scores columns, exactly) and
``provisional.json`` beside it (when, which model, how many rows): apart from ``scores/`` so
that nothing that reads published outputs (lists, reports, evaluation) ever mistakes them for
a night's. The nightly score replaces it: :func:`read_provisional` gives nothing for a day whose
nightly scores are published, and :func:`sweep_replaced` (run by the watcher) removes it.

The one place that calls the feature and scoring code is :func:`_features_and_scores` (the same
public entry points the nightly steps use), so that it is easy to re-point when they move.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl

from riskpipe import schema as S
from riskpipe.config import Settings
from riskpipe.features.build import write_features
from riskpipe.nightly import load_labels
from riskpipe.rules import load_rules, rules_file
from riskpipe.score import load_champion, score_day, score_features_file, scores_file_frame, scoring_columns
from riskpipe.search import watchlist_step
from riskpipe.store import Layout, private_dir, scan_raw_shipments, write_parquet_atomic, write_text_atomic

SCORES_FILE = "scores.parquet"
META_FILE = "provisional.json"
PROVISIONAL = "provisional"  # the flag column / key the workbench and its API show
FEATURES_FILE = ".features.parquet"  # work file of the last scoring (hidden: not an output)


def provisional_root(layout: Layout) -> Path:
    return layout.home / "provisional"


def provisional_path(layout: Layout, day: date) -> Path:
    return layout.day_dir(provisional_root(layout), day) / SCORES_FILE


def nightly_published(layout: Layout, day: date) -> bool:
    """The night of ``day`` published its scores (they replace the provisional ones)."""
    return (layout.day_dir(layout.scores, day) / SCORES_FILE).exists()


@dataclass(frozen=True)
class ProvisionalResult:
    day: date
    path: Path
    rows: int
    model_version: str
    seconds: float


def score_provisional(layout: Layout, settings: Settings, day: date) -> ProvisionalResult | None:
    """Score every shipment of ``day`` ingested so far as the night would, into the provisional
    store; None (nothing written) when the night of ``day`` already published its scores."""
    if nightly_published(layout, day):
        return None
    t0 = time.perf_counter()
    folder = private_dir(layout.day_dir(provisional_root(layout), day), under=layout.home)
    scores = _features_and_scores(layout, settings, day, folder / FEATURES_FILE)
    path = write_parquet_atomic(scores, folder / SCORES_FILE)
    versions = scores.get_column(S.MODEL_VERSION).unique().to_list()
    meta = {
        "day": day.isoformat(),
        "provisional": True,
        "scored_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows": scores.height,
        "model_version": str(versions[0]) if len(versions) == 1 else None,
    }
    write_text_atomic(json.dumps(meta, indent=1), folder / META_FILE)
    if nightly_published(layout, day):  # the night published while we scored: it wins
        shutil.rmtree(folder, ignore_errors=True)
        return None
    return ProvisionalResult(day, path, scores.height, str(meta["model_version"]), time.perf_counter() - t0)


def _features_and_scores(layout: Layout, settings: Settings, day: date, features_file: Path) -> pl.DataFrame:
    """The day's scores file frame, as the nightly's features and score steps make it (the one
    place that calls them: re-point here when their entry points move). As the night does: no
    history tables of the day as a by-product (the night writes them once it is published), and a
    large day scored a chunk of id-sorted rows at a time (same scores)."""
    write_features(
        layout,
        day,
        load_labels(settings),
        features_file,
        partner_key_path=settings.partner_key_path,
        history_by_product=False,
    )
    try:
        model, rules = load_champion(settings), load_rules(rules_file(settings))
        feature_columns, raw_columns = scoring_columns(model, rules, pl.read_parquet_schema(features_file))
        raw = scan_raw_shipments(layout, [day]).select(raw_columns)
        scored = score_features_file(features_file, raw, model, rules, feature_columns)
        if scored is None:  # a small day, or a features file that cannot be cut by id ranges
            features = pl.read_parquet(features_file, columns=feature_columns)
            scored = score_day(layout, day, model, rules, pl.DataFrame(), features=features, raw_day=raw.collect())
    finally:
        features_file.unlink(missing_ok=True)
    scored = watchlist_step(layout, settings, day, scored)
    return scores_file_frame(scored, day)


def read_provisional(layout: Layout, day: date) -> pl.DataFrame | None:
    """The provisional scores of ``day`` (contract scores columns plus ``provisional`` = True), or
    None when there are none or the night's scores replaced them."""
    path = provisional_path(layout, day)
    if nightly_published(layout, day) or not path.exists():
        return None
    return pl.read_parquet(path).with_columns(pl.lit(True).alias(PROVISIONAL))


def provisional_score(layout: Layout, day: date, shipment_id: str) -> dict | None:
    """One shipment's provisional score row (with ``provisional`` True) for the workbench, or
    None when the day has none or its night's scores replaced them."""
    path = provisional_path(layout, day)
    if nightly_published(layout, day) or not path.exists():
        return None
    f = pl.scan_parquet(path).filter(pl.col(S.SHIPMENT_ID) == shipment_id).collect()
    return {**f.row(0, named=True), PROVISIONAL: True} if f.height else None


def provisional_days(layout: Layout) -> list[date]:
    """Days holding provisional scores not replaced by their night, ascending."""
    root = provisional_root(layout)
    days = []
    for p in root.glob("????-??-??") if root.exists() else []:
        try:
            day = date.fromisoformat(p.name)
        except ValueError:
            continue
        if (p / SCORES_FILE).exists() and not nightly_published(layout, day):
            days.append(day)
    return sorted(days)


def sweep_replaced(layout: Layout) -> list[date]:
    """Remove the provisional scores of days whose nightly scores are published."""
    root = provisional_root(layout)
    removed = []
    for p in sorted(root.glob("????-??-??")) if root.exists() else []:
        try:
            day = date.fromisoformat(p.name)
        except ValueError:
            continue
        if nightly_published(layout, day):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(day)
    return removed
