"""Training sets: the features of examined shipments, rebuilt exactly as the nightly run saw them.

For every past arrival day D the feature path (``riskpipe.features.build_features``) is called
with the same labels store the nightly run had; it uses only labels with ``exam_date < D``
recorded before D's cut-off (as they stood then), history before D, and each shipment as filed
before D's cut-off (an amendment filed after it is not used: ``as_of``), so a training row
carries no knowledge of its own outcome or of the future.

Two different "as of" on purpose: the FEATURES of day D (a party's prior exams and positives) see
only outcomes recorded before D's cut-off (:func:`riskpipe.labels.known_at`); the TARGET of a
training row is the latest outcome known at retrain time (:func:`riskpipe.labels.latest`), a
correction included: that is the best knowledge of what the shipment held. ``labels`` may be
``LabelStore.versions()`` (every recorded version: the features get the values of the past) or
``LabelStore.current()`` (one per shipment: a shipment corrected after D's cut-off is then left
out of D's features).

Full-day features are cached under ``features/D/features.parquet`` with a key file
(``features.key``): a digest of the feature list, of the labels before D and of the raw and
partner files. A changed label before D, a new or amended raw file, or a new feature version
changes the key and the day is rebuilt; a stale cache is never read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from datetime import date
from pathlib import Path

import polars as pl

from riskpipe import schema as S
from riskpipe.cutoff import day_cutoff
from riskpipe.errors import RiskpipeError
from riskpipe.features import FEATURE_COLUMNS, build_features
from riskpipe.labels import known_at, latest
from riskpipe.partner import fingerprint as partner_feeds
from riskpipe.propensity import random_exam_probability
from riskpipe.store import (
    PRIVATE_FILE,
    Layout,
    private_dir,
    scan_raw_shipments,
    write_parquet_atomic,
    write_text_atomic,
)

FEATURES_FILE = "features.parquet"
KEY_FILE = "features.key"

FeatureBuilder = Callable[[Layout, date, pl.DataFrame], pl.DataFrame]


def _default_builder() -> FeatureBuilder:
    return _as_of_cutoff


def _as_of_cutoff(layout: Layout, day: date, labels: pl.DataFrame) -> pl.DataFrame:
    """A past day's features as its night could know them: each shipment as filed before D's
    cut-off (an amendment filed after it is not used; issue 14, point 6)."""
    return build_features(layout, day, labels, as_of=day_cutoff(day))


def _feature_columns() -> list[str]:
    return list(FEATURE_COLUMNS)


def labels_before(labels: pl.DataFrame, day: date) -> pl.DataFrame:
    """The labels known when day ``day`` was scored: ``exam_date < day``, recorded before D's
    cut-off, as they stood then (:func:`riskpipe.labels.known_at`)."""
    return known_at(labels, day)


def _files_digest(paths: Iterable[Path]) -> list[list]:
    out = []
    for p in sorted(paths):
        st = p.stat()
        out.append([str(p), st.st_size, st.st_mtime_ns])
    return out


def cache_key(layout: Layout, day: date, labels: pl.DataFrame, feature_columns: list[str]) -> str:
    """Digest of everything the features of ``day`` may depend on."""
    known = (
        labels_before(labels, day)
        .select(
            pl.col(S.SHIPMENT_ID),
            pl.col(S.EXAM_DATE).cast(pl.String),
            pl.col(S.OUTCOME).cast(pl.String),
            pl.col(S.EXAM_REASON).cast(pl.String),
        )
        .sort(S.SHIPMENT_ID, S.EXAM_DATE)
    )
    h = hashlib.sha256()
    h.update(json.dumps(feature_columns).encode())
    h.update(known.write_csv().encode())
    raw_files = [f for d in layout.raw_days() if d <= day for f in layout.raw_shipments_day(d).glob("*.parquet")]
    raw_files += [f for d in layout.raw_days() if d <= day for f in layout.raw_superseded_day(d).glob("*.parquet")]
    partner = list(layout.raw_partner.glob("*/*.parquet")) if layout.raw_partner.exists() else []
    h.update(json.dumps([_files_digest(raw_files), _files_digest(partner)]).encode())
    h.update(json.dumps(partner_feeds(layout, day)).encode())  # feeds and OEA lists known at D's cut-off
    return h.hexdigest()


def day_features(
    layout: Layout,
    day: date,
    labels: pl.DataFrame,
    *,
    cache: bool = True,
    builder: FeatureBuilder | None = None,
) -> pl.DataFrame:
    """All shipments of ``day`` with their point-in-time features (cached when ``cache``)."""
    builder = builder or _default_builder()
    if not cache:
        return builder(layout, day, labels)
    folder = layout.day_dir(layout.features, day)
    key = cache_key(layout, day, labels, _feature_columns())
    path, key_path = folder / FEATURES_FILE, folder / KEY_FILE
    if path.exists() and key_path.exists() and key_path.read_text(encoding="utf-8").strip() == key:
        return pl.read_parquet(path)
    frame = builder(layout, day, labels)
    private_dir(folder, under=layout.home)  # hashed party keys: owner only
    write_parquet_atomic(frame, path, mode=PRIVATE_FILE)
    write_text_atomic(key + "\n", key_path, mode=PRIVATE_FILE)
    return frame


def labelled_days(layout: Layout, labels: pl.DataFrame, until: date | None = None) -> pl.DataFrame:
    """Labels joined to their shipment's arrival day (``arrival_date`` <= ``until``).

    Labels naming a shipment absent from the raw store are dropped (they cannot be featurised).
    One row per shipment: the latest recorded version (the training target).
    """
    labels = latest(labels)
    arrivals = (
        scan_raw_shipments(layout).select(S.SHIPMENT_ID, S.ARRIVAL_DATE).unique(S.SHIPMENT_ID, keep="last").collect()
    )
    out = labels.join(arrivals, on=S.SHIPMENT_ID, how="inner")
    if until is not None:
        out = out.filter(pl.col(S.ARRIVAL_DATE) <= until)
    return out.sort(S.ARRIVAL_DATE, S.SHIPMENT_ID)


def attach_labels(features: pl.DataFrame, day: date, labels: pl.DataFrame) -> pl.DataFrame:
    """Features of the labelled shipments of one day, plus ``arrival_date``, ``is_positive`` and
    ``exam_reason`` (an inner join: unexamined shipments are not training rows)."""
    outcome = labels.select(
        S.SHIPMENT_ID,
        S.is_positive_expr(),
        pl.col(S.EXAM_REASON),
        pl.col(S.EXAM_DATE),
        *([pl.col(S.SELECTION_PROBABILITY)] if S.SELECTION_PROBABILITY in labels.columns else []),
    ).unique(S.SHIPMENT_ID, keep="last")
    return features.join(outcome, on=S.SHIPMENT_ID, how="inner").with_columns(
        pl.lit(day, dtype=pl.Date).alias(S.ARRIVAL_DATE)
    )


#: the per-row weight of a training set (``riskpipe.model.SAMPLE_WEIGHT``)
SAMPLE_WEIGHT = "sample_weight"
RANDOM_REASON = "random"


def published_probabilities(layout: Layout, days: Iterable[date]) -> pl.DataFrame:
    """``shipment_id``, ``selection_probability`` of the exploration rows of the published lists
    of ``days`` (lists without the column, older ones, give nothing)."""
    parts = []
    for day in days:
        path = layout.day_dir(layout.targets, day) / "targets.parquet"
        if path.exists() and S.SELECTION_PROBABILITY in pl.read_parquet_schema(path):
            parts.append(
                pl.read_parquet(path, columns=[S.SHIPMENT_ID, S.SELECTION, S.SELECTION_PROBABILITY])
                .filter(pl.col(S.SELECTION) == "exploration")
                .select(S.SHIPMENT_ID, S.SELECTION_PROBABILITY)
            )
    if not parts:
        return pl.DataFrame(schema={S.SHIPMENT_ID: pl.String, S.SELECTION_PROBABILITY: pl.Float64})
    return pl.concat(parts).unique(S.SHIPMENT_ID, keep="last")


def selection_weights(
    data: pl.DataFrame,
    shipments_per_day: dict[date, int],
    probabilities: pl.DataFrame | None = None,
    max_weight: float | None = None,
) -> pl.DataFrame:
    """``data`` (a training set) with ``sample_weight``: 1 / the selection probability of each
    random exam, 1 for every other row.

    Why: the random exams are the only labels whose chance of being looked at is known; weighted
    by its inverse, a random exam stands for the shipments nobody chose to examine, and the
    training set as a whole for the day's population (targeted exams, chosen for sure given the
    scores, stand for themselves). The probability covers both random draws of the day
    (``riskpipe.propensity``): ``1 - (1 - r_day) * (1 - pi)``, ``pi`` the row's own
    ``selection_probability`` else the published list's (``probabilities``, exploration rows),
    0 off the list, ``r_day`` the day's random exams without one / its shipments (a ratio
    estimate). Rows without ``exam_reason`` (presumed negatives) keep 1.

    ``max_weight`` clips the weights (clipped inverse propensity: biased towards the labelled
    rows, far less variance). Measured in the adaptation study: with one exploration exam in
    3,000 shipments a weight reaches 3,000, a handful of negatives then outweigh every positive
    and recall falls (see the README).
    """
    own = pl.col(S.SELECTION_PROBABILITY) if S.SELECTION_PROBABILITY in data.columns else pl.lit(None, dtype=pl.Float64)
    frame = data.with_columns(own.alias("_own"))
    if probabilities is not None and probabilities.height:
        frame = frame.join(
            probabilities.select(S.SHIPMENT_ID, pl.col(S.SELECTION_PROBABILITY).alias("_listed")),
            on=S.SHIPMENT_ID,
            how="left",
        )
    else:
        frame = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias("_listed"))
    is_random = pl.col(S.EXAM_REASON).cast(pl.String) == RANDOM_REASON
    sizes = pl.DataFrame(
        {S.ARRIVAL_DATE: list(shipments_per_day), "_n": list(shipments_per_day.values())},
        schema={S.ARRIVAL_DATE: pl.Date, "_n": pl.Int64},
    )
    frame = frame.with_columns(is_random.fill_null(False).alias("_is_random")).join(
        sizes, on=S.ARRIVAL_DATE, how="left"
    )
    # one probability per random exam covering both draws (compliance and exploration)
    p = random_exam_probability(pl.col("_is_random"), pl.coalesce(pl.col("_own"), pl.col("_listed")), pl.col("_n"))
    inverse = 1.0 / p.clip(None, 1.0)
    if max_weight is not None:
        inverse = inverse.clip(None, float(max_weight))
    weight = pl.when(pl.col("_is_random") & (p > 0)).then(inverse).otherwise(1.0)
    return frame.with_columns(weight.alias(SAMPLE_WEIGHT)).drop("_own", "_listed", "_is_random", "_n")


def build_training_set(
    layout: Layout,
    labels: pl.DataFrame,
    days: Iterable[date] | None = None,
    *,
    cache: bool = True,
    builder: FeatureBuilder | None = None,
    unexamined_share: float = 0.0,
    seed: int = 0,
    weighted: bool = False,
    max_weight: float | None = None,
) -> pl.DataFrame:
    """Point-in-time features of every examined shipment arriving on ``days`` (default: every day
    with labels), with ``arrival_date``, ``is_positive``, ``exam_reason`` and ``exam_date``.

    ``labels`` is the label store's versions (or its current view): the targets are the latest
    outcomes; each day's features see only the outcomes examined before that day and recorded
    before its cut-off. ``unexamined_share`` > 0 adds that share of
    each day's unexamined shipments as presumed negatives (``exam_reason`` null): with positives
    at 1 in 1,000 or rarer the presumption is almost always right, and the model then sees the
    whole population instead of only what the old targeting chose to examine.

    ``weighted`` adds ``sample_weight`` (:func:`selection_weights`: random exams weighted by
    their inverse selection probability, clipped at ``max_weight`` when given). The two ways of using the unexamined shipments do not
    mix: the weighted random exams already stand for them, so presumed negatives would count
    them twice (``weighted`` with ``unexamined_share`` > 0 is refused).
    """
    if weighted and unexamined_share > 0:
        raise RiskpipeError(
            "training: weighted random exams already stand for the unexamined shipments; "
            "use either weighting or unexamined_share, not both"
        )
    located = labelled_days(layout, labels)
    wanted = sorted(set(days)) if days is not None else sorted(set(located[S.ARRIVAL_DATE].to_list()))
    parts = []
    sizes: dict[date, int] = {}
    for day in wanted:
        day_labels = located.filter(pl.col(S.ARRIVAL_DATE) == day)
        if day_labels.is_empty():
            continue
        feats = day_features(layout, day, labels, cache=cache, builder=builder)
        sizes[day] = feats.height
        parts.append(attach_labels(feats, day, day_labels))
        if unexamined_share > 0:
            rest = feats.join(day_labels.select(S.SHIPMENT_ID), on=S.SHIPMENT_ID, how="anti")
            rest = rest.sample(fraction=unexamined_share, seed=seed + day.toordinal()) if rest.height else rest
            parts.append(
                rest.with_columns(
                    pl.lit(0, dtype=pl.Int8).alias(S.IS_POSITIVE),
                    pl.lit(None, dtype=S.ExamReason).alias(S.EXAM_REASON),
                    pl.lit(None, dtype=pl.Date).alias(S.EXAM_DATE),
                    pl.lit(day, dtype=pl.Date).alias(S.ARRIVAL_DATE),
                )
            )
    if not parts:
        return pl.DataFrame()
    data = pl.concat(parts, how="vertical_relaxed").sort(S.ARRIVAL_DATE, S.SHIPMENT_ID)
    if weighted:
        data = selection_weights(data, sizes, published_probabilities(layout, sorted(sizes)), max_weight)
    return data
