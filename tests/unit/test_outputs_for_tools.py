"""Published files read correctly in the tools analysts use (issue 15, point 5): one reason
separator, ``targets.csv`` with a ``schema.json`` whose types keep codes as text, ``arrival_date``
in ``scores.parquet`` so DuckDB tells days apart across files, and ``riskpipe sql``.

pandas is not installed in this project's environment, so the CSV is read back with Polars and
Python's csv module using the published schema (the README gives the pandas call that uses the
same file)."""

from __future__ import annotations

import csv
import io
import json
import sys
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

from riskpipe import publish
from riskpipe import schema as S
from riskpipe.config import load_settings
from riskpipe.ingest import ingest_paths
from riskpipe.nightly import rank_and_stage_step
from riskpipe.store import Layout

DAY1 = date(2026, 1, 5)
DAY2 = date(2026, 1, 6)
#: shipments per day; codes with leading zeros, a code that looks like a number, Namibia ("NA")
ROWS = {
    DAY1: [("00123", "0101", "0901210000", "NA"), ("A2", "4701", "3004.90.9290", "CN"), ("A3", "4701", "", "CN")],
    DAY2: [("B1", "0712", "0402100000", "MX"), ("B2", "2720", "8471300100", "CN")],
}


def manifest_row(sid: str, day: date, port: str, hts: str, country: str) -> dict[str, str]:
    return {
        S.SHIPMENT_ID: sid,
        S.FILED_AT: f"{day.isoformat()}T08:00:00Z",
        S.ARRIVAL_DATE: day.isoformat(),
        S.ENTRY_TYPE: "321",
        S.MODE: "express",
        S.CARRIER_CODE: "DHL",
        S.PORT_OF_ENTRY: port,
        S.SHIPPER_NAME: "Shipper",
        S.SHIPPER_ADDRESS: "B",
        S.SHIPPER_COUNTRY: country,
        S.CONSIGNEE_NAME: "C",
        S.CONSIGNEE_ADDRESS: "1 Main St",
        S.CONSIGNEE_CITY: "X",
        S.CONSIGNEE_STATE: "NY",
        S.CONSIGNEE_POSTAL_CODE: "01001",
        S.DESCRIPTION: "phone case",
        S.COUNTRY_OF_ORIGIN: country,
        S.DECLARED_VALUE: "5",
        S.CURRENCY: "USD",
        S.GROSS_WEIGHT_KG: "0.2",
        S.PIECE_COUNT: "1",
        S.HTS_CODE: hts,
    }


def publish_day(layout: Layout, day: date, tmp: Path) -> dict[str, Path]:
    """Rank and publish ``day`` from hand-made scores (two reasons on the first shipment)."""
    ids = [r[0] for r in ROWS[day]]
    scored = pl.DataFrame(
        {
            S.SHIPMENT_ID: ids,
            S.RISK_SCORE: [0.9 - 0.1 * i for i in range(len(ids))],
            S.RULE_SCORE: [0.0] * len(ids),
            S.REASONS: [["rule:precursor_cas", "model:value_per_kg"]] + [["model:score"]] * (len(ids) - 1),
            S.MODEL_VERSION: ["v1"] * len(ids),
        },
        schema=S.SCORES_SCHEMA,
    )
    scored_file = tmp / f"scored-{day}.parquet"
    scored.write_parquet(scored_file)
    staged = publish.stage(layout, day)
    rank_and_stage_step(layout, load_settings(layout.home), day, scored_file, staged, None, {})
    return publish.commit(layout, staged)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """Two ingested and published days, partner declarations, one recorded exam outcome."""
    from riskpipe.labels import LabelStore

    tmp = tmp_path_factory.mktemp("outputs")
    home = tmp / "home"
    layout = Layout(home)
    layout.landing.mkdir(parents=True)
    rows = [manifest_row(*r[:1], day, *r[1:]) for day, day_rows in ROWS.items() for r in day_rows]
    pl.DataFrame(rows).write_csv(layout.landing / "m.csv")
    pl.DataFrame(
        {
            S.SHIPMENT_ID: ["B1"],
            S.EXPORT_COUNTRY: ["MX"],
            S.EXPORTER_NAME: ["Exportadora"],
            S.EXPORTER_AEO: ["true"],
            S.PARTNER_DECLARED_VALUE_USD: ["5"],
            S.GROSS_WEIGHT_KG: ["0.2"],
            S.DESCRIPTION: ["phone case"],
            S.DECLARED_AT: ["2026-01-05T20:00:00Z"],
        }
    ).write_csv(layout.landing / "partner-exports-1.csv")
    summary = ingest_paths(layout)
    assert summary.rows_ingested == sum(len(v) for v in ROWS.values()) + 1  # and the partner declaration
    for day in ROWS:
        publish_day(layout, day, tmp)
    LabelStore(load_settings(home).db_url).record_one("A2", DAY1, "fentanyl", "targeted", actor="t")
    return home


