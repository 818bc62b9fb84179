"""Value indicators: declared value in USD, per kg and per piece against the norm of the same HTS
heading (learned from history strictly before the day), round values, and the $800-per-person-
per-day aggregate across one consignee's parcels of the day (a split-shipment signal)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl

from riskpipe import schema as S
from riskpipe.features.family import DayContext, FamilyDay, NoWork
from riskpipe.features.keys import ensure_keys, key_col
from riskpipe.store import Layout

HEADING = "hts_heading"  # helper / history column: first 4 digits of the HTS code
LOG_VPK = "_log_value_per_kg"
LOG_VPP = "_log_value_per_piece"
NORM_LOG_VPK = "_norm_log_value_per_kg"
NORM_LOG_VPP = "_norm_log_value_per_piece"

DECLARED_VALUE_USD = S.DECLARED_VALUE_USD
VALUE_PER_KG_USD = "value_per_kg_usd"
VALUE_PER_PIECE_USD = "value_per_piece_usd"
VALUE_PER_KG_VS_HEADING = "value_per_kg_vs_heading"
VALUE_PER_PIECE_VS_HEADING = "value_per_piece_vs_heading"
VALUE_ROUND = "value_round"
VALUE_JUST_UNDER_800 = "value_just_under_800"
CONSIGNEE_DAY_PARCELS = "consignee_day_parcels"
CONSIGNEE_DAY_VALUE_USD = "consignee_day_value_usd"
CONSIGNEE_DAY_OVER_800 = "consignee_day_over_800"

COLUMNS = [
    DECLARED_VALUE_USD,
    VALUE_PER_KG_USD,
    VALUE_PER_PIECE_USD,
    VALUE_PER_KG_VS_HEADING,
    VALUE_PER_PIECE_VS_HEADING,
    VALUE_ROUND,
    VALUE_JUST_UNDER_800,
    CONSIGNEE_DAY_PARCELS,
    CONSIGNEE_DAY_VALUE_USD,
    CONSIGNEE_DAY_OVER_800,
]

DE_MINIMIS_USD = 800.0
#: a heading norm needs this many parcels in the norm window
MIN_NORM_COUNT = 20
#: |log ratio| beyond which the value per kg is "far from the heading's norm" (x5)
FAR_FROM_NORM = 1.6094379124341003


def heading_expr() -> pl.Expr:
    digits = pl.col(S.HTS_CODE).str.replace_all(r"\D", "")
    return pl.when(digits.str.len_bytes() >= 4).then(digits.str.slice(0, 4)).alias(HEADING)


def log_value_exprs() -> list[pl.Expr]:
    """ln((value+1)/kg) and ln((value+1)/piece): the quantities whose heading means are the norms.
    A non-finite one (a value that slipped past ingest's limits) is null: summed into the
    history it would poison its heading's norm for a month."""
    v = pl.col(S.DECLARED_VALUE_USD) + 1.0
    w = pl.col(S.GROSS_WEIGHT_KG)
    p = pl.col(S.PIECE_COUNT)
    per_kg = (v / w).log()
    per_piece = (v / p.cast(pl.Float64)).log()
    return [
        pl.when((w > 0) & per_kg.is_finite()).then(per_kg).alias(LOG_VPK),
        pl.when((p > 0) & per_piece.is_finite()).then(per_piece).alias(LOG_VPP),
    ]


PERSON_KEYS = ["cons_name", "cons_addr"]  # one person: a consignee name (and ZIP) at one address


def prepare_rows(frame: pl.LazyFrame, norms: pl.LazyFrame) -> pl.LazyFrame:
    """Heading, log values and the heading's norms beside each row (what :func:`row_exprs` reads)."""
    return frame.with_columns(heading_expr(), *log_value_exprs()).join(norms, on=HEADING, how="left")


def row_exprs() -> list[pl.Expr]:
    """The columns of the family that need only the row itself (after :func:`prepare_rows`)."""
    usd = pl.col(S.DECLARED_VALUE_USD)
    orig = pl.col(S.DECLARED_VALUE)
    return [
        pl.when(pl.col(S.GROSS_WEIGHT_KG) > 0).then(usd / pl.col(S.GROSS_WEIGHT_KG)).alias(VALUE_PER_KG_USD),
        pl.when(pl.col(S.PIECE_COUNT) > 0)
        .then(usd / pl.col(S.PIECE_COUNT).cast(pl.Float64))
        .alias(VALUE_PER_PIECE_USD),
        (pl.col(LOG_VPK) - pl.col(NORM_LOG_VPK)).alias(VALUE_PER_KG_VS_HEADING),
        (pl.col(LOG_VPP) - pl.col(NORM_LOG_VPP)).alias(VALUE_PER_PIECE_VS_HEADING),
        ((orig >= 10) & ((orig % 10) == 0)).fill_null(False).cast(pl.Int8).alias(VALUE_ROUND),
        ((usd >= 700) & (usd < DE_MINIMIS_USD)).fill_null(False).cast(pl.Int8).alias(VALUE_JUST_UNDER_800),
    ]


ROW_COLUMNS = [
    DECLARED_VALUE_USD,
    VALUE_PER_KG_USD,
    VALUE_PER_PIECE_USD,
    VALUE_PER_KG_VS_HEADING,
    VALUE_PER_PIECE_VS_HEADING,
    VALUE_ROUND,
    VALUE_JUST_UNDER_800,
]
DAY_COLUMNS = [CONSIGNEE_DAY_PARCELS, CONSIGNEE_DAY_VALUE_USD, CONSIGNEE_DAY_OVER_800]


#: units per US dollar of the day value sums (exact integer sums)
_MICRO = 1_000_000
#: values summed exactly: below this (9,000 parcels of it would overflow the integer sum)
EXACT_BELOW_USD = 1e9


def day_exprs() -> list[pl.Expr]:
    """The columns that aggregate one person's parcels of the day (windows over the person keys:
    they need every row of the day, but only the keys and the value in USD)."""
    usd = pl.col(S.DECLARED_VALUE_USD)
    person = [key_col(k) for k in PERSON_KEYS]
    # summed in whole micro-dollars: an integer sum is the same in any order (a float sum of a
    # person's parcels changed in its last bit from one build of a day to the next, and with it
    # a score: the provisional and nightly scores of one day differed); a sort per person would
    # cost about 1 s more at 4 M rows
    # (values that are not finite or beyond EXACT_BELOW_USD, nonsense a manifest may still carry,
    # are added as floats, as before)
    exact = usd.is_finite() & (usd.abs() < EXACT_BELOW_USD)
    micro = pl.when(exact).then((usd * _MICRO).round()).cast(pl.Int64, strict=False).sum().over(person)
    rest = pl.when(exact).then(pl.lit(0.0)).otherwise(usd).sum().over(person)
    day_value = micro / _MICRO + rest
    day_parcels = pl.len().over(person)
    return [
        day_parcels.cast(pl.Int32).alias(CONSIGNEE_DAY_PARCELS),
        day_value.alias(CONSIGNEE_DAY_VALUE_USD),
        ((day_value > DE_MINIMIS_USD) & (day_parcels > 1) & (usd.max().over(person) <= DE_MINIMIS_USD))
        .fill_null(False)
        .cast(pl.Int8)
        .alias(CONSIGNEE_DAY_OVER_800),
    ]


def add_value(frame: pl.LazyFrame, norms: pl.LazyFrame) -> pl.LazyFrame:
    """Add the value family. ``norms``: HEADING, NORM_LOG_VPK, NORM_LOG_VPP (from history before
    the day; may be empty)."""
    frame = prepare_rows(ensure_keys(frame, PERSON_KEYS), norms)
    return frame.with_columns(*row_exprs(), *day_exprs())


#: the days' sums of logs are added for the norms as integers of this many units (exact: a float
#: of magnitude at least 2**-8 is a whole number of them)
_NORM_GRID = 2**60
#: sums at least this large (nonsense: a log is at most about 710 a parcel) are added as floats
_NORM_EXACT_BELOW = 2.0**56


def _exact_sum(column: str) -> list[pl.Expr]:
    """``column``'s sum as an Int128 of ``_NORM_GRID`` units (``_units``) plus, as a float, the
    values too large or not finite for it (``_rest``): an integer sum is the same in any order."""
    x = pl.col(column)
    exact = x.is_finite() & (x.abs() < _NORM_EXACT_BELOW)
    units = pl.when(exact).then((x * _NORM_GRID).round()).cast(pl.Int128, strict=False)
    rest = pl.when(exact).then(pl.lit(0.0)).otherwise(x)
    return [units.sum().alias(f"{column}_units"), rest.sum().alias(f"{column}_rest")]


def _exact_mean(column: str, count: str) -> pl.Expr:
    return (pl.col(f"{column}_units").cast(pl.Float64) / _NORM_GRID + pl.col(f"{column}_rest")) / pl.col(count)


def norms_from_history(heading_days: pl.LazyFrame) -> pl.LazyFrame:
    """Heading norms (mean log value per kg / per piece) from daily heading aggregates
    (HEADING, n, sum_log_vpk, n_vpk, sum_log_vpp, n_vpp) of the norm window. The days' sums are
    added exactly: a float sum's last bit followed the order the streaming engine's threads
    finished in, so two builds of one day (provisional and nightly) had different norms."""
    agg = heading_days.group_by(HEADING).agg(
        pl.col("n_vpk").sum(), *_exact_sum("sum_log_vpk"), pl.col("n_vpp").sum(), *_exact_sum("sum_log_vpp")
    )
    vpk = _exact_mean("sum_log_vpk", "n_vpk")
    vpp = _exact_mean("sum_log_vpp", "n_vpp")
    # a history table written before log_value_exprs dropped non-finite values may hold an inf sum
    return agg.select(
        HEADING,
        pl.when((pl.col("n_vpk") >= MIN_NORM_COUNT) & vpk.is_finite()).then(vpk).alias(NORM_LOG_VPK),
        pl.when((pl.col("n_vpp") >= MIN_NORM_COUNT) & vpp.is_finite()).then(vpp).alias(NORM_LOG_VPP),
    )


def heading_aggregates(prepared: pl.LazyFrame) -> pl.LazyFrame:
    """What history keeps per heading and day for the norms (from a frame with HEADING and the
    log value columns)."""
    return heading_sums(heading_units(prepared))


def _units(x: pl.Expr) -> pl.Expr:
    """A log value (finite, at most about 710: :func:`log_value_exprs`) as a whole number of
    ``_NORM_GRID`` units (exact from magnitude 2**-8; below it, off by at most 2**-61)."""
    return (x * _NORM_GRID).round().cast(pl.Int128, strict=False)


def heading_units(prepared: pl.LazyFrame) -> pl.LazyFrame:
    """:func:`heading_aggregates` with the sums as Int128 ``_NORM_GRID`` units (``*_units``):
    parts of a day (chunks) added up with :func:`heading_sums` give its sums exactly. A float sum
    of the day's rows changed in its last bit with the order the streaming engine added them in."""
    return (
        prepared.filter(pl.col(HEADING).is_not_null())
        .group_by(HEADING)
        .agg(
            pl.col(LOG_VPK).count().cast(pl.Int64).alias("n_vpk"),
            _units(pl.col(LOG_VPK)).sum().alias("sum_log_vpk_units"),
            pl.col(LOG_VPP).count().cast(pl.Int64).alias("n_vpp"),
            _units(pl.col(LOG_VPP)).sum().alias("sum_log_vpp_units"),
        )
    )


def heading_sums(units: pl.LazyFrame) -> pl.LazyFrame:
    """The heading table (:func:`heading_aggregates`) from :func:`heading_units` frames (of the
    whole day, or of its parts concatenated)."""
    total = units.group_by(HEADING).agg(pl.col("n_vpk", "sum_log_vpk_units", "n_vpp", "sum_log_vpp_units").sum())
    return total.select(
        HEADING,
        "n_vpk",
        (pl.col("sum_log_vpk_units").cast(pl.Float64) / _NORM_GRID).alias("sum_log_vpk"),
        "n_vpp",
        (pl.col("sum_log_vpp_units").cast(pl.Float64) / _NORM_GRID).alias("sum_log_vpp"),
    )


def heading_day_aggregates(raw: pl.LazyFrame) -> pl.LazyFrame:
    """The heading aggregates of raw rows."""
    return heading_aggregates(raw.with_columns(heading_expr(), *log_value_exprs()))


#: the heading norms of day D: the heading tables of the days D-30 .. D-1
NORM_WINDOW_DAYS = 30


def headings_path(layout: Layout, day: date) -> Path:
    """The day's heading aggregates (written with the entity history: ``history.write_day_history``)."""
    return layout.history / "headings" / f"day={day.isoformat()}.parquet"


def heading_norms(layout: Layout, day: date, days: list[date]) -> pl.LazyFrame:
    """Value norms per heading from the ``NORM_WINDOW_DAYS`` days before ``day`` (``days``: the
    history days whose tables exist)."""
    first = day - timedelta(days=NORM_WINDOW_DAYS)
    files = [str(headings_path(layout, d)) for d in days if d >= first]
    if not files:
        return empty_norms()
    return norms_from_history(pl.scan_parquet(files))


def empty_norms() -> pl.LazyFrame:
    return pl.LazyFrame(schema={HEADING: pl.String, NORM_LOG_VPK: pl.Float64, NORM_LOG_VPP: pl.Float64})


def fires() -> pl.Expr:
    return (pl.col(CONSIGNEE_DAY_OVER_800) == 1) | (pl.col(VALUE_PER_KG_VS_HEADING).abs() > FAR_FROM_NORM).fill_null(
        False
    )


class _Work(NoWork):
    def __init__(self, norms: pl.LazyFrame) -> None:
        self.norms = norms

    def rows(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        return prepare_rows(frame, self.norms).with_columns(row_exprs())

    def day_exprs(self) -> list[pl.Expr]:
        return day_exprs()


class ValueFamily:
    """Row-level values against the heading norms, plus the person's parcels of the day (windows)."""

    name = "value"
    columns = COLUMNS
    categorical: list[str] = []
    day_columns = DAY_COLUMNS
    reasons = {
        CONSIGNEE_DAY_OVER_800: "one consignee's parcels of the day total over $800, each under it",
        VALUE_PER_KG_VS_HEADING: "value per kg far from the norm of its HTS heading (x5)",
    }

    def fires(self) -> pl.Expr:
        return fires()

    def open(self, ctx: DayContext) -> FamilyDay:
        return _Work(heading_norms(ctx.layout, ctx.day, ctx.history_days))


FAMILY = ValueFamily()
