"""Rule feedback: per rule, hits per night, the exams it caused, findings, and precision with a
Wilson interval, on two views of the outcomes.

A rule hit is its code among a shipment's ``reasons`` in a night's ``scores.parquet`` (the
codes that are not the model's ``model:`` ones, ``WATCHLIST`` included). Outcomes come from the
labels store:

- *labelled*: every examined hit. Biased towards what the list chose to examine (a rule that
  put shipments on the list is judged on the ones it put there).
- *random*: hits examined at random (``exam_reason = random``) or picked by the list's
  exploration share (``selection = exploration`` in the night's targets). These were not chosen
  for their risk, so their hit rate estimates the rule's precision on all its hits; few exams,
  wide interval.

"Exams caused" are the examined hits with ``exam_reason = targeted`` that were on the night's
targeting list: exams the rule's shipments cost.
"""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import polars as pl

from riskpipe import publish
from riskpipe import schema as S
from riskpipe.score import MODEL_REASON_PREFIX
from riskpipe.store import Layout

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float | None, float | None]:
    """The Wilson score interval of ``k`` successes in ``n`` trials (None, None when n = 0)."""
    if n <= 0:
        return None, None
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _day_of(path: Path) -> date | None:
    try:
        return date.fromisoformat(path.parent.name)
    except ValueError:
        return None


def rule_hits(layout: Layout, days: list[date] | None = None) -> pl.DataFrame:
    """One row per (night, rule code, shipment) hit, with the shipment's selection on the list
    (null: not a target)."""
    publish.ensure_all_complete(layout)
    frames = []
    for path in sorted(layout.scores.glob("*/scores.parquet")):
        d = _day_of(path)
        if d is None or (days is not None and d not in days):
            continue
        hits = (
            pl.scan_parquet(path)
            .select(S.SHIPMENT_ID, S.REASONS)
            .explode(S.REASONS)
            .filter(pl.col(S.REASONS).is_not_null() & ~pl.col(S.REASONS).str.starts_with(MODEL_REASON_PREFIX))
            .select(pl.lit(d, pl.Date).alias(S.ARRIVAL_DATE), pl.col(S.REASONS).alias("code"), S.SHIPMENT_ID)
        )
        targets = layout.day_dir(layout.targets, d) / "targets.parquet"
        if targets.exists():
            sel = pl.scan_parquet(targets).select(S.SHIPMENT_ID, pl.col(S.SELECTION).cast(pl.String))
            hits = hits.join(sel, on=S.SHIPMENT_ID, how="left")
        else:
            hits = hits.with_columns(pl.lit(None, pl.String).alias(S.SELECTION))
        frames.append(hits)
    if not frames:
        return pl.DataFrame(
            schema={S.ARRIVAL_DATE: pl.Date, "code": pl.String, S.SHIPMENT_ID: pl.String, S.SELECTION: pl.String}
        )
    return pl.concat(pl.collect_all(frames))


def rule_stats(
    layout: Layout, labels: pl.DataFrame, days: list[date] | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(per rule: hits, nights, exams, exams caused, findings, precision and its interval on the
    labelled and the random view; per night and rule: hits), rules by hits."""
    hits = rule_hits(layout, days)
    lab = labels.select(
        S.SHIPMENT_ID,
        pl.col(S.EXAM_REASON).cast(pl.String).alias("exam_reason"),
        pl.col(S.OUTCOME).cast(pl.String).is_in(S.POSITIVE_OUTCOMES).alias("positive"),
    )
    joined = hits.join(lab, on=S.SHIPMENT_ID, how="left")
    examined = pl.col("exam_reason").is_not_null()
    random = examined & ((pl.col("exam_reason") == "random") | (pl.col(S.SELECTION) == "exploration"))
    per_rule = (
        joined.group_by("code")
        .agg(
            pl.len().alias("hits"),
            pl.col(S.ARRIVAL_DATE).n_unique().alias("nights"),
            examined.sum().alias("exams"),
            (examined & (pl.col("exam_reason") == "targeted") & pl.col(S.SELECTION).is_not_null())
            .sum()
            .alias("exams_caused"),
            (examined & pl.col("positive")).sum().alias("findings"),
            random.sum().alias("random_exams"),
            (random & pl.col("positive")).sum().alias("random_findings"),
        )
        .sort(["hits", "code"], descending=[True, False])
    )
    rows = []
    for r in per_rule.iter_rows(named=True):
        lo, hi = wilson(r["findings"], r["exams"])
        rlo, rhi = wilson(r["random_findings"], r["random_exams"])
        rows.append(
            {
                **r,
                "precision": r["findings"] / r["exams"] if r["exams"] else None,
                "precision_lo": lo,
                "precision_hi": hi,
                "random_precision": r["random_findings"] / r["random_exams"] if r["random_exams"] else None,
                "random_lo": rlo,
                "random_hi": rhi,
            }
        )
    cols = [
        "code",
        "hits",
        "nights",
        "exams",
        "exams_caused",
        "findings",
        "precision",
        "precision_lo",
        "precision_hi",
        "random_exams",
        "random_findings",
        "random_precision",
        "random_lo",
        "random_hi",
    ]
    int_cols = {"hits", "nights", "exams", "exams_caused", "findings", "random_exams", "random_findings"}
    schema = {c: (pl.String if c == "code" else pl.Int64 if c in int_cols else pl.Float64) for c in cols}
    stats = pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)
    per_night = hits.group_by(S.ARRIVAL_DATE, "code").agg(pl.len().alias("hits")).sort(S.ARRIVAL_DATE, "code")
    return stats, per_night