def test_targets_csv_joins_reasons_with_the_one_separator(home: Path) -> None:
    text = (Layout(home).day_dir(Layout(home).targets, DAY1) / "targets.csv").read_text(encoding="utf-8")
    rows = {r[S.SHIPMENT_ID]: r for r in csv.DictReader(io.StringIO(text))}
    assert rows["00123"][S.REASONS] == "rule:precursor_cas|model:value_per_kg"


def test_workbench_export_uses_the_same_separator(home: Path) -> None:
    from riskpipe.web.data import WorkbenchData
    from riskpipe.web.lists import ListQuery

    data = WorkbenchData(load_settings(home))
    for view in ("targets", "all"):
        body = data.export_csv(DAY1, ListQuery(view=view)).decode("utf-8")
        rows = {r[S.SHIPMENT_ID]: r for r in csv.DictReader(io.StringIO(body))}
        assert rows["00123"][S.REASONS] == "rule:precursor_cas|model:value_per_kg", view  # was "; " here


def _schema(home: Path, day: date) -> dict:
    return json.loads((Layout(home).day_dir(Layout(home).targets, day) / "schema.json").read_text(encoding="utf-8"))


def test_schema_json_describes_targets_csv(home: Path) -> None:
    csv_path = Layout(home).day_dir(Layout(home).targets, DAY1) / "targets.csv"
    schema = _schema(home, DAY1)
    header = next(csv.reader(io.StringIO(csv_path.read_text(encoding="utf-8"))))
    assert [f["name"] for f in schema["fields"]] == header == list(S.TARGETS_SCHEMA)
    types = {f["name"]: f["type"] for f in schema["fields"]}
    for code in (S.SHIPMENT_ID, S.PORT_OF_ENTRY, S.HTS_CODE, S.SHIPPER_COUNTRY, S.CARRIER_CODE, S.REASONS):
        assert types[code] == "string", code
    assert (types[S.RANK], types[S.RISK_SCORE], types[S.ARRIVAL_DATE]) == ("integer", "number", "date")
    assert schema["missingValues"] == [""]
    assert schema["pandas"]["dtype"][S.PORT_OF_ENTRY] == "string"
    assert schema["pandas"]["parse_dates"] == [S.ARRIVAL_DATE]
    assert schema["pandas"]["keep_default_na"] is False


def test_targets_csv_read_with_the_schema_keeps_codes(home: Path) -> None:
    csv_path = Layout(home).day_dir(Layout(home).targets, DAY1) / "targets.csv"
    polars_type = {"string": pl.String, "integer": pl.Int64, "number": pl.Float64, "date": pl.Date}
    overrides = {f["name"]: polars_type[f["type"]] for f in _schema(home, DAY1)["fields"]}
    typed = {r[S.SHIPMENT_ID]: r for r in pl.read_csv(csv_path, schema_overrides=overrides).to_dicts()}
    assert set(typed) == {"00123", "A2", "A3"}
    first = typed["00123"]
    assert (first[S.PORT_OF_ENTRY], first[S.HTS_CODE], first[S.SHIPPER_COUNTRY]) == ("0101", "0901210000", "NA")
    assert typed["A2"][S.HTS_CODE] == "3004909290" and typed["A3"][S.HTS_CODE] is None
    assert first[S.ARRIVAL_DATE] == DAY1 and first[S.RANK] == 1
    # the csv module reads every cell as text: the codes are as published
    plain = {r[S.SHIPMENT_ID]: r for r in csv.DictReader(io.StringIO(csv_path.read_text(encoding="utf-8")))}
    assert plain["00123"][S.PORT_OF_ENTRY] == "0101"
    # what a reader that guesses types does (Polars' default, like pandas'): numbers, zeros lost
    guessed = pl.read_csv(csv_path)
    assert guessed.schema[S.PORT_OF_ENTRY].is_integer() and 101 in guessed[S.PORT_OF_ENTRY].to_list()
    assert guessed.schema[S.HTS_CODE].is_integer() and 901210000 in guessed[S.HTS_CODE].to_list()


