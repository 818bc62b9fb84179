"""A valid manifest row and a CSV writer for the ingest tests (test_file_modes, test_ingest_crash)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from riskpipe import schema as S


def manifest_row(
    sid: str, day: str = "2026-01-05", filed: str = "2026-01-05T08:00:00Z", value: str = "10"
) -> dict[str, str]:
    return {
        S.SHIPMENT_ID: sid,
        S.FILED_AT: filed,
        S.ARRIVAL_DATE: day,
        S.ENTRY_TYPE: "321",
        S.MODE: "express",
        S.CARRIER_CODE: "DHL",
        S.PORT_OF_ENTRY: "0401",
        S.SHIPPER_NAME: "Acme",
        S.SHIPPER_ADDRESS: "1 Road",
        S.SHIPPER_COUNTRY: "CN",
        S.CONSIGNEE_NAME: "J Doe",
        S.CONSIGNEE_ADDRESS: "12 Main St",
        S.CONSIGNEE_CITY: "Dayton",
        S.CONSIGNEE_STATE: "OH",
        S.CONSIGNEE_POSTAL_CODE: "45402",
        S.DESCRIPTION: "t-shirt",
        S.COUNTRY_OF_ORIGIN: "CN",
        S.DECLARED_VALUE: value,
        S.CURRENCY: "USD",
        S.GROSS_WEIGHT_KG: "0.5",
        S.PIECE_COUNT: "1",
        S.HTS_CODE: "6109.10.0012",
    }


def write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(rows, schema={k: pl.String for k in rows[0]}).write_csv(path)
