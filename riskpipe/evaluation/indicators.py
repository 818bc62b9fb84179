"""Evaluation only: how often each indicator family fires on true positives vs negatives.

Reads the synthetic ground truth (``truth/``); nothing in the feature path imports this module.
"""

from __future__ import annotations

from datetime import date
from typing import cast

import polars as pl

from riskpipe import schema as S
from riskpipe.errors import RiskpipeError
from riskpipe.features import build_features, family_fires
from riskpipe.rules import load_rules
from riskpipe.store import Layout, scan_raw_shipments


def truth_days(layout: Layout) -> list[date]:
    """Arrival days that have both raw manifests and ground truth, ascending."""
    base = layout.truth
    if not base.exists():
        return []
    have = {
        date.fromisoformat(p.name.split("=", 1)[1]) for p in base.glob("arrival_date=*") if any(p.glob("*.parquet"))
    }
    return sorted(have & set(layout.raw_days()))


def indicator_table(layout: Layout, days: list[date], labels: pl.DataFrame | None = None) -> pl.DataFrame:
    """Per family (and for "any family" and the shipped rules): the share of true positives and of
    negatives it fires on, over the shipments of ``days``, and the ratio of the two (lift)."""
    if not days:
        raise RiskpipeError(f"indicators: no day of {layout.home} has both raw manifests and ground truth (truth/)")
    rules = load_rules()
    parts = []
    for d in days:
        feats = build_features(layout, d, labels)
        truth = pl.read_parquet(layout.partition(layout.truth, d) / "*.parquet").select(
            S.SHIPMENT_ID, pl.col(S.TRUE_CLASS).cast(pl.String).is_in(S.POSITIVE_OUTCOMES).alias("positive")
        )
        fires = pl.concat([feats.select(S.SHIPMENT_ID), family_fires(feats)], how="horizontal")
        fires = fires.with_columns(pl.any_horizontal(pl.exclude(S.SHIPMENT_ID)).alias("any family"))
        raw = (
            scan_raw_shipments(layout, [d])
            .select(
                [
                    c
                    for c in S.RAW_SHIPMENT_SCHEMA
                    if (c in rules.fields and c not in feats.columns) or c == S.SHIPMENT_ID
                ]
            )
            .collect()
        )
        scored = rules.apply(raw.join(feats, on=S.SHIPMENT_ID, how="inner"))
        fires = fires.join(
            scored.select(S.SHIPMENT_ID, (pl.col(S.RULE_SCORE) >= 0.2).alias("rules (score >= 0.2)")), on=S.SHIPMENT_ID
        )
        parts.append(fires.join(truth, on=S.SHIPMENT_ID, how="inner").drop(S.SHIPMENT_ID))
    frame = pl.concat(parts)
    families = [c for c in frame.columns if c != "positive"]
    n_pos = frame.get_column("positive").sum()
    n_neg = frame.height - n_pos
    rows = []
    for fam in families:
        pos = _mean(frame.filter(pl.col("positive")).get_column(fam)) if n_pos else None
        neg = _mean(frame.filter(~pl.col("positive")).get_column(fam)) if n_neg else None
        fired = frame.get_column(fam).sum()
        rows.append(
            {
                "family": fam,
                "fires_on_positives": pos,
                "fires_on_negatives": neg,
                "lift": (pos / neg) if pos is not None and neg else None,
                # what an officer examining every shipment it fires on would find (with the fired count)
                "fired": int(fired),
                "precision": frame.filter(pl.col(fam)).get_column("positive").mean() if fired else None,
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "family": pl.String,
            "fires_on_positives": pl.Float64,
            "fires_on_negatives": pl.Float64,
            "lift": pl.Float64,
            "fired": pl.Int64,
            "precision": pl.Float64,
        },
    ).with_columns(pl.lit(int(n_pos)).alias("positives"), pl.lit(int(n_neg)).alias("negatives"))


def _mean(flags: pl.Series) -> float | None:
    """The share of true values of a boolean column (None when it holds no value)."""
    return cast("float | None", flags.mean())  # a boolean mean is a float: polars types it as any scalar


def table_markdown(table: pl.DataFrame, days: list[date]) -> str:
    """The table as Markdown (for the README)."""
    n_pos = table.item(0, "positives") if table.height else 0
    n_neg = table.item(0, "negatives") if table.height else 0
    total = n_pos + n_neg
    prevalence = f"{n_pos / total:.4f}" if total else "n/a"
    lines = [
        f"Arrival days {days[0]} to {days[-1]}: {n_pos} fentanyl-related shipments (truth), {n_neg} others: "
        f"prevalence {prevalence} (ground truth of every shipment; no capacity: each flag's firing rates).",
        "",
        "| indicator family | fires on positives | fires on negatives | lift | fired | precision |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in table.iter_rows(named=True):
        pos = "n/a" if r["fires_on_positives"] is None else f"{100 * r['fires_on_positives']:.1f} %"
        neg = "n/a" if r["fires_on_negatives"] is None else f"{100 * r['fires_on_negatives']:.2f} %"
        lift = "n/a" if r["lift"] is None else f"{r['lift']:.1f}"
        fired = f"{r['fired']:,}" if r.get("fired") is not None else "n/a"
        prec = "n/a" if r.get("precision") is None else f"{100 * r['precision']:.1f} %"
        lines.append(f"| {r['family']} | {pos} | {neg} | {lift} | {fired} | {prec} |")
    return "\n".join(lines) + "\n"