def test_targets_csv_read_by_pandas_with_the_documented_arguments_keeps_codes(home: Path) -> None:
    """What an analyst does: ``pd.read_csv(path, **schema["pandas"])``. The default reader (type
    guessing) is what issue 15 found: codes become numbers, "NA" (Namibia) becomes missing."""
    import pandas as pd

    csv_path = Layout(home).day_dir(Layout(home).targets, DAY1) / "targets.csv"
    frame = pd.read_csv(csv_path, **_schema(home, DAY1)["pandas"]).set_index(S.SHIPMENT_ID)
    assert set(frame.index) == {"00123", "A2", "A3"}
    first = frame.loc["00123"]
    assert (first[S.PORT_OF_ENTRY], first[S.HTS_CODE], first[S.SHIPPER_COUNTRY]) == ("0101", "0901210000", "NA")
    assert frame.loc["A2", S.HTS_CODE] == "3004909290" and pd.isna(frame.loc["A3", S.HTS_CODE])
    assert str(frame[S.ARRIVAL_DATE].dtype).startswith("datetime64") and frame.loc["00123", S.RANK] == 1
    assert frame.loc["00123", S.REASONS].split(S.REASONS_SEPARATOR) == ["rule:precursor_cas", "model:value_per_kg"]
    guessed = pd.read_csv(csv_path).set_index(S.SHIPMENT_ID)  # shipment ids guessed as numbers too
    assert guessed[S.PORT_OF_ENTRY].dtype.kind in "if" and 101 in guessed[S.PORT_OF_ENTRY].tolist()
    assert guessed[S.SHIPPER_COUNTRY].isna().any()


