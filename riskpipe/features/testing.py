"""Hand-built raw manifests for tests (of this package and of code built on the features)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import polars as pl

from riskpipe import schema as S
from riskpipe.store import Layout, write_parquet_atomic

_DEFAULTS = {
    S.ENTRY_TYPE: "321",
    S.MODE: "express",
    S.CARRIER_CODE: "DHL",
    S.PORT_OF_ENTRY: "4701",
    S.SHIPPER_NAME: "Acme Trading Co., Ltd",
    S.SHIPPER_ADDRESS: "1 Road, Shenzhen",
    S.SHIPPER_COUNTRY: "CN",
    S.CONSIGNEE_CITY: "Boston",
    S.CONSIGNEE_STATE: "MA",
    S.CONSIGNEE_POSTAL_CODE: "02101",
    S.DESCRIPTION: "T-shirt",
    S.COUNTRY_OF_ORIGIN: "CN",
    S.DECLARED_VALUE: 10.0,
    S.CURRENCY: "USD",
    S.GROSS_WEIGHT_KG: 1.0,
    S.PIECE_COUNT: 1,
    S.HTS_CODE: "6109100012",
    S.SOURCE_FILE: "test.csv",
}


def raw_frame(rows: list[dict], day: date) -> pl.DataFrame:
    """A raw-store frame (``S.RAW_SHIPMENT_SCHEMA``) of ``rows`` arriving on ``day``: each row a
    dict of overrides; ``shipment_id`` defaults to ``S<day>-<n>``, consignee to a unique person,
    ``declared_value_usd`` to ``declared_value``."""
    full = []
    for i, row in enumerate(rows):
        r = dict(_DEFAULTS)
        r[S.SHIPMENT_ID] = f"S{day:%m%d}-{i:04d}"
        r[S.CONSIGNEE_NAME] = f"Person {i}"
        r[S.CONSIGNEE_ADDRESS] = f"{i} Main St"
        r.update(row)
        r.setdefault(
            S.CONSIGNEE_ADDRESS_KEY, str(r[S.CONSIGNEE_ADDRESS] or "").lower() + "|" + str(r[S.CONSIGNEE_POSTAL_CODE])
        )
        r.setdefault(S.DECLARED_VALUE_USD, r[S.DECLARED_VALUE])
        r.setdefault(S.FILED_AT, datetime(day.year, day.month, day.day, tzinfo=UTC))
        r.setdefault(S.INGESTED_AT, datetime(day.year, day.month, day.day, tzinfo=UTC))
        r[S.ARRIVAL_DATE] = day
        full.append(r)
    return (
        pl.DataFrame(
            [{c: r.get(c) for c in S.RAW_SHIPMENT_SCHEMA} for r in full], schema=S.RAW_SHIPMENT_SCHEMA, orient="row"
        )
        if full
        else pl.DataFrame(schema=S.RAW_SHIPMENT_SCHEMA)
    )


def write_raw_day(layout: Layout, day: date, rows: list[dict]) -> pl.DataFrame:
    """Write ``rows`` as the raw partition of ``day`` (what ingest would leave)."""
    frame = raw_frame(rows, day)
    write_parquet_atomic(frame, layout.raw_shipments_day(day) / "part-0.parquet")
    return frame
