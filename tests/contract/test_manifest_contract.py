"""Contract section 1 and 2 as seen from a user's files: what must be accepted, what refused."""

from __future__ import annotations

import random
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from riskpipe import schema as S
from riskpipe.ingest import ingest_paths
from riskpipe.store import Layout, scan_raw_partner, scan_raw_shipments

VALID = {
    S.SHIPMENT_ID: "00123",
    S.FILED_AT: "2026-03-01T23:59:59.123456+00:00",
    S.ARRIVAL_DATE: "2026-03-02",
    S.ENTRY_TYPE: "01",
    S.MODE: "truck",
    S.CARRIER_CODE: "0042",
    S.PORT_OF_ENTRY: "2304",
    S.SHIPPER_NAME: "Exportadora",
    S.SHIPPER_ADDRESS: "Av. 1",
    S.SHIPPER_COUNTRY: "MX",
    S.CONSIGNEE_NAME: "Buyer",
    S.CONSIGNEE_ADDRESS: "9 Elm Rd",
    S.CONSIGNEE_CITY: "Laredo",
    S.CONSIGNEE_STATE: "TX",
    S.CONSIGNEE_POSTAL_CODE: "07801",
    S.DESCRIPTION: "auto parts",
    S.COUNTRY_OF_ORIGIN: "MX",
    S.DECLARED_VALUE: "0",
    S.CURRENCY: "MXN",
    S.GROSS_WEIGHT_KG: "12.5",
    S.PIECE_COUNT: "1",
}


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    lay = Layout(tmp_path / "home")
    lay.landing.mkdir(parents=True)
    return lay


def test_required_columns_only_any_order_are_accepted(layout: Layout) -> None:
    cols = list(VALID)
    random.Random(3).shuffle(cols)
    pl.DataFrame([VALID]).select(cols).write_csv(layout.landing / "m.csv")
    summary = ingest_paths(layout)
    assert summary.rows_ingested == 1
    out = scan_raw_shipments(layout).collect()
    assert out.schema == pl.Schema(S.RAW_SHIPMENT_SCHEMA)
    r = out.row(0, named=True)
    # codes keep leading zeros; decimal 0 is a valid value; optional columns are null
    assert (r[S.SHIPMENT_ID], r[S.CARRIER_CODE], r[S.CONSIGNEE_POSTAL_CODE]) == ("00123", "0042", "07801")
    assert r[S.ENTRY_TYPE] == "01" and r[S.DECLARED_VALUE_USD] == 0.0
    assert r[S.HTS_CODE] is None and r[S.KNOWN_CONSIGNOR] is None


def test_every_required_column_is_required(layout: Layout) -> None:
    for col in S.MANIFEST_REQUIRED:
        pl.DataFrame([VALID]).drop(col).write_csv(layout.landing / f"without-{col}.csv")
    summary = ingest_paths(layout)
    assert summary.files_quarantined == len(S.MANIFEST_REQUIRED)
    assert {f.reason for f in summary.files} == {"missing_columns"}


def test_every_enum_value_of_the_contract_is_accepted(layout: Layout) -> None:
    rows = [{**VALID, S.SHIPMENT_ID: f"E{i}", S.ENTRY_TYPE: e} for i, e in enumerate(S.ENTRY_TYPES)]
    rows += [{**VALID, S.SHIPMENT_ID: f"M{i}", S.MODE: m} for i, m in enumerate(S.MODES)]
    rows += [{**VALID, S.SHIPMENT_ID: f"T{i}", S.TRUSTED_TRADER: t} for i, t in enumerate(S.TRUSTED_TRADER_KINDS)]
    pl.DataFrame(rows, schema={k: pl.String for k in rows[-1]}).write_csv(layout.landing / "m.csv")
    summary = ingest_paths(layout)
    assert summary.rows_ingested == len(rows) and summary.rows_quarantined == 0


def test_partner_file_prefix_routes_to_partner_store(layout: Layout) -> None:
    partner = {
        S.SHIPMENT_ID: "00123",
        S.EXPORT_COUNTRY: "MX",
        S.EXPORTER_NAME: "E",
        S.EXPORTER_AEO: "false",
        S.PARTNER_DECLARED_VALUE_USD: "1.5",
        S.GROSS_WEIGHT_KG: "12",
        S.DESCRIPTION: "parts",
        S.DECLARED_AT: "2026-03-01T10:00:00Z",
    }
    pl.DataFrame([partner]).write_ndjson(layout.landing / "partner-exports-2026-03-01.ndjson")
    summary = ingest_paths(layout)
    assert summary.partner_rows_ingested == 1
    out = scan_raw_partner(layout, [date(2026, 3, 1)]).collect()
    assert out.select(list(S.PARTNER_SCHEMA)).schema == pl.Schema(S.PARTNER_SCHEMA)
    assert out[S.EXPORTER_AEO].to_list() == [False]