def test_scores_parquet_has_arrival_date_and_duckdb_tells_days_apart(home: Path) -> None:
    import duckdb

    layout = Layout(home)
    scores = pl.read_parquet(layout.day_dir(layout.scores, DAY2) / "scores.parquet")
    assert scores.columns == list(S.SCORES_FILE_SCHEMA) and scores.schema[S.ARRIVAL_DATE] == pl.Date
    assert scores[S.ARRIVAL_DATE].unique().to_list() == [DAY2]
    con = duckdb.connect()
    got = con.execute(
        "SELECT arrival_date, count(*) FROM read_parquet(?) GROUP BY 1 ORDER BY 1",
        [str(layout.scores / "*" / "scores.parquet")],
    ).fetchall()
    assert got == [(DAY1, len(ROWS[DAY1])), (DAY2, len(ROWS[DAY2]))]
    # the targets carry it too, so a join across days keeps them apart
    got = con.execute(
        f"SELECT t.arrival_date, count(*) FROM read_parquet('{layout.targets}/*/targets.parquet') t "
        f"JOIN read_parquet('{layout.scores}/*/scores.parquet') s USING (shipment_id, arrival_date) GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert [d for d, _ in got] == [DAY1, DAY2]


def test_drift_history_reads_scores_written_before_arrival_date(tmp_path: Path) -> None:
    """A rerun of an older day writes the new scores format while yesterday's file is still the
    old one: the report's drift history reads both (Polars refused the extra column)."""
    from riskpipe.report import drift_table

    layout = Layout(tmp_path / "h")
    old = pl.DataFrame(
        {S.SHIPMENT_ID: ["x"], S.RISK_SCORE: [0.5], S.RULE_SCORE: [0.0], S.REASONS: [[]], S.MODEL_VERSION: ["v0"]},
        schema=S.SCORES_SCHEMA,
    )
    tonight = DAY2 + timedelta(days=3)
    new = old.select(
        S.SHIPMENT_ID, pl.lit(tonight - timedelta(days=2)).alias(S.ARRIVAL_DATE), pl.exclude(S.SHIPMENT_ID)
    )
    (layout.day_dir(layout.scores, tonight - timedelta(days=1))).mkdir(parents=True)
    old.write_parquet(layout.day_dir(layout.scores, tonight - timedelta(days=1)) / "scores.parquet")
    (layout.day_dir(layout.scores, tonight - timedelta(days=2))).mkdir(parents=True)
    new.write_parquet(layout.day_dir(layout.scores, tonight - timedelta(days=2)) / "scores.parquet")
    rows = drift_table(layout, tonight, new, None, [])
    assert rows[0]["name"] == S.RISK_SCORE and rows[0]["days"] == 2


# ---------------------------------------------------------------------------------------------
# riskpipe sql
# ---------------------------------------------------------------------------------------------
def run_cli(monkeypatch, capsys, home: Path, *args: str) -> tuple[int, str, str]:
    from riskpipe import cli
    from riskpipe.cli import admin, base

    monkeypatch.setattr(admin, "settings", lambda **o: load_settings(base.state.home, o))  # no Prefect env
    monkeypatch.setattr(sys, "argv", ["riskpipe", "--home", str(home), *args])
    with pytest.raises(SystemExit) as done:
        cli.main()
    out = capsys.readouterr()
    return done.value.code or 0, out.out, out.err


def test_sql_views_over_the_raw_store_outputs_and_labels(home: Path, monkeypatch, capsys) -> None:
    query = """
        SELECT s.arrival_date, count(*) AS shipments, count(t.shipment_id) AS targets,
               count(l.outcome) AS outcomes, count(p.shipment_id) AS partner
        FROM shipments s
        JOIN scores c USING (shipment_id, arrival_date)
        LEFT JOIN targets t USING (shipment_id, arrival_date)
        LEFT JOIN labels l USING (shipment_id)
        LEFT JOIN partner_exports p USING (shipment_id)
        GROUP BY 1 ORDER BY 1"""
    code, out, err = run_cli(monkeypatch, capsys, home, "sql", "--json", query)
    assert code == 0, err
    assert json.loads(out) == [
        {"arrival_date": "2026-01-05", "shipments": 3, "targets": 3, "outcomes": 1, "partner": 0},
        {"arrival_date": "2026-01-06", "shipments": 2, "targets": 2, "outcomes": 0, "partner": 1},
    ]
    code, out, _ = run_cli(
        monkeypatch,
        capsys,
        home,
        "sql",
        "--csv",
        "SELECT shipment_id, port_of_entry, hts_code FROM shipments ORDER BY 1",
    )
    assert code == 0
    assert out.splitlines()[:2] == ["shipment_id,port_of_entry,hts_code", "00123,0101,0901210000"]
    # the query, with paths relative to the home
    code, out, _ = run_cli(
        monkeypatch,
        capsys,
        home,
        "sql",
        "--csv",
        "SELECT arrival_date, count(*) AS n FROM read_parquet('scores/*/scores.parquet') GROUP BY 1 ORDER BY 1",
    )
    assert code == 0 and out.splitlines() == ["arrival_date,n", "2026-01-05,3", "2026-01-06,2"]
    code, out, _ = run_cli(
        monkeypatch, capsys, home, "sql", "SELECT shipment_id, risk_score FROM scores ORDER BY 2 DESC LIMIT 2"
    )
    assert code == 0 and "00123" in out and "B1" in out and "2 rows" in out


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE x AS SELECT 1",
        "COPY (SELECT * FROM shipments) TO 'leak.csv'",
        "INSERT INTO labels VALUES ('x')",
        "ATTACH 'other.db'",
        "SET enable_external_access = true",
        "INSTALL httpfs",
        "SELECT 1; DROP VIEW shipments",
    ],
)
def test_sql_refuses_statements_that_write(home: Path, monkeypatch, capsys, statement: str) -> None:
    before = sorted(p.relative_to(home) for p in home.rglob("*"))
    code, out, err = run_cli(monkeypatch, capsys, home, "sql", statement)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "read-only" in err
    assert sorted(p.relative_to(home) for p in home.rglob("*")) == before


def test_sql_reports_a_bad_query_in_one_line(home: Path, monkeypatch, capsys) -> None:
    code, _, err = run_cli(monkeypatch, capsys, home, "sql", "SELECT nope FROM shipments")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "nope" in err
    empty = home.parent / "empty-home"
    empty.mkdir()
    code, _, err = run_cli(monkeypatch, capsys, empty, "sql", "SELECT * FROM scores")
    assert code == 1 and "scores" in err and "no published" in err
