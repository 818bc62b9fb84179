"""Ingest: validation, normalisation, amendments, quarantine, idempotency, accounting."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from riskpipe import schema as S
from riskpipe.errors import RiskpipeError
from riskpipe.ingest import (
    address_key,
    ingest_paths,
    load_fx_rates,
    parse_timestamp,
    quarantine_reason_counts,
    read_runs,
)
from riskpipe.store import Layout, scan_raw_partner, scan_raw_shipments


def row(**over) -> dict[str, str | None]:
    """One valid manifest row, as text (CSV-like)."""
    base = {
        S.SHIPMENT_ID: "S1",
        S.FILED_AT: "2026-01-05T08:00:00Z",
        S.ARRIVAL_DATE: "2026-01-05",
        S.ENTRY_TYPE: "321",
        S.MODE: "express",
        S.CARRIER_CODE: "DHL",
        S.PORT_OF_ENTRY: "0401",
        S.SHIPPER_NAME: "Acme Ltd",
        S.SHIPPER_ADDRESS: "1 Road",
        S.SHIPPER_COUNTRY: "cn",
        S.CONSIGNEE_NAME: "J Doe",
        S.CONSIGNEE_ADDRESS: "12 Main Street, Apartment #4",
        S.CONSIGNEE_CITY: "Springfield",
        S.CONSIGNEE_STATE: "oh",
        S.CONSIGNEE_POSTAL_CODE: "04501-1234",
        S.DESCRIPTION: "t-shirt",
        S.COUNTRY_OF_ORIGIN: "CN",
        S.DECLARED_VALUE: "100",
        S.CURRENCY: "cny",
        S.GROSS_WEIGHT_KG: "0.5",
        S.PIECE_COUNT: "2",
        S.HTS_CODE: "6109.10.0012",
    }
    base.update(over)
    return base


def frame(*rows: dict) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema={k: pl.String for k in rows[0]})


def write_csv(path: Path, *rows: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame(*rows).write_csv(path)
    return path


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    lay = Layout(tmp_path / "home")
    lay.landing.mkdir(parents=True)
    return lay


def raw(layout: Layout) -> pl.DataFrame:
    return scan_raw_shipments(layout).collect().sort(S.SHIPMENT_ID)


def q_rows(layout: Layout) -> pl.DataFrame:
    files = sorted(layout.quarantine_rows.glob("*.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed").sort(S.SOURCE_FILE, "row_number")


def test_valid_csv_is_normalised_with_exact_values(layout: Layout) -> None:
    write_csv(layout.landing / "m.csv", row())
    summary = ingest_paths(layout)
    out = raw(layout)
    assert list(out.columns) == list(S.RAW_SHIPMENT_SCHEMA)
    assert out.schema == pl.Schema(S.RAW_SHIPMENT_SCHEMA)
    r = out.row(0, named=True)
    assert r[S.PORT_OF_ENTRY] == "0401"  # leading zero kept
    assert r[S.SHIPPER_COUNTRY] == "CN" and r[S.CONSIGNEE_STATE] == "OH" and r[S.CURRENCY] == "CNY"
    assert r[S.HTS_CODE] == "6109100012"
    assert r[S.DECLARED_VALUE_USD] == pytest.approx(100 * 0.1390)
    assert r[S.FILED_AT] == datetime(2026, 1, 5, 8, tzinfo=UTC)
    assert r[S.ARRIVAL_DATE] == date(2026, 1, 5)
    assert r[S.PIECE_COUNT] == 2 and r[S.ENTRY_TYPE] == "321"
    assert r[S.CONSIGNEE_ADDRESS_KEY] == "12 MAIN ST APT 4|04501"
    assert r[S.SOURCE_FILE] == "m.csv"
    assert (summary.rows_in, summary.rows_ingested, summary.rows_amended, summary.rows_quarantined) == (1, 1, 0, 0)


def test_address_key_unifies_abbreviations() -> None:
    out = pl.DataFrame(
        {
            "a": ["12 Main Street Apt. 4", "12 MAIN ST #4", "12 main st., unit 4", "5 North Oak Avenue Suite 2"],
            "z": ["04501", "04501-1234", "045011234", "10001"],
        }
    ).select(address_key(pl.col("a"), pl.col("z")).alias("k"))
    assert out["k"].to_list() == ["12 MAIN ST APT 4|04501"] * 3 + ["5 N OAK AVE STE 2|10001"]


def test_timestamp_formats() -> None:
    values = [
        "2026-01-05T10:00:00Z",
        "2026-01-05T10:00:00.250+00:00",
        "2026-01-05T10:00:00+0000",
        "2026-01-05T10:00:00",
        "2026-01-05T12:00:00+02:00",
        "2026-02-30T10:00:00Z",
        "yesterday",
    ]
    out = pl.DataFrame({"t": values}).select(parse_timestamp(pl.col("t")))["t"].to_list()
    ten = datetime(2026, 1, 5, 10, tzinfo=UTC)
    assert out == [ten, ten.replace(microsecond=250_000), ten, ten, ten, None, None]


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({S.GROSS_WEIGHT_KG: "-1"}, "nonpositive:gross_weight_kg"),
        ({S.GROSS_WEIGHT_KG: "0"}, "nonpositive:gross_weight_kg"),
        ({S.GROSS_WEIGHT_KG: "heavy"}, "bad_type:gross_weight_kg"),
        ({S.DECLARED_VALUE: "-3"}, "negative:declared_value"),
        ({S.DECLARED_VALUE: "12,50"}, "bad_type:declared_value"),
        ({S.PIECE_COUNT: "0"}, "nonpositive:piece_count"),
        ({S.PIECE_COUNT: "1.5"}, "bad_type:piece_count"),
        ({S.SHIPPER_COUNTRY: "ZZ"}, "unknown_country:shipper_country"),
        ({S.CURRENCY: "XYZ"}, "unknown_currency"),
        ({S.ARRIVAL_DATE: "2026-13-01"}, "bad_date:arrival_date"),
        ({S.ARRIVAL_DATE: "05/01/2026"}, "bad_date:arrival_date"),
        ({S.FILED_AT: "2026-01-05"}, "bad_timestamp:filed_at"),
        ({S.SHIPMENT_ID: ""}, "missing:shipment_id"),
        ({S.ENTRY_TYPE: "99"}, "bad_enum:entry_type"),
        ({S.MODE: "teleport"}, "bad_enum:mode"),
        ({S.PORT_OF_ENTRY: "401"}, "bad_port:port_of_entry"),
        ({S.CONSIGNEE_STATE: "Ohio"}, "bad_state:consignee_state"),
        ({S.HTS_CODE: "61.09"}, "bad_hts:hts_code"),
        # issue 12: finite derived values and plausible ranges (limits in riskpipe.ingest)
        ({S.DECLARED_VALUE: "1.7e308", S.CURRENCY: "GBP"}, "nonfinite:declared_value_usd"),
        ({S.LISTED_PRICE: "1.7e308", S.CURRENCY: "GBP"}, "nonfinite:listed_price_usd"),
        ({S.DECLARED_VALUE: "2e9", S.CURRENCY: "USD"}, "implausible:declared_value_usd"),
        ({S.LISTED_PRICE: "1.7e308", S.CURRENCY: "USD"}, "implausible:listed_price_usd"),
        ({S.GROSS_WEIGHT_KG: "1e-320"}, "implausible:gross_weight_kg"),
        ({S.GROSS_WEIGHT_KG: "250000"}, "implausible:gross_weight_kg"),
        ({S.ARRIVAL_DATE: "0001-01-01"}, "implausible:arrival_date"),
        ({S.ARRIVAL_DATE: "9999-12-31"}, "implausible:arrival_date"),
        ({S.FILED_AT: "2099-01-01T00:00:00Z"}, "future:filed_at"),
        ({S.FILED_AT: "0001-01-01T00:00:00Z"}, "implausible:filed_at"),
        ({S.ACCOUNT_CREATED_DATE: "9999-12-31"}, "future:account_created_date"),
        ({S.ACCOUNT_CREATED_DATE: "1066-10-14"}, "implausible:account_created_date"),
    ],
)
def test_bad_row_is_quarantined_with_reason(layout: Layout, over: dict, reason: str) -> None:
    ok = {**{k: None for k in over}, **row(**{S.SHIPMENT_ID: "OK"})}  # the same columns (optional ones null)
    write_csv(layout.landing / "m.csv", ok, row(**{S.SHIPMENT_ID: "BAD", **over}))
    summary = ingest_paths(layout)
    assert raw(layout)[S.SHIPMENT_ID].to_list() == ["OK"]
    q = q_rows(layout)
    assert q.height == 1
    assert reason in q["reasons"][0].to_list()
    assert q["row_number"][0] == 2 and q[S.SOURCE_FILE][0] == "m.csv"
    for col, value in over.items():  # the original text is kept
        assert (q[col][0] or "") == value
    assert summary.rows_quarantined == 1 and summary.rows_ingested == 1
    assert summary.quarantine_reasons[reason] == 1


def test_several_reasons_on_one_row(layout: Layout) -> None:
    write_csv(layout.landing / "m.csv", row(**{S.GROSS_WEIGHT_KG: "0", S.CURRENCY: "ABC", S.SHIPPER_COUNTRY: "XX"}))
    ingest_paths(layout)
    assert sorted(q_rows(layout)["reasons"][0].to_list()) == [
        "nonpositive:gross_weight_kg",
        "unknown_country:shipper_country",
        "unknown_currency",
    ]


def test_missing_required_column_quarantines_file(layout: Layout) -> None:
    bad = frame(row()).drop(S.GROSS_WEIGHT_KG)
    bad.write_csv(layout.landing / "nocol.csv")
    write_csv(layout.landing / "ok.csv", row(**{S.SHIPMENT_ID: "S2"}))
    summary = ingest_paths(layout)
    assert summary.files_quarantined == 1 and summary.rows_ingested == 1
    assert (layout.quarantine_files / "nocol.csv").read_bytes() == (layout.landing / "nocol.csv").read_bytes()
    info = json.loads((layout.quarantine_files / "nocol.csv.reason.json").read_text())
    assert info["reason"] == "missing_columns" and "gross_weight_kg" in info["detail"]


def test_non_utf8_empty_and_truncated_files_are_quarantined(layout: Layout) -> None:
    csv_bytes = (frame(row()).write_csv()).encode()
    (layout.landing / "latin1.csv").write_bytes(csv_bytes.replace(b"Acme", b"Acm\xe9"))
    (layout.landing / "empty.csv").write_bytes(b"")
    (layout.landing / "header_only.csv").write_text(",".join(row()) + "\n")
    frame(row()).write_parquet(layout.landing / "cut.parquet")
    data = (layout.landing / "cut.parquet").read_bytes()
    (layout.landing / "cut.parquet").write_bytes(data[: len(data) // 2])
    (layout.landing / "junk.xlsx").write_bytes(b"PK\x03\x04")
    summary = ingest_paths(layout)
    reasons = {f.file: f.reason for f in summary.files}
    assert reasons == {
        "latin1.csv": "not_utf8",
        "empty.csv": "empty",
        "header_only.csv": "empty",
        "cut.parquet": "unreadable",
        "junk.xlsx": "unsupported_format",
    }
    assert summary.files_quarantined == 5 and summary.rows_in == 0
    assert not layout.raw_days()
    for name in reasons:
        assert (layout.quarantine_files / f"{name}.reason.json").exists()
    assert quarantine_reason_counts(layout)["file:empty"] == 2


def test_parquet_ndjson_and_gzip(layout: Layout) -> None:
    frame(row(**{S.SHIPMENT_ID: "P1"})).with_columns(
        pl.col(S.GROSS_WEIGHT_KG).cast(pl.Float64),
        pl.col(S.PIECE_COUNT).cast(pl.Int64),
        pl.col(S.FILED_AT).str.to_datetime(time_zone="UTC"),
        pl.col(S.ARRIVAL_DATE).str.to_date(),
    ).write_parquet(layout.landing / "a.parquet")
    lines = [json.dumps(row(**{S.SHIPMENT_ID: "N1"})), json.dumps({**row(**{S.SHIPMENT_ID: "N2"}), S.PIECE_COUNT: 3})]
    (layout.landing / "b.ndjson").write_text("\n".join(lines) + "\n")
    with gzip.open(layout.landing / "c.csv.gz", "wt") as fh:
        fh.write(frame(row(**{S.SHIPMENT_ID: "G1"})).write_csv())
    with gzip.open(layout.landing / "d.ndjson.gz", "wt") as fh:
        fh.write(json.dumps(row(**{S.SHIPMENT_ID: "G2"})) + "\n")
    summary = ingest_paths(layout)
    out = raw(layout)
    assert out[S.SHIPMENT_ID].to_list() == ["G1", "G2", "N1", "N2", "P1"]
    assert out[S.PIECE_COUNT].to_list() == [2, 2, 2, 3, 2]
    assert out[S.PORT_OF_ENTRY].to_list() == ["0401"] * 5
    assert summary.files_ingested == 4 and summary.rows_ingested == 5


def test_broken_gzip_is_quarantined(layout: Layout) -> None:
    data = gzip.compress(frame(row()).write_csv().encode())
    (layout.landing / "cut.csv.gz").write_bytes(data[:-12])
    summary = ingest_paths(layout)
    assert summary.files[0].status == "quarantined" and summary.files[0].reason == "unreadable"


def test_duplicates_and_amendments_in_one_file(layout: Layout) -> None:
    write_csv(
        layout.landing / "m.csv",
        row(**{S.DECLARED_VALUE: "1"}),
        row(**{S.DECLARED_VALUE: "2", S.FILED_AT: "2026-01-05T09:00:00Z"}),  # later filing wins
        row(**{S.DECLARED_VALUE: "3", S.FILED_AT: "2026-01-04T09:00:00Z"}),  # earlier: superseded
        row(**{S.SHIPMENT_ID: "D"}),
        row(**{S.SHIPMENT_ID: "D"}),  # exact duplicate
    )
    summary = ingest_paths(layout)
    out = raw(layout)
    assert out[S.SHIPMENT_ID].to_list() == ["D", "S1"]
    assert out.filter(pl.col(S.SHIPMENT_ID) == "S1")[S.DECLARED_VALUE].item() == 2.0
    assert (summary.rows_in, summary.rows_ingested, summary.rows_amended) == (5, 2, 3)


def test_tie_on_filed_at_goes_to_later_row(layout: Layout) -> None:
    write_csv(layout.landing / "m.csv", row(**{S.DECLARED_VALUE: "1"}), row(**{S.DECLARED_VALUE: "7"}))
    ingest_paths(layout)
    assert raw(layout)[S.DECLARED_VALUE].to_list() == [7.0]


def test_amendment_across_runs_moves_arrival_date(layout: Layout) -> None:
    write_csv(layout.landing / "day1.csv", row(), row(**{S.SHIPMENT_ID: "S2"}))
    ingest_paths(layout)
    write_csv(
        layout.landing / "day2.csv",
        row(**{S.FILED_AT: "2026-01-06T01:00:00+0000", S.ARRIVAL_DATE: "2026-01-06", S.DECLARED_VALUE: "9"}),
        row(**{S.SHIPMENT_ID: "S2", S.FILED_AT: "2026-01-01T00:00:00Z", S.DECLARED_VALUE: "5"}),
    )
    summary = ingest_paths(layout)
    assert summary.files_skipped == 1 and summary.files_ingested == 1
    assert (summary.rows_in, summary.rows_ingested, summary.rows_amended, summary.rows_replaced_existing) == (
        2,
        1,
        1,
        1,
    )
    assert layout.raw_days() == [date(2026, 1, 5), date(2026, 1, 6)]
    day5 = scan_raw_shipments(layout, [date(2026, 1, 5)]).collect()
    day6 = scan_raw_shipments(layout, [date(2026, 1, 6)]).collect()
    assert day5[S.SHIPMENT_ID].to_list() == ["S2"] and day5[S.DECLARED_VALUE].to_list() == [100.0]
    assert day6[S.SHIPMENT_ID].to_list() == ["S1"] and day6[S.DECLARED_VALUE].to_list() == [9.0]


def test_moving_the_only_row_removes_the_old_partition(layout: Layout) -> None:
    write_csv(layout.landing / "a.csv", row())
    ingest_paths(layout)
    write_csv(layout.landing / "b.csv", row(**{S.FILED_AT: "2026-01-06T00:00:00Z", S.ARRIVAL_DATE: "2026-01-07"}))
    ingest_paths(layout)
    assert layout.raw_days() == [date(2026, 1, 7)]
    assert raw(layout).height == 1


def test_reingest_same_content_changes_nothing(layout: Layout) -> None:
    write_csv(layout.landing / "m.csv", row(), row(**{S.SHIPMENT_ID: "S2", S.GROSS_WEIGHT_KG: "0"}))
    first = ingest_paths(layout)
    before = raw(layout)
    part_files = sorted(layout.raw_shipments.rglob("*.parquet"))
    mtimes = [p.stat().st_mtime_ns for p in part_files]
    second = ingest_paths(layout)
    assert (first.rows_ingested, first.rows_quarantined) == (1, 1)
    assert (second.files_skipped, second.rows_in, second.rows_ingested) == (1, 0, 0)
    assert raw(layout).equals(before)
    assert [p.stat().st_mtime_ns for p in sorted(layout.raw_shipments.rglob("*.parquet"))] == mtimes
    assert len(list(layout.quarantine_rows.glob("*.parquet"))) == 1
    runs = read_runs(layout)
    assert [r["rows_ingested"] for r in runs] == [1, 0]
    # a copy of the same content under another name is skipped too
    (layout.landing / "copy.csv").write_bytes((layout.landing / "m.csv").read_bytes())
    assert ingest_paths(layout).files_skipped == 2


def test_extra_columns_kept_as_strings_after_schema(layout: Layout) -> None:
    write_csv(layout.landing / "m.csv", {**row(), "zz_note": "007", "aa_flag": "x"})
    ingest_paths(layout)
    out = raw(layout)
    assert out.columns[-2:] == ["aa_flag", "zz_note"]
    assert out["zz_note"].to_list() == ["007"]


def test_optional_columns_validated(layout: Layout) -> None:
    write_csv(
        layout.landing / "m.csv",
        row(
            **{
                S.TRUSTED_TRADER: "CTPAT",
                S.KNOWN_CONSIGNOR: "true",
                S.ACCOUNT_CREATED_DATE: "2025-01-02",
                S.LISTED_PRICE: "10",
            }
        ),
        row(
            **{
                S.SHIPMENT_ID: "B",
                S.TRUSTED_TRADER: "gold",
                S.KNOWN_CONSIGNOR: "yes",
                S.ACCOUNT_CREATED_DATE: "2025-02-30",
                S.LISTED_PRICE: "-1",
            }
        ),
    )
    ingest_paths(layout)
    out = raw(layout)
    assert out[S.TRUSTED_TRADER].to_list() == ["ctpat"] and out[S.KNOWN_CONSIGNOR].to_list() == [True]
    assert out[S.LISTED_PRICE_USD][0] == pytest.approx(1.39)
    assert sorted(q_rows(layout)["reasons"][0].to_list()) == [
        "bad_date:account_created_date",
        "bad_enum:trusted_trader",
        "bad_type:known_consignor",
        "negative:listed_price",
    ]


def test_partner_exports(layout: Layout) -> None:
    p = {
        S.SHIPMENT_ID: "S1",
        S.EXPORT_COUNTRY: "mx",
        S.EXPORTER_NAME: "Exp",
        S.EXPORTER_AEO: "true",
        S.PARTNER_DECLARED_VALUE_USD: "10",
        S.GROSS_WEIGHT_KG: "1",
        S.DESCRIPTION: "shirts",
        S.DECLARED_AT: "2026-01-04T10:00:00Z",
    }
    write_csv(
        layout.landing / "partner-exports-1.csv",
        p,
        {**p, S.DECLARED_AT: "2026-01-04T12:00:00Z", S.PARTNER_DECLARED_VALUE_USD: "11"},
        {**p, S.SHIPMENT_ID: "S2", S.GROSS_WEIGHT_KG: "0"},
    )
    summary = ingest_paths(layout)
    out = scan_raw_partner(layout).collect()
    assert out[S.SHIPMENT_ID].to_list() == ["S1"] and out[S.PARTNER_DECLARED_VALUE_USD].to_list() == [11.0]
    assert out[S.EXPORT_COUNTRY].to_list() == ["MX"]
    assert (layout.raw_partner_day(date(2026, 1, 4))).exists()
    assert (summary.rows_in, summary.rows_ingested, summary.rows_amended, summary.rows_quarantined) == (3, 1, 1, 1)
    assert not layout.raw_days()  # partner rows never land in the manifest store


def test_accounting_identity_on_a_mixed_landing(layout: Layout) -> None:
    rows = [row(**{S.SHIPMENT_ID: f"S{i}"}) for i in range(20)]
    rows += [
        row(**{S.SHIPMENT_ID: "S3", S.FILED_AT: "2026-01-05T09:00:00Z"}),
        row(**{S.SHIPMENT_ID: "X", S.CURRENCY: "?"}),
    ]
    write_csv(layout.landing / "a.csv", *rows)
    frame(row(**{S.SHIPMENT_ID: "S4", S.FILED_AT: "2026-01-05T10:00:00Z"})).write_parquet(layout.landing / "b.parquet")
    (layout.landing / "c.csv").write_bytes(b"")
    summary = ingest_paths(layout)
    summary.check()
    assert summary.rows_in == summary.rows_ingested + summary.rows_amended + summary.rows_quarantined == 23
    assert (summary.rows_ingested, summary.rows_amended, summary.rows_quarantined) == (20, 2, 1)
    assert raw(layout).height == 20


def test_subfolders_of_landing_are_not_read(layout: Layout) -> None:
    write_csv(layout.landing / "outcomes" / "labels.csv", {"shipment_id": "S1", "outcome": "no_finding"})
    write_csv(layout.landing / "m.csv", row())
    summary = ingest_paths(layout)
    assert [f.file for f in summary.files] == ["m.csv"]


def test_missing_path_is_a_user_error(layout: Layout) -> None:
    with pytest.raises(RiskpipeError, match="no such file"):
        ingest_paths(layout, [layout.home / "nope.csv"])


def test_fx_rates_replaceable_and_validated(layout: Layout, tmp_path: Path) -> None:
    fx = tmp_path / "fx.csv"
    fx.write_text("currency,usd_per_unit\nCNY,0.5\n")
    write_csv(layout.landing / "m.csv", row(), row(**{S.SHIPMENT_ID: "E", S.CURRENCY: "EUR"}))
    summary = ingest_paths(layout, fx_rates_path=fx)
    assert raw(layout)[S.DECLARED_VALUE_USD].to_list() == [50.0]
    assert summary.quarantine_reasons == {"unknown_currency": 1}
    (tmp_path / "bad.csv").write_text("currency,usd_per_unit\nCNY,-1\n")
    with pytest.raises(RiskpipeError, match="positive rate"):
        load_fx_rates(tmp_path / "bad.csv")
    assert load_fx_rates().filter(pl.col("currency") == "USD")["usd_per_unit"].item() == 1.0


def test_empty_or_null_free_text_is_missing(layout: Layout) -> None:
    frame(
        row(**{S.SHIPMENT_ID: "A", S.DESCRIPTION: ""}),
        row(**{S.SHIPMENT_ID: "B", S.DESCRIPTION: None}),
        row(**{S.SHIPMENT_ID: "C"}),
    ).write_parquet(layout.landing / "m.parquet")
    summary = ingest_paths(layout)
    assert raw(layout)[S.SHIPMENT_ID].to_list() == ["C"]
    assert summary.quarantine_reasons == {"missing:description": 2}


def test_each_empty_file_is_quarantined_once(layout: Layout) -> None:
    (layout.landing / "a.csv").write_bytes(b"")
    (layout.landing / "b.csv").write_bytes(b"")
    first = ingest_paths(layout)
    assert [f.status for f in first.files] == ["quarantined", "quarantined"]
    assert ingest_paths(layout).files_skipped == 2


def test_bench_ingest_small(tmp_path: Path) -> None:
    from riskpipe.bench.ingest import bench_ingest

    out = bench_ingest(tmp_path, rows=2_000)
    assert out["parquet_ingested"] == out["csv_ingested"] == 2_000
    assert out["parquet_s"] > 0 and out["peak_rss_mb"] > 0


def test_cli_prints_counts_and_one_line_errors(tmp_path: Path) -> None:
    import subprocess
    import sys

    exe = Path(sys.executable).parent / "riskpipe"
    if not exe.exists():
        pytest.skip("console script not installed")
    home = tmp_path / "home"
    write_csv(home / "landing" / "m.csv", row(), row(**{S.SHIPMENT_ID: "S2", S.CURRENCY: "???"}))
    env = {"PATH": str(exe.parent), "HOME": str(tmp_path), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    ok = subprocess.run([str(exe), "--home", str(home), "ingest"], capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "rows ingested" in ok.stdout and "unknown_currency" in ok.stdout
    bad = subprocess.run(
        [str(exe), "--home", str(home), "ingest", str(tmp_path / "nope.csv")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert bad.returncode == 1
    assert bad.stderr.strip().count("\n") == 0 and "no such file" in bad.stderr


def test_row_group_statistics_skip_only_files_without_any_new_id(tmp_path: Path) -> None:
    from riskpipe.ingest.merge import _id_ranges, _ranges_hold_any

    def _may_hold_any(path: Path, ids: pl.Series) -> bool:
        return _ranges_hold_any(_id_ranges(path), ids)

    path = tmp_path / "part.parquet"
    pl.DataFrame({S.SHIPMENT_ID: ["B01", "B02", "B03", "D07", "D08", "D09"]}).write_parquet(path, row_group_size=3)
    ids = pl.Series(S.SHIPMENT_ID, ["A9", "C5", "E1"]).sort()  # between, not inside, the row groups
    assert _may_hold_any(path, ids) is False
    assert _may_hold_any(path, pl.Series(S.SHIPMENT_ID, ["A9", "D08x", "E1"]).sort()) is True  # inside [D07, D09]
    assert _may_hold_any(path, pl.Series(S.SHIPMENT_ID, ["B03"])) is True  # a bound itself
    assert _may_hold_any(path, pl.Series(S.SHIPMENT_ID, [], dtype=pl.String)) is False
    assert _may_hold_any(tmp_path / "missing.parquet", ids) is True  # in doubt: read it


def test_amendment_across_runs_with_many_old_partitions(layout: Layout) -> None:
    write_csv(layout.landing / "d1.csv", row(**{S.SHIPMENT_ID: "A1"}))
    write_csv(layout.landing / "d2.csv", row(**{S.SHIPMENT_ID: "Z1", S.ARRIVAL_DATE: "2026-01-04"}))
    ingest_paths(layout)
    write_csv(
        layout.landing / "d3.csv",
        row(
            **{
                S.SHIPMENT_ID: "Z1",
                S.ARRIVAL_DATE: "2026-01-06",
                S.FILED_AT: "2026-01-06T00:00:00Z",
                S.DECLARED_VALUE: "7",
            }
        ),
    )
    summary = ingest_paths(layout)
    assert (summary.rows_ingested, summary.rows_replaced_existing) == (1, 1)
    assert layout.raw_days() == [date(2026, 1, 5), date(2026, 1, 6)]
    day6 = scan_raw_shipments(layout, [date(2026, 1, 6)]).collect()
    assert day6[S.SHIPMENT_ID].to_list() == ["Z1"] and day6[S.DECLARED_VALUE].to_list() == [7.0]


def test_enum_typed_parquet_columns_are_checked_by_category(layout: Layout) -> None:
    """Parquet written by Polars keeps Enum columns; their categories are trimmed, lower-cased and
    checked once, with the same reasons as text input (empty and null are missing)."""
    mode = pl.Enum([" Express ", "", "bogus", "postal", "truck"])
    ids = ["E1", "E2", "E3", "E4", "E5"]
    frame(*[row(**{S.SHIPMENT_ID: i}) for i in ids]).with_columns(
        pl.Series(S.MODE, [" Express ", "", None, "bogus", "postal"], dtype=mode),
    ).write_parquet(layout.landing / "e.parquet")
    summary = ingest_paths(layout)
    out = raw(layout)
    assert out[S.SHIPMENT_ID].to_list() == ["E1", "E5"]
    assert out[S.MODE].dtype == S.Mode and out[S.MODE].to_list() == ["express", "postal"]
    assert summary.quarantine_reasons == {"missing:mode": 2, "bad_enum:mode": 1}


def test_id_ranges_rule_out_files_in_one_search(tmp_path: Path) -> None:
    from riskpipe.ingest.merge import _id_ranges, _ranges_hold_any

    path = tmp_path / "part.parquet"
    pl.DataFrame({S.SHIPMENT_ID: ["B01", "B02", "B03", "D07", "D08", "D09"]}).write_parquet(path, row_group_size=3)
    ranges = _id_ranges(path)
    assert ranges == [("B01", "B03"), ("D07", "D09")]
    assert _ranges_hold_any(ranges, pl.Series(["C0", "Z9"]).sort()) is False  # both past their lows, above the highs
    assert _ranges_hold_any(ranges, pl.Series(["A0", "D09"]).sort()) is True
    assert _ranges_hold_any(None, pl.Series(["A0"])) is True
    pl.DataFrame({S.SHIPMENT_ID: ["X1"]}).write_parquet(path, statistics=False)
    assert _id_ranges(path) is None


def test_a_day_of_several_files_becomes_parts_and_only_contested_rows_are_rewritten(layout: Layout) -> None:
    """Rows whose id is filed twice are staged apart, so each file's other rows become a part of
    the partition as staged; a later amendment rewrites only the part holding the replaced row."""
    later = {S.FILED_AT: "2026-01-05T09:00:00Z"}
    write_csv(
        layout.landing / "a.csv",
        row(**{S.SHIPMENT_ID: "A1"}),
        row(**{S.SHIPMENT_ID: "A2"}),
        row(**{S.SHIPMENT_ID: "A3"}),
    )
    write_csv(
        layout.landing / "b.csv",
        row(**{S.SHIPMENT_ID: "B1"}),
        row(**{S.SHIPMENT_ID: "B2"}),
        row(**{S.SHIPMENT_ID: "A2", S.DECLARED_VALUE: "7", **later}),
    )
    summary = ingest_paths(layout)
    assert (summary.rows_in, summary.rows_ingested, summary.rows_amended) == (6, 5, 1)
    part_dir = layout.raw_shipments_day(date(2026, 1, 5))
    parts = sorted(part_dir.glob("*.parquet"))
    assert [pl.read_parquet(p)[S.SHIPMENT_ID].to_list() for p in parts] == [["A1", "A3"], ["B1", "B2"], ["A2"]]
    out = raw(layout)
    assert out[S.SHIPMENT_ID].to_list() == ["A1", "A2", "A3", "B1", "B2"]
    assert out.filter(pl.col(S.SHIPMENT_ID) == "A2")[S.DECLARED_VALUE].item() == 7.0

    inode_a = parts[0].stat().st_ino
    write_csv(layout.landing / "c.csv", row(**{S.SHIPMENT_ID: "B1", S.DECLARED_VALUE: "9", **later}))
    summary = ingest_paths(layout)
    assert (summary.rows_ingested, summary.rows_replaced_existing) == (1, 1)
    after = sorted(part_dir.glob("*.parquet"))
    assert after[0].name == parts[0].name and after[0].stat().st_ino == inode_a  # untouched part kept
    assert parts[1].name not in {p.name for p in after}  # the part with the replaced row was rewritten
    out = raw(layout)
    assert sorted(out[S.SHIPMENT_ID].to_list()) == ["A1", "A2", "A3", "B1", "B2"]
    assert out.filter(pl.col(S.SHIPMENT_ID) == "B1")[S.DECLARED_VALUE].item() == 9.0


def test_parts_with_other_columns_are_merged_into_one(layout: Layout) -> None:
    """Parts of one partition share one schema: a file with an extra input column makes the
    day one rewritten part (the extra column null elsewhere)."""
    write_csv(layout.landing / "a.csv", row(**{S.SHIPMENT_ID: "A1"}))
    write_csv(layout.landing / "b.csv", {**row(**{S.SHIPMENT_ID: "B1"}), "note": "x"})
    ingest_paths(layout)
    parts = sorted(layout.raw_shipments_day(date(2026, 1, 5)).glob("*.parquet"))
    assert len(parts) == 1
    out = raw(layout)
    assert out[S.SHIPMENT_ID].to_list() == ["A1", "B1"] and out["note"].to_list() == [None, "x"]


# ---------------------------------------------------------------------------------------------
# issue 12: hostile or careless input
# ---------------------------------------------------------------------------------------------
def test_a_filing_dated_in_the_future_cannot_beat_later_amendments(layout: Layout) -> None:
    write_csv(
        layout.landing / "a.csv",
        row(**{S.DECLARED_VALUE: "1"}),
        row(**{S.DECLARED_VALUE: "666", S.FILED_AT: "2099-01-01T00:00:00Z"}),
    )
    first = ingest_paths(layout)
    assert first.quarantine_reasons == {"future:filed_at": 1}
    write_csv(layout.landing / "b.csv", row(**{S.DECLARED_VALUE: "2", S.FILED_AT: "2026-01-06T00:00:00Z"}))
    ingest_paths(layout)
    assert raw(layout)[S.DECLARED_VALUE].to_list() == [2.0]


def test_derived_values_in_the_store_are_finite(layout: Layout) -> None:
    """The rows that made every night fail (issue 12) are quarantined, so every float the store
    holds is finite and within the limits."""
    from riskpipe.ingest import MAX_VALUE_USD, MAX_WEIGHT_KG, MIN_WEIGHT_KG

    write_csv(
        layout.landing / "m.csv",
        row(**{S.SHIPMENT_ID: "A", S.LISTED_PRICE: "5"}),
        row(**{S.SHIPMENT_ID: "B", S.DECLARED_VALUE: "1.7e308", S.CURRENCY: "GBP", S.LISTED_PRICE: "5"}),
        row(**{S.SHIPMENT_ID: "C", S.GROSS_WEIGHT_KG: "1e-320", S.LISTED_PRICE: "5"}),
        row(**{S.SHIPMENT_ID: "D", S.GROSS_WEIGHT_KG: "4.9e-324", S.LISTED_PRICE: "5"}),
        row(**{S.SHIPMENT_ID: "E", S.LISTED_PRICE: "1e308", S.CURRENCY: "GBP"}),
    )
    summary = ingest_paths(layout)
    out = raw(layout)
    assert out[S.SHIPMENT_ID].to_list() == ["A"]
    assert summary.rows_quarantined == 4
    floats = [c for c, t in out.schema.items() if t == pl.Float64]
    assert out.select(pl.all_horizontal(pl.col(floats).is_finite().fill_null(True))).to_series().all()
    assert out[S.DECLARED_VALUE_USD].max() <= MAX_VALUE_USD
    assert MIN_WEIGHT_KG <= out[S.GROSS_WEIGHT_KG].min() <= MAX_WEIGHT_KG


def test_partner_rows_get_the_same_limits(layout: Layout) -> None:
    p = {
        S.SHIPMENT_ID: "S1",
        S.EXPORT_COUNTRY: "MX",
        S.EXPORTER_NAME: "Exp",
        S.EXPORTER_AEO: "true",
        S.PARTNER_DECLARED_VALUE_USD: "10",
        S.GROSS_WEIGHT_KG: "1",
        S.DESCRIPTION: "shirts",
        S.DECLARED_AT: "2026-01-04T10:00:00Z",
    }
    write_csv(
        layout.landing / "partner-exports-1.csv",
        p,
        {**p, S.SHIPMENT_ID: "W", S.GROSS_WEIGHT_KG: "1e-320"},
        {**p, S.SHIPMENT_ID: "V", S.PARTNER_DECLARED_VALUE_USD: "1.7e308"},
        {**p, S.SHIPMENT_ID: "F", S.DECLARED_AT: "2099-01-01T00:00:00Z"},
        {**p, S.SHIPMENT_ID: "O", S.DECLARED_AT: "1900-01-01T00:00:00Z"},
    )
    summary = ingest_paths(layout)
    assert scan_raw_partner(layout).collect()[S.SHIPMENT_ID].to_list() == ["S1"]
    assert summary.quarantine_reasons == {
        "implausible:gross_weight_kg": 1,
        "implausible:declared_value_usd": 1,
        "future:declared_at": 1,
        "implausible:declared_at": 1,
    }


def test_ndjson_key_first_seen_after_line_1000_is_kept(layout: Layout) -> None:
    lines = [json.dumps(row(**{S.SHIPMENT_ID: f"N{i:04d}"})) for i in range(1, 1500)]
    lines.append(json.dumps({**row(**{S.SHIPMENT_ID: "N1500"}), S.CONSIGNEE_PHONE: "+1 555 0100", "late_note": "x"}))
    (layout.landing / "late.ndjson").write_text("\n".join(lines) + "\n")
    summary = ingest_paths(layout)
    assert summary.rows_ingested == 1500 and summary.rows_quarantined == 0
    last = raw(layout).filter(pl.col(S.SHIPMENT_ID) == "N1500")
    assert last[S.CONSIGNEE_PHONE].to_list() == ["+1 555 0100"]
    assert last["late_note"].to_list() == ["x"]


def test_symlinks_and_special_files_in_landing_are_refused_not_followed(layout: Layout, tmp_path: Path) -> None:
    import os
    import stat

    secret = tmp_path / "session.secret"
    secret.write_text("s3cr3t-session-key\n")
    outside = write_csv(tmp_path / "elsewhere" / "m.csv", row(**{S.SHIPMENT_ID: "VIA_LINK"}))
    (layout.landing / "secret.csv").symlink_to(secret)
    (layout.landing / "linked.csv").symlink_to(outside)
    os.mkfifo(layout.landing / "pipe.csv")
    write_csv(layout.landing / "ok.csv", row())
    summary = ingest_paths(layout)
    assert raw(layout)[S.SHIPMENT_ID].to_list() == ["S1"]
    assert summary.files_ingested == 1 and summary.files_quarantined == 0 and summary.files_refused == 3
    refused = {f.file: f.reason for f in summary.files if f.status == "refused"}
    assert refused == {"secret.csv": "symlink", "linked.csv": "symlink", "pipe.csv": "not_regular_file"}
    # nothing of the link targets was copied anywhere under the home
    for f in layout.home.rglob("*"):
        if f.is_file() and not f.is_symlink() and stat.S_ISREG(f.lstat().st_mode):
            assert b"s3cr3t" not in f.read_bytes(), f
    assert not layout.quarantine_files.exists() or not any(layout.quarantine_files.iterdir())
    run = read_runs(layout)[-1]
    assert run["files_refused"] == 3
    assert {f["file"]: f["reason"] for f in run["files"] if f["status"] == "refused"} == refused
    assert ingest_paths(layout).files_refused == 3  # reported again, still never read


def test_explicit_symlink_path_is_refused(layout: Layout, tmp_path: Path) -> None:
    target = write_csv(tmp_path / "real.csv", row())
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    with pytest.raises(RiskpipeError, match="symbolic link") as err:
        ingest_paths(layout, [link])
    assert "\n" not in str(err.value)
    assert not layout.raw_days()


def test_duplicate_column_names_quarantine_the_file(layout: Layout) -> None:
    """CSV headers and Parquet schemas (NDJSON objects: see the next test)."""
    header = list(row())
    (layout.landing / "dup.csv").write_text(
        ",".join([*header, S.DESCRIPTION]) + "\n" + ",".join([*row().values(), "other"]) + "\n"
    )
    with gzip.open(layout.landing / "dupz.csv.gz", "wt") as fh:
        fh.write(",".join([*header, S.DESCRIPTION]) + "\n" + ",".join([*row().values(), "other"]) + "\n")
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({**{k: [v] for k, v in row().items()}})
    pq.write_table(table.append_column(S.DESCRIPTION, pa.array(["other"])), layout.landing / "dup.parquet")
    write_csv(layout.landing / "ok.csv", row(**{S.SHIPMENT_ID: "OK"}))
    summary = ingest_paths(layout)
    assert raw(layout)[S.SHIPMENT_ID].to_list() == ["OK"]
    reasons = {f.file: f.reason for f in summary.files if f.status == "quarantined"}
    assert reasons == {name: f"duplicate_column:{S.DESCRIPTION}" for name in ("dup.csv", "dupz.csv.gz", "dup.parquet")}
    assert summary.quarantine_reasons == {f"file:duplicate_column:{S.DESCRIPTION}": 3}


def test_ndjson_object_with_a_key_twice_quarantines_the_file(layout: Layout) -> None:
    """Polars keeps one of the two values silently: the file is set aside with the key and line.
    A key's name inside a string value (escaped quotes) is not a repeat."""
    import json

    good = [json.dumps(row(**{S.SHIPMENT_ID: f"N{i}"})) for i in range(3)]
    twice = json.dumps(row(**{S.SHIPMENT_ID: "N9"}))[:-1] + ', "declared_value": "1"}'
    (layout.landing / "dup.ndjson").write_text("\n".join([*good, twice]) + "\n")
    quoted = row(**{S.SHIPMENT_ID: "Q1", S.DESCRIPTION: 'tag ,"description": x'})
    (layout.landing / "ok.ndjson").write_text(json.dumps(quoted) + "\n")
    summary = ingest_paths(layout)
    assert raw(layout)[S.SHIPMENT_ID].to_list() == ["Q1"]
    assert raw(layout)[S.DESCRIPTION].to_list() == ['tag ,"description": x']
    reasons = {f.file: f.reason for f in summary.files if f.status == "quarantined"}
    assert reasons == {"dup.ndjson": f"duplicate_key:{S.DECLARED_VALUE}"}
    info = json.loads((layout.quarantine_files / "dup.ndjson.reason.json").read_text())
    assert info["detail"] == f"line 4 gives {S.DECLARED_VALUE} twice"


def _run_cli(home: Path, *args: str):
    """The ``riskpipe`` command of this checkout (not an installed copy) in a subprocess."""
    import subprocess
    import sys

    import riskpipe

    env = {
        "PATH": str(Path(sys.executable).parent),
        "HOME": str(home.parent),
        "PYTHONPATH": str(Path(riskpipe.__file__).parents[1]),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    code = "import sys; from riskpipe.cli import main; sys.argv[0] = 'riskpipe'; main()"
    return subprocess.run(
        [sys.executable, "-c", code, "--home", str(home), *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_cli_ingest_fails_when_every_file_is_quarantined(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "landing").mkdir(parents=True)
    (home / "landing" / "a.csv").write_bytes(b"")
    frame(row()).drop(S.GROSS_WEIGHT_KG).write_csv(home / "landing" / "b.csv")
    bad = _run_cli(home, "ingest")
    assert bad.returncode != 0
    last = (bad.stdout + bad.stderr).strip().splitlines()[-1]
    assert "quarantined" in last and "nothing was ingested" in last
    write_csv(home / "landing" / "c.csv", row())  # one good new file: success again
    ok = _run_cli(home, "ingest")
    assert ok.returncode == 0, ok.stderr
    assert "rows ingested" in ok.stdout
