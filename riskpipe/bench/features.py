"""Feature benchmark: time per family for one day, and a fast synthetic raw store to run it on.

``python -m riskpipe.bench.features --home DIR --rows 4000000 --history-days 30`` builds (once)
``history-days`` raw days plus the day scored, then times ``build_features`` of that day. The
synthetic rows are vectorised numpy/Polars (no Python loop per row) from a bounded population,
so parties repeat across days as in real traffic; they are not the synthetic world of
``riskpipe.synth`` (which is slower to generate at 4 M rows a day).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from riskpipe import schema as S
from riskpipe.features import build_features, history
from riskpipe.features.build import build_features_staged
from riskpipe.store import Layout, write_parquet_atomic

_DESCRIPTIONS = [
    "T-shirt",
    "women's dress",
    "phone case",
    "USB cable",
    "wireless earbuds",
    "LED strip light",
    "plush toy",
    "lipstick",
    "face cream",
    "hair dye",
    "necklace",
    "handbag",
    "kitchen utensils",
    "auto parts",
    "machine parts",
    "hardware nuts",
    "dog food",
    "vitamin tablets",
    "tea",
    "gift",
    "sample",
    "parts",
    "silicone mold",
    "Aniline CAS 62-53-3 reagent grade",
    "1-boc-4-piperidone CAS 79099-07-3",
    "tablet press TDP-5",
    "corsets",
]
_HTS = [
    "6109100012",
    "6204444010",
    "3926909985",
    "8544429090",
    "8518300000",
    "9405420000",
    "9503000090",
    "3304100000",
    "3304990000",
    "3305900000",
    "7117190000",
    "4202229000",
    "3924100000",
    "8708999990",
    "8487900080",
    "7318158000",
    "2309100010",
    "2106909998",
    "0902100000",
    "9505900000",
    "4911998000",
    "8473305100",
    "3926909985",
    "2921420000",
    "2933399100",
    "8479899499",
    "6212300000",
]
_COUNTRIES = ["CN", "HK", "MX", "GB", "DE", "KR", "IN", "VN", "JP", "CA"]
_P_COUNTRY = [0.55, 0.12, 0.05, 0.05, 0.05, 0.05, 0.04, 0.04, 0.03, 0.02]


def synthetic_raw_day(day: date, rows: int, seed: int, population: int | None = None) -> pl.DataFrame:
    """``rows`` raw-store rows arriving on ``day`` (``S.RAW_SHIPMENT_SCHEMA``)."""
    rng = np.random.default_rng([seed, day.toordinal()])
    people = population or max(1000, rows // 4)
    person = pl.Series(rng.integers(0, people, rows))
    shipper = pl.Series(rng.integers(0, max(100, rows // 10), rows))
    seller = pl.Series(rng.integers(0, max(50, rows // 20), rows))
    kind = pl.Series(np.minimum(rng.zipf(1.6, rows) - 1, len(_DESCRIPTIONS) - 1))
    country = pl.Series(rng.choice(len(_COUNTRIES), rows, p=_P_COUNTRY))
    value = pl.Series(np.round(rng.lognormal(3.0, 1.0, rows), 2))
    weight = pl.Series(np.round(rng.lognormal(-0.5, 0.8, rows) + 0.01, 3))
    pieces = pl.Series(rng.integers(1, 5, rows))
    ts = datetime(day.year, day.month, day.day, tzinfo=UTC)
    frame = pl.DataFrame(
        {
            "p": person,
            "sh": shipper,
            "se": seller,
            "k": kind,
            "c": country,
            "v": value,
            "w": weight,
            "n": pieces,
            "i": pl.Series(np.arange(rows)),
        }
    )
    desc = pl.Series(_DESCRIPTIONS)
    hts = pl.Series(_HTS)
    ctry = pl.Series(_COUNTRIES)
    p = pl.col("p").cast(pl.String)
    addr = pl.concat_str(pl.lit("Addr "), (pl.col("p") // 2).cast(pl.String), pl.lit(" Main St"))
    out = frame.select(
        pl.concat_str(pl.lit(f"B{day:%Y%m%d}-"), pl.col("i").cast(pl.String).str.zfill(8)).alias(S.SHIPMENT_ID),
        pl.lit(ts).alias(S.FILED_AT),
        pl.lit(day).alias(S.ARRIVAL_DATE),
        pl.lit("321").cast(S.EntryType).alias(S.ENTRY_TYPE),
        pl.when(pl.col("c") == 2).then(pl.lit("truck")).otherwise(pl.lit("express")).cast(S.Mode).alias(S.MODE),
        pl.lit("DHL").alias(S.CARRIER_CODE),
        pl.lit("4701").alias(S.PORT_OF_ENTRY),
        pl.concat_str(pl.lit("Shipper "), pl.col("sh").cast(pl.String), pl.lit(" Co., Ltd")).alias(S.SHIPPER_NAME),
        pl.lit("1 Industrial Rd").alias(S.SHIPPER_ADDRESS),
        pl.col("c").alias("_c"),
        pl.concat_str(pl.lit("Person "), p).alias(S.CONSIGNEE_NAME),
        addr.alias(S.CONSIGNEE_ADDRESS),
        pl.lit("Boston").alias(S.CONSIGNEE_CITY),
        pl.lit("MA").alias(S.CONSIGNEE_STATE),
        pl.lit("02101").alias(S.CONSIGNEE_POSTAL_CODE),
        pl.col("k").alias("_k"),
        pl.col("v").alias(S.DECLARED_VALUE),
        pl.lit("USD").alias(S.CURRENCY),
        pl.col("w").alias(S.GROSS_WEIGHT_KG),
        pl.col("n").alias(S.PIECE_COUNT),
        pl.concat_str(pl.lit("SE"), pl.col("se").cast(pl.String)).alias(S.SELLER_ID),
        pl.concat_str(pl.lit("+86 138"), pl.col("sh").cast(pl.String).str.zfill(8)).alias(S.SHIPPER_PHONE),
        pl.concat_str(pl.lit("617"), p.str.zfill(7)).alias(S.CONSIGNEE_PHONE),
        pl.concat_str(pl.lit("user"), p, pl.lit("@mail.com")).alias(S.CONSIGNEE_EMAIL),
        pl.concat_str(
            pl.lit("10."),
            (pl.col("p") % 250).cast(pl.String),
            pl.lit("."),
            (pl.col("p") // 250 % 250).cast(pl.String),
            pl.lit(".1"),
        ).alias(S.ACCOUNT_IP),
        pl.col("v").alias(S.DECLARED_VALUE_USD),
        pl.concat_str(addr.str.to_lowercase(), pl.lit("|02101")).alias(S.CONSIGNEE_ADDRESS_KEY),
    )
    out = out.with_columns(
        ctry.gather(out.get_column("_c")).alias(S.SHIPPER_COUNTRY),
        ctry.gather(out.get_column("_c")).alias(S.COUNTRY_OF_ORIGIN),
        desc.gather(out.get_column("_k")).alias(S.DESCRIPTION),
        hts.gather(out.get_column("_k")).alias(S.HTS_CODE),
    )
    missing = {c: t for c, t in S.RAW_SHIPMENT_SCHEMA.items() if c not in out.columns}
    out = out.with_columns(pl.lit(None, t).alias(c) for c, t in missing.items())
    return out.select(pl.col(c).cast(t) for c, t in S.RAW_SHIPMENT_SCHEMA.items())


def make_bench_world(layout: Layout, day: date, rows: int, history_days: int, seed: int = 7) -> None:
    """Raw partitions for ``history_days`` days before ``day`` and for ``day`` (skips existing)."""
    population = max(1000, rows // 4)
    for k in range(history_days, -1, -1):
        d = day - timedelta(days=k)
        path = layout.raw_shipments_day(d) / "part-0.parquet"
        if not path.exists():
            write_parquet_atomic(synthetic_raw_day(d, rows, seed, population), path)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_features(layout: Layout, day: date, labels: pl.DataFrame | None = None) -> dict:
    """Timings (seconds) of ``build_features(layout, day)`` per stage and family; history of
    earlier days is brought up to date first and timed on its own (``history_catch_up_s``, a
    one-off cost: nightly runs add one day)."""
    t = time.perf_counter()
    history.ensure_history(layout, day)
    catch_up = time.perf_counter() - t
    timings: dict[str, float] = {}
    t = time.perf_counter()
    frame = build_features_staged(layout, day, labels, timings)
    staged = time.perf_counter() - t
    t = time.perf_counter()
    cpu = time.process_time()
    again = build_features(layout, day, labels)
    total = time.perf_counter() - t
    cpu = time.process_time() - cpu  # all threads: steadier than wall time on a shared machine
    assert again.height == frame.height
    return {
        "day": day.isoformat(),
        "rows": frame.height,
        "history_days": len(history.ensure_history(layout, day)),
        "history_catch_up_s": round(catch_up, 2),
        "features_s": round(total, 2),
        "features_cpu_s": round(cpu, 2),
        "rows_per_s": round(frame.height / total) if total > 0 else None,
        "staged_total_s": round(staged, 2),
        "stages_s": {k: round(v, 2) for k, v in timings.items()},
        "peak_rss_mb": round(_peak_rss_mb()),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--history-days", type=int, default=30)
    ap.add_argument("--day", type=date.fromisoformat, default=date(2026, 3, 1))
    args = ap.parse_args(argv)
    layout = Layout(args.home)
    t = time.perf_counter()
    make_bench_world(layout, args.day, args.rows, args.history_days)
    print(json.dumps({"world_s": round(time.perf_counter() - t, 1)}), file=sys.stderr)
    print(json.dumps(bench_features(layout, args.day), indent=2))


if __name__ == "__main__":
    main()
