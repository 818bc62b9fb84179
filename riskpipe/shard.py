"""Sharded nightly scoring: features once for the whole day, then independent shards.

Features need the whole day (entity history, networks), so they are built once. Scoring a row
needs only that row's features, so the day is then split by a stable key, the hash of the
consignee address key, into ``n`` shards that can be scored anywhere (threads, Dask workers).

Two things keep the result identical to scoring the whole day in one process:

- The split is computed once, in one process (:func:`split_day`, streaming), and written to shard files;
  which shard a row lands in never changes its score. (Polars' ``hash`` with a fixed seed is
  deterministic across processes for a given Polars version; the pinned version keeps the
  assignment reproducible, but correctness does not depend on it.)
- Model attributions (occlusion reasons) go to the ``top_n`` highest-scored rows *of the day*.
  Shards score with ``top_n=0`` (every row gets the cheap reason) and :func:`combine_shards`
  attributes the whole day's top rows after concatenation, exactly as ``score_frame`` would.

Days above the scoring cascade's threshold (``riskpipe.score.CASCADE_MIN_ROWS`` rows per shard)
are scored by each shard's own cascade, whose candidate set is per batch anyway; below it the
sharded result equals the single-process one exactly (tested).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import polars as pl

from riskpipe import schema as S
from riskpipe.config import Settings
from riskpipe.errors import RiskpipeError
from riskpipe.features.build import sorted_by_id
from riskpipe.registry import LoadedModel, load_model
from riskpipe.rules import load_rules, rules_file
from riskpipe.score import (
    MAX_REASONS,
    MODEL_REASON_PREFIX,
    NO_MODEL_VERSION,
    TOP_N_ATTRIBUTION,
    attribution_features,
    join_raw_features,
    load_champion,
    model_reasons_top,
    score_day,
    scoring_columns,
)
from riskpipe.search import watchlist_step
from riskpipe.store import Layout, scan_raw_shipments, tmp_sibling, write_parquet_atomic

#: fixed seed of the shard hash (changing it moves rows between shards, never their scores)
SHARD_SEED = 20_260_105
_TOP_CODES = "_top_codes"


def shard_of(n_shards: int) -> pl.Expr:
    """Shard number ``0..n_shards-1`` of each raw row, from its consignee address key.

    All shipments to one address land in the same shard (a null key is hashed as "").
    """
    if n_shards < 1:
        raise ValueError(f"shards: need at least 1, got {n_shards}")
    return (pl.col(S.CONSIGNEE_ADDRESS_KEY).fill_null("").hash(seed=SHARD_SEED) % n_shards).cast(pl.Int64)


def shard_dir(layout: Layout, day: date) -> Path:
    return layout.home / "work" / day.isoformat() / "shards"


def split_day(
    layout: Layout,
    day: date,
    features_file: Path,
    n_shards: int,
    raw_columns: list[str] | None = None,
    feature_columns: list[str] | None = None,
) -> list[dict[str, str]]:
    """Write the raw rows and features of each shard of ``day``; returns their paths per shard.
    ``raw_columns`` / ``feature_columns``: only these (default all; the shipment id always).

    Streams from the files (a shard's rows never all sit in memory with the others')."""
    raw = scan_raw_shipments(layout, [day])
    features = pl.scan_parquet(features_file)
    if feature_columns is not None:
        features = features.select(list(dict.fromkeys([S.SHIPMENT_ID, *feature_columns])))
    out_dir = shard_dir(layout, day)
    shutil.rmtree(out_dir, ignore_errors=True)  # leftovers of a killed run
    out_dir.mkdir(parents=True, exist_ok=True)
    parts: list[dict[str, str]] = []
    for i in range(n_shards):
        rows = raw.filter(shard_of(n_shards) == i)
        if raw_columns is not None:
            rows = rows.select(list(dict.fromkeys([S.SHIPMENT_ID, *raw_columns])))
        name = f"{i:03d}-of-{n_shards:03d}.parquet"
        part = {
            "raw": out_dir / f"raw-{name}",
            "features": out_dir / f"features-{name}",
            "scored": out_dir / f"scored-{name}",
        }
        for kind, frame in (
            ("raw", rows),
            ("features", features.join(rows.select(S.SHIPMENT_ID), on=S.SHIPMENT_ID, how="semi")),
        ):
            tmp = tmp_sibling(part[kind])
            try:
                frame.sink_parquet(tmp, engine="streaming")
                os.replace(tmp, part[kind])
            finally:
                tmp.unlink(missing_ok=True)
        parts.append({k: str(v) for k, v in part.items()})
    return parts


def night_champion(settings: Settings) -> str:
    """The champion version a night is scored with (``NO_MODEL_VERSION`` when none is usable),
    resolved once when the night starts and passed to every shard, piece and the combine step:
    loading "the champion of this instant" in each of them let a promotion or rollback during the
    night score one night with two models, or attribute its top rows with another model."""
    model = load_champion(settings)
    return NO_MODEL_VERSION if model is None else model.version


def pinned_model(settings: Settings, version: str | None) -> LoadedModel | None:
    """The model of ``version`` (:func:`night_champion`; None: the champion of this instant,
    ``NO_MODEL_VERSION``: none, the rules alone rank), loaded and verified by the registry."""
    if version is None:
        return load_champion(settings)
    if version == NO_MODEL_VERSION:
        return None
    return load_model(Path(settings.models_dir), version, key_path=settings.registry_key_path)


def _scores_model(settings: Settings, day: date, versions: list[str], model_version: str | None) -> LoadedModel | None:
    """The model that attributes the day's top rows: ``model_version`` if given, else the one
    that scored the day (``versions``: its scores' distinct model versions), never the champion
    of this instant (a promotion since scoring would explain the scores with another model)."""
    if model_version is None:
        if len(versions) > 1:
            raise RiskpipeError(f"scores of {day} come from several models {sorted(versions)}: rerun the night")
        model_version = versions[0] if versions else NO_MODEL_VERSION
    return pinned_model(settings, model_version)


def score_shard(
    layout: Layout, settings: Settings, day: date, part: dict[str, str], model_version: str | None = None
) -> Path:
    """Scores of one shard (cheap reasons only; the day's top rows are attributed later) by the
    night's model ``model_version`` (:func:`night_champion`)."""
    model, rules = pinned_model(settings, model_version), load_rules(rules_file(settings))
    feature_columns, raw_columns = scoring_columns(model, rules, pl.read_parquet_schema(part["features"]))
    scored = score_day(
        layout,
        day,
        model,
        rules,
        pl.DataFrame(),
        features=pl.read_parquet(part["features"], columns=feature_columns),
        raw_day=pl.read_parquet(part["raw"], columns=raw_columns),
        top_n=0,
    )
    scored = watchlist_step(layout, settings, day, scored)  # WATCHLIST reasons of this shard's rows
    return write_parquet_atomic(scored, Path(part["scored"]))


def top_shipment_ids(scored: pl.DataFrame, top_n: int) -> pl.DataFrame:
    """The ``top_n`` shipment ids by risk, then id (sorting the two columns only: a sort of the
    whole scored frame of a 16 M-row day copied all of it)."""
    ranked = scored.select(S.SHIPMENT_ID, S.RISK_SCORE).sort([S.RISK_SCORE, S.SHIPMENT_ID], descending=[True, False])
    return ranked.head(top_n).select(S.SHIPMENT_ID)


def attribute_top(scored: pl.DataFrame, joined: pl.DataFrame, model, top_n: int) -> pl.DataFrame:
    """Give the day's ``top_n`` rows (by risk, then shipment id) their occlusion reasons.

    ``scored`` was scored with ``top_n=0``; ``joined`` holds raw columns and features of (at
    least) the top rows. Same selection, order and reason merge as ``score.score_frame``."""
    if model is None or top_n <= 0 or scored.is_empty():
        return scored
    return apply_top_reasons(scored, top_reasons(top_shipment_ids(scored, top_n), joined, model))


def top_reasons(top_ids: pl.DataFrame, joined: pl.DataFrame, model) -> pl.DataFrame:
    """(shipment id, occlusion reason codes) of the day's top rows ``top_ids`` (in rank order);
    ``joined`` holds their raw columns and features."""
    top = top_ids.join(joined, on=S.SHIPMENT_ID, how="left", maintain_order="left")
    codes = model_reasons_top(model, top, attribution_features(model), model.baseline)
    return top_ids.select(S.SHIPMENT_ID).with_columns(pl.Series(_TOP_CODES, codes, dtype=pl.List(pl.String)))


def apply_top_reasons(scored: pl.DataFrame, patch: pl.DataFrame) -> pl.DataFrame:
    """``scored`` with the rows of ``patch`` (:func:`top_reasons`; rows of other frames are
    ignored) given their reasons: the rule codes, then the occlusion codes."""
    # the rule codes lead the reasons list; the cheap model code (if any) follows them
    rule_codes = pl.col(S.REASONS).list.eval(pl.element().filter(~pl.element().str.starts_with(MODEL_REASON_PREFIX)))
    merged = pl.concat_list(rule_codes, pl.col(_TOP_CODES)).list.unique(maintain_order=True).list.head(MAX_REASONS)
    # only the top rows change: their new reasons are computed on their own and spliced into the
    # column between zero-copy slices of the old one (a join of the whole frame copied every
    # column of a 16 M-row day; gathering the list column took 6.8 s and 3.7 GB)
    position = scored.get_column(S.SHIPMENT_ID).is_in(patch.get_column(S.SHIPMENT_ID).implode()).arg_true()
    if position.len() == 0:
        return scored
    top_rows = (
        scored.select(S.SHIPMENT_ID, S.REASONS)[position]
        .join(patch, on=S.SHIPMENT_ID, how="left", maintain_order="left")
        .select(pl.when(pl.col(_TOP_CODES).is_not_null()).then(merged).otherwise(pl.col(S.REASONS)).alias(S.REASONS))
        .get_column(S.REASONS)
        .cast(scored.schema[S.REASONS])
    )
    old = scored.get_column(S.REASONS)
    pieces, prev = [], 0
    for j, p in enumerate(position.to_list()):  # ascending row positions
        pieces += [old.slice(prev, p - prev), top_rows.slice(j, 1)]
        prev = p + 1
    pieces.append(old.slice(prev))
    return scored.with_columns(pl.concat(pieces, rechunk=False))


def combine_shards(
    layout: Layout,
    settings: Settings,
    day: date,
    scored_files: list[str],
    features_file: Path,
    out_file: Path,
    top_n: int | None = None,
    model_version: str | None = None,
) -> Path:
    """Concatenate shard scores in the order of the day's features file (the order a
    single-process run scores in), attribute the day's top rows with the night's model
    ``model_version`` (None: the model that scored the shards), write."""
    top_n = TOP_N_ATTRIBUTION if top_n is None else top_n
    raw = scan_raw_shipments(layout, [day])
    # the features file is sorted by shipment id (build_features): sorting the concatenated shards
    # the same way (one column at a time) restores the single-process order without a join copy
    scored = sorted_by_id(pl.concat([pl.read_parquet(f) for f in scored_files], how="vertical"))
    order = pl.scan_parquet(features_file).select(S.SHIPMENT_ID).collect().get_column(S.SHIPMENT_ID)
    if not scored.get_column(S.SHIPMENT_ID).equals(order):
        if scored.height != order.len():
            raise ValueError(f"shards of {day}: {scored.height} scored rows for {order.len()} shipments of the day")
        scored = order.to_frame().join(scored, on=S.SHIPMENT_ID, how="inner", maintain_order="left")
        if scored.height != order.len():
            raise ValueError(f"shards of {day}: the scored shipments are not the day's")
    del order
    versions = scored.get_column(S.MODEL_VERSION).unique().to_list() if model_version is None else []
    model = _scores_model(settings, day, versions, model_version)
    if model is not None and top_n > 0:
        head = top_shipment_ids(scored, top_n)
        top = pl.col(S.SHIPMENT_ID).is_in(head[S.SHIPMENT_ID].implode())  # a semi join read the whole day
        raw_top = raw.filter(top).collect()
        feats_top = pl.scan_parquet(features_file).filter(top).collect()
        scored = attribute_top(scored, join_raw_features(raw_top, feats_top), model, top_n)
    write_parquet_atomic(scored, out_file)
    shutil.rmtree(shard_dir(layout, day), ignore_errors=True)  # a day's copy: no longer needed
    return out_file


def checked_id_ranges(files: list[str], day: date, columns: list[str]) -> Iterator[pl.DataFrame]:
    """``columns`` of each of ``files`` (pieces of a day in id order), one file at a time, each
    checked to hold unique shipment ids above the previous file's: the day's ids are never held
    at once (that check held them all: 80 bytes a row)."""
    last = None
    for f in files:
        piece = pl.read_parquet(f, columns=columns)
        unique, low, high = piece.select(
            pl.col(S.SHIPMENT_ID).n_unique().alias("n"),
            pl.col(S.SHIPMENT_ID).min().alias("low"),
            pl.col(S.SHIPMENT_ID).max().alias("high"),
        ).row(0)
        if unique != piece.height or (piece.height and last is not None and low <= last):
            raise ValueError(f"pieces of {day}: {Path(f).name} repeats shipments or is out of id order")
        last = high if piece.height else last
        yield piece


def combine_pieces(
    layout: Layout,
    settings: Settings,
    day: date,
    scored_files: list[str],
    features_file: Path,
    out_file: Path,
    top_n: int | None = None,
    model_version: str | None = None,
) -> Path:
    """The day's scores from pieces that are contiguous id ranges in order (the night on shards,
    :mod:`riskpipe.distnight`): the day's top rows get their occlusion reasons in their piece,
    then the pieces are streamed into ``out_file``. Holds one piece and the best ``top_n`` rows of
    each, never the day (:func:`combine_shards` held the whole scored day, an earlier version its
    ids and risks); same frame as :func:`combine_shards`. The top rows are attributed by the
    night's model ``model_version`` (None: the pieces' one)."""
    top_n = TOP_N_ATTRIBUTION if top_n is None else top_n
    scan = pl.scan_parquet(scored_files)
    rows = pl.scan_parquet(features_file).select(pl.len()).collect().item()
    scored_rows, tops = 0, []
    for piece in checked_id_ranges(scored_files, day, [S.SHIPMENT_ID, S.RISK_SCORE]):  # and their best rows
        scored_rows += piece.height
        tops.append(piece.join(top_shipment_ids(piece, top_n), on=S.SHIPMENT_ID, how="semi"))
    if scored_rows != rows:
        raise ValueError(f"pieces of {day}: {scored_rows} scored rows for {rows} shipments of the day")
    narrow = pl.concat(tops) if tops else pl.DataFrame(schema={S.SHIPMENT_ID: pl.String, S.RISK_SCORE: pl.Float64})
    versions = (
        scan.select(pl.col(S.MODEL_VERSION).unique()).collect().get_column(S.MODEL_VERSION).to_list()
        if model_version is None
        else []
    )
    model = _scores_model(settings, day, versions, model_version)
    if model is not None and top_n > 0 and rows:
        head = top_shipment_ids(narrow, top_n)
        del narrow
        top = pl.col(S.SHIPMENT_ID).is_in(head[S.SHIPMENT_ID].implode())  # a semi join read the whole day
        raw_top = scan_raw_shipments(layout, [day]).filter(top).collect()
        feats_top = pl.scan_parquet(features_file).filter(top).collect()
        patch = top_reasons(head, join_raw_features(raw_top, feats_top), model)
        for f in scored_files:  # a piece holding top rows is rewritten with their reasons
            piece = pl.read_parquet(f)
            if piece.get_column(S.SHIPMENT_ID).is_in(patch.get_column(S.SHIPMENT_ID).implode()).any():
                write_parquet_atomic(apply_top_reasons(piece, patch), Path(f))
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_sibling(out_file)
    try:
        pl.scan_parquet(scored_files).sink_parquet(tmp, engine="streaming")
        os.replace(tmp, out_file)
    finally:
        tmp.unlink(missing_ok=True)
    shutil.rmtree(shard_dir(layout, day), ignore_errors=True)  # a day's copy: no longer needed
    return out_file
