"""Sharded nightly scoring: features once for the whole day, then independent shards.

Features need the whole day (entity history, networks), so they are built once. Scoring a row
needs only that row's features, so the day is then split by a stable key, the hash of the
consignee address key, into ``n`` shards that can be scored anywhere (threads, Dask workers).

Two things keep the result identical to scoring the whole day in one process:

- The split is computed once, in one process (:func:`split_day`), and written to shard files;
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

from datetime import date
from pathlib import Path

import polars as pl

from riskpipe import schema as S
from riskpipe.config import Settings
from riskpipe.store import Layout, scan_raw_shipments, write_parquet_atomic

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


def split_day(layout: Layout, day: date, features_file: Path, n_shards: int) -> list[dict[str, str]]:
    """Write the raw rows and features of each shard of ``day``; returns their paths per shard.

    Rows keep the day's raw order inside each shard."""
    raw = scan_raw_shipments(layout, [day]).collect()
    features = pl.read_parquet(features_file)
    shard = raw.select(S.SHIPMENT_ID, shard_of(n_shards).alias("shard"))
    out_dir = shard_dir(layout, day)
    parts: list[dict[str, str]] = []
    for i in range(n_shards):
        ids = shard.filter(pl.col("shard") == i).select(S.SHIPMENT_ID)
        raw_i = raw.join(ids, on=S.SHIPMENT_ID, how="semi", maintain_order="left")
        feats_i = features.join(ids, on=S.SHIPMENT_ID, how="semi", maintain_order="left")
        parts.append({
            "raw": str(write_parquet_atomic(raw_i, out_dir / f"raw-{i:03d}-of-{n_shards:03d}.parquet")),
            "features": str(write_parquet_atomic(feats_i, out_dir / f"features-{i:03d}-of-{n_shards:03d}.parquet")),
            "scored": str(out_dir / f"scored-{i:03d}-of-{n_shards:03d}.parquet"),
        })
    return parts


def score_shard(layout: Layout, settings: Settings, day: date, part: dict[str, str]) -> Path:
    """Scores of one shard (cheap reasons only; the day's top rows are attributed later)."""
    from riskpipe.nightly import load_champion
    from riskpipe.rules import load_rules
    from riskpipe.score import score_day

    scored = score_day(
        layout, day, load_champion(settings), load_rules(settings.rules_path), pl.DataFrame(),
        features=pl.read_parquet(part["features"]), raw_day=pl.read_parquet(part["raw"]), top_n=0,
    )
    return write_parquet_atomic(scored, Path(part["scored"]))


def attribute_top(scored: pl.DataFrame, joined: pl.DataFrame, model, top_n: int) -> pl.DataFrame:
    """Give the day's ``top_n`` rows (by risk, then shipment id) their occlusion reasons.

    ``scored`` was scored with ``top_n=0``; ``joined`` holds raw columns and features of (at
    least) the top rows. Same selection, order and reason merge as ``score.score_frame``."""
    from riskpipe.rank import MODEL_REASON_PREFIX
    from riskpipe.score import MAX_REASONS, attribution_features, model_reasons_top

    if model is None or top_n <= 0 or scored.is_empty():
        return scored
    top_ids = scored.sort([S.RISK_SCORE, S.SHIPMENT_ID], descending=[True, False]).head(top_n).select(S.SHIPMENT_ID)
    top = top_ids.join(joined, on=S.SHIPMENT_ID, how="left", maintain_order="left")
    codes = model_reasons_top(model, top, attribution_features(model), model.baseline)
    patch = top_ids.with_columns(pl.Series(_TOP_CODES, codes, dtype=pl.List(pl.String)))
    # the rule codes lead the reasons list; the cheap model code (if any) follows them
    rule_codes = pl.col(S.REASONS).list.eval(pl.element().filter(~pl.element().str.starts_with(MODEL_REASON_PREFIX)))
    merged = pl.concat_list(rule_codes, pl.col(_TOP_CODES)).list.unique(maintain_order=True).list.head(MAX_REASONS)
    return (
        scored.join(patch, on=S.SHIPMENT_ID, how="left", maintain_order="left")
        .with_columns(pl.when(pl.col(_TOP_CODES).is_not_null()).then(merged).otherwise(pl.col(S.REASONS)).alias(S.REASONS))
        .drop(_TOP_CODES)
    )


def combine_shards(layout: Layout, settings: Settings, day: date, scored_files: list[str], features_file: Path,
                   out_file: Path, top_n: int | None = None) -> Path:
    """Concatenate shard scores in the day's raw order, attribute the day's top rows, write."""
    from riskpipe.nightly import load_champion
    from riskpipe.score import TOP_N_ATTRIBUTION, join_raw_features

    top_n = TOP_N_ATTRIBUTION if top_n is None else top_n
    raw = scan_raw_shipments(layout, [day]).collect()
    parts = pl.concat([pl.read_parquet(f) for f in scored_files], how="vertical")
    scored = raw.select(S.SHIPMENT_ID).join(parts, on=S.SHIPMENT_ID, how="inner", maintain_order="left")
    if scored.height != parts.height:
        raise ValueError(f"shards of {day}: {parts.height} scored rows but {scored.height} match the day")
    model = load_champion(settings)
    if model is not None and top_n > 0:
        head = scored.sort([S.RISK_SCORE, S.SHIPMENT_ID], descending=[True, False]).head(top_n).select(S.SHIPMENT_ID)
        raw_top = raw.join(head, on=S.SHIPMENT_ID, how="semi")
        feats_top = pl.read_parquet(features_file).join(head, on=S.SHIPMENT_ID, how="semi")
        scored = attribute_top(scored, join_raw_features(raw_top, feats_top), model, top_n)
    return write_parquet_atomic(scored, out_file)
