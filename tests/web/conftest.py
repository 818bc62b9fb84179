"""A tiny hand-written data home for the workbench tests: two days of raw manifests, one day of
scores and targets, one partner declaration, two users."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from riskpipe import schema as S
from riskpipe.config import Settings
from riskpipe.store import Layout, write_parquet_atomic
from riskpipe.users import UserStore

DAY = date(2026, 1, 6)
PREV = date(2026, 1, 5)
XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'
PASSWORD = "correct-horse-1"


def raw_rows(day: date, rows: list[dict]) -> pl.DataFrame:
    base = {
        S.FILED_AT: datetime(day.year, day.month, day.day, 1, tzinfo=UTC),
        S.ARRIVAL_DATE: day,
        S.ENTRY_TYPE: "321",
        S.MODE: "express",
        S.CARRIER_CODE: "DHL",
        S.PORT_OF_ENTRY: "4701",
        S.SHIPPER_NAME: "Shenzhen Trading Co",
        S.SHIPPER_ADDRESS: "1 Road",
        S.SHIPPER_COUNTRY: "CN",
        S.CONSIGNEE_NAME: "Pat Doe",
        S.CONSIGNEE_ADDRESS: "12 Main St",
        S.CONSIGNEE_CITY: "Dayton",
        S.CONSIGNEE_STATE: "OH",
        S.CONSIGNEE_POSTAL_CODE: "45402",
        S.DESCRIPTION: "phone case",
        S.COUNTRY_OF_ORIGIN: "CN",
        S.DECLARED_VALUE: 20.0,
        S.CURRENCY: "USD",
        S.GROSS_WEIGHT_KG: 0.5,
        S.PIECE_COUNT: 1,
        S.DECLARED_VALUE_USD: 20.0,
        S.CONSIGNEE_ADDRESS_KEY: "12 main st|45402",
        S.SOURCE_FILE: "f.csv",
        S.INGESTED_AT: datetime(day.year, day.month, day.day, 2, tzinfo=UTC),
    }
    full = [{c: r.get(c, base.get(c)) for c in S.RAW_SHIPMENT_SCHEMA} for r in rows]
    return pl.DataFrame(full, schema=S.RAW_SHIPMENT_SCHEMA, orient="row")


def build_home(home: Path) -> Settings:
    layout = Layout(home)
    today = raw_rows(
        DAY,
        [
            {S.SHIPMENT_ID: "S1", S.DESCRIPTION: XSS, S.CONSIGNEE_PHONE: "555-0101", S.CONSIGNEE_ADDRESS_KEY: "k1"},
            {
                S.SHIPMENT_ID: "S2",
                S.PORT_OF_ENTRY: "2720",
                S.MODE: "postal",
                S.COUNTRY_OF_ORIGIN: "IN",
                S.CONSIGNEE_PHONE: "555-0101",
                S.CONSIGNEE_ADDRESS_KEY: "k2",
            },
            {
                S.SHIPMENT_ID: "S3",
                S.COUNTRY_OF_ORIGIN: "MX",
                S.CONSIGNEE_ADDRESS_KEY: "k3",
                S.DESCRIPTION: '=HYPERLINK("http://x")',
            },
            {S.SHIPMENT_ID: "S4", S.PORT_OF_ENTRY: "2720", S.CONSIGNEE_ADDRESS_KEY: "k4"},
        ],
    )
    write_parquet_atomic(today, layout.raw_shipments_day(DAY) / "part-0.parquet")
    past = raw_rows(PREV, [{S.SHIPMENT_ID: "P1", S.CONSIGNEE_ADDRESS_KEY: "k1", S.DESCRIPTION: "earlier parcel"}])
    write_parquet_atomic(past, layout.raw_shipments_day(PREV) / "part-0.parquet")

    scores = pl.DataFrame(
        {
            S.SHIPMENT_ID: ["S1", "S2", "S3", "S4"],
            S.RISK_SCORE: [0.91, 0.40, 0.75, 0.05],
            S.RULE_SCORE: [1.0, 0.0, 0.5, 0.0],
            S.REASONS: [["rule:precursor_cas", "model:score"], ["model:score"], ["rule:vague_description"], []],
            S.MODEL_VERSION: ["v1"] * 4,
        },
        schema=S.SCORES_SCHEMA,
    )
    write_parquet_atomic(scores, layout.day_dir(layout.scores, DAY) / "scores.parquet")
    t = (
        scores.filter(pl.col(S.SHIPMENT_ID) != "S4")
        .join(today.drop(S.MODE).with_columns(today[S.MODE].cast(pl.String)), on=S.SHIPMENT_ID)
        .sort(S.RISK_SCORE, descending=True)
        .with_columns(
            pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias(S.RANK),
            pl.Series(S.SELECTION, ["risk", "risk", "exploration"]),
            pl.Series(S.NETWORK_ID, ["N1", None, "N1"]),
            pl.lit("Plain words").alias(S.REASON_TEXT),
            pl.Series(S.SELECTION_PROBABILITY, [1.0, 1.0, 0.5]),
        )
        .select(list(S.TARGETS_SCHEMA))
    )
    write_parquet_atomic(t, layout.day_dir(layout.targets, DAY) / "targets.parquet")

    partner = pl.DataFrame(
        {
            S.SHIPMENT_ID: ["S3"],
            S.EXPORT_COUNTRY: ["MX"],
            S.EXPORTER_NAME: ["Exportadora SA"],
            S.EXPORTER_AEO: [True],
            S.PARTNER_DECLARED_VALUE_USD: [500.0],
            S.GROSS_WEIGHT_KG: [0.5],
            S.DESCRIPTION: ["machine parts"],
            S.DECLARED_AT: [datetime(2026, 1, 5, 10, tzinfo=UTC)],
        },
        schema=S.PARTNER_SCHEMA,
    )
    write_parquet_atomic(partner, layout.raw_partner_day(PREV) / "part-0.parquet")

    settings = Settings(home=home)
    users = UserStore(settings.db_url)
    users.add("ana", PASSWORD, "analyst")
    users.add("sue", PASSWORD, "supervisor")
    return settings


@pytest.fixture()
def home_settings(tmp_path) -> Settings:
    return build_home(tmp_path / "home")


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no csrf field in page"
    return m.group(1)


def login(client, username: str, password: str = PASSWORD):
    page = client.get("/login")
    token = csrf_of(page.text)
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf": token, "next": "/list"},
        follow_redirects=False,
    )
