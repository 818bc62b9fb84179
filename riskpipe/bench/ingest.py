"""The ingest benchmark: time the ingest of one generated day per format into fresh homes.

``python -m riskpipe.bench.ingest DIR [ROWS]`` prints the figures as JSON.
"""

from __future__ import annotations

import json
import time
from datetime import date
from pathlib import Path

import polars as pl

from riskpipe import schema as S
from riskpipe.ingest import ingest_paths
from riskpipe.store import Layout


def sample_manifest(n: int, seed: int = 0, start: date = date(2026, 1, 5)) -> pl.DataFrame:
    """A small valid manifest frame (all text, as in a CSV) for tests and the benchmark."""
    import numpy as np

    rng = np.random.default_rng(seed)
    idx = np.arange(n)
    countries = np.array(["CN", "HK", "MX", "GB", "DE", "KR", "IN", "VN"])
    return pl.DataFrame(
        {
            S.SHIPMENT_ID: [f"S{seed:02d}{i:09d}" for i in idx],
            S.FILED_AT: [f"{start.isoformat()}T{(i % 24):02d}:{(i % 60):02d}:00Z" for i in idx],
            S.ARRIVAL_DATE: [start.isoformat()] * n,
            S.ENTRY_TYPE: rng.choice(["321", "86", "11", "01", "postal"], n).tolist(),
            S.MODE: rng.choice(S.MODES, n).tolist(),
            S.CARRIER_CODE: rng.choice(["DHL", "FDX", "UPS", "USPS"], n).tolist(),
            S.PORT_OF_ENTRY: rng.choice(["4701", "2720", "0101", "2304"], n).tolist(),
            S.SHIPPER_NAME: [f"Shipper {i % 997}" for i in idx],
            S.SHIPPER_ADDRESS: [f"{i % 500} Industrial Road" for i in idx],
            S.SHIPPER_COUNTRY: rng.choice(countries, n).tolist(),
            S.CONSIGNEE_NAME: [f"Person {i % 5003}" for i in idx],
            S.CONSIGNEE_ADDRESS: [f"{i % 9000} Main Street Apt {i % 7}" for i in idx],
            S.CONSIGNEE_CITY: ["Springfield"] * n,
            S.CONSIGNEE_STATE: rng.choice(["NY", "CA", "TX", "OH"], n).tolist(),
            S.CONSIGNEE_POSTAL_CODE: [f"{(i * 7) % 99999:05d}" for i in idx],
            S.DESCRIPTION: rng.choice(["t-shirt", "phone case", "hair dye", "machine parts"], n).tolist(),
            S.COUNTRY_OF_ORIGIN: rng.choice(countries, n).tolist(),
            S.DECLARED_VALUE: np.round(rng.lognormal(3, 1, n), 2).astype(str).tolist(),
            S.CURRENCY: rng.choice(["USD", "CNY", "EUR"], n).tolist(),
            S.GROSS_WEIGHT_KG: np.round(rng.lognormal(-1, 0.8, n) + 0.01, 3).astype(str).tolist(),
            S.PIECE_COUNT: rng.integers(1, 5, n).astype(str).tolist(),
            S.HTS_CODE: rng.choice(["6109.10.0012", "3926909985", "330590", "8479.89.9499"], n).tolist(),
            S.SELLER_ID: [f"SEL{i % 3001}" for i in idx],
            S.LISTED_PRICE: np.round(rng.lognormal(3, 1, n), 2).astype(str).tolist(),
            S.ACCOUNT_CREATED_DATE: ["2025-06-01"] * n,
            S.KNOWN_CONSIGNOR: rng.choice(["true", "false"], n).tolist(),
        }
    )


def bench_ingest(tmpdir: Path, rows: int = 4_000_000, formats: tuple[str, ...] = ("parquet", "csv")) -> dict:
    """Time ingest of one ``rows``-row day per format into fresh homes under ``tmpdir``.

    The day is a generated 100k-row frame repeated with fresh shipment ids, written before
    timing starts (and freed). Returns wall and CPU seconds, rows/s and this process's peak RSS
    (MB, which includes building the input files).
    """
    import gc
    import resource

    tmpdir = Path(tmpdir)
    base = sample_manifest(min(rows, 100_000))
    reps = -(-rows // base.height)
    frame = (
        pl.concat([base] * reps)
        .head(rows)
        .with_columns((pl.lit("B") + pl.int_range(pl.len()).cast(pl.String).str.zfill(10)).alias(S.SHIPMENT_ID))
    )
    layouts = {}
    for fmt in formats:
        layout = Layout(tmpdir / f"home-{fmt}")
        layout.landing.mkdir(parents=True, exist_ok=True)
        target = layout.landing / f"manifest-bench.{fmt}"
        if fmt == "parquet":
            frame.write_parquet(target)
        else:
            frame.write_csv(target)
        layouts[fmt] = layout
    del frame, base
    gc.collect()
    out: dict = {"rows": rows}
    for fmt, layout in layouts.items():
        t0, c0 = time.perf_counter(), time.process_time()
        summary = ingest_paths(layout)
        out[f"{fmt}_s"] = round(time.perf_counter() - t0, 2)
        out[f"{fmt}_cpu_s"] = round(time.process_time() - c0, 2)
        out[f"{fmt}_rows_per_s"] = int(rows / max(out[f"{fmt}_s"], 1e-9))
        out[f"{fmt}_ingested"] = summary.rows_ingested
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


if __name__ == "__main__":  # python -m riskpipe.bench.ingest DIR [ROWS]
    import sys

    print(json.dumps(bench_ingest(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 4_000_000)))
