"""One file-format registry (issue 18): a format registered once is written by the synthetic
world's writer, read by ingest and read by the external benchmark; before, each of them
dispatched on file names by itself."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import IO

import polars as pl
import pytest

from riskpipe import schema as S
from riskpipe.bench.ingest import sample_manifest
from riskpipe.external import parse_mapping, read_table
from riskpipe.ingest import Format, file_format, format_of, ingest_paths, register_format
from riskpipe.ingest.readers import REGISTRY, ROW
from riskpipe.store import Layout, scan_raw_shipments
from riskpipe.synth.writer import file_name, write_frame


def _scan_psv(source: Path, check_utf8: bool, all_keys: bool) -> pl.LazyFrame:
    return pl.scan_csv(source, separator="|", infer_schema=False, row_index_name=ROW, row_index_offset=1)


def _read_psv(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, separator="|", infer_schema=False)


def _write_psv(frame: pl.DataFrame, target: Path | IO[bytes]) -> None:
    frame.write_csv(target, separator="|")


@pytest.fixture
def psv() -> Iterator[Format]:
    """Pipe-separated values, registered for the test only."""
    fmt = register_format(Format("psv", (".psv",), _scan_psv, _read_psv, _write_psv))
    try:
        yield fmt
    finally:
        REGISTRY.pop("psv", None)


def test_a_format_registered_once_is_written_by_synth_and_read_by_ingest_and_external(
    tmp_path: Path, psv: Format
) -> None:
    name = file_name("manifest", date(2026, 1, 5), 1, "psv", False)
    assert name == "manifest-2026-01-05-1.psv"
    layout = Layout(tmp_path / "home")
    path = write_frame(sample_manifest(40), layout.landing / name, "psv", False)
    assert format_of(path) is psv and file_format(path) == "psv"
    assert "|" in path.read_text(encoding="utf-8").splitlines()[0]

    summary = ingest_paths(layout)  # ingest: the registry's lazy text reader
    assert [f.status for f in summary.files] == ["ingested"]
    assert summary.rows_ingested == 40 and summary.rows_quarantined == 0
    assert scan_raw_shipments(layout).select(pl.len()).collect().item() == 40

    mapping = parse_mapping(  # external benchmark: the registry's eager reader
        {
            "dataset": {"label": S.KNOWN_CONSIGNOR, "positive": ["true"]},
            "columns": {"numeric": [S.DECLARED_VALUE], "categorical": [S.PORT_OF_ENTRY]},
        }
    )
    frame = read_table(path, mapping)
    assert frame.height == 40
    assert frame.schema[S.DECLARED_VALUE] == pl.Float64
    assert frame[S.PORT_OF_ENTRY].str.len_chars().to_list() == [4] * 40  # codes kept as text


def test_every_reader_and_writer_knows_the_same_formats(tmp_path: Path) -> None:
    frame = pl.DataFrame({S.SHIPMENT_ID: ["S1", "S2"], "n": ["1", "2"]})
    for fmt in REGISTRY.values():
        for gzip in (False, True) if fmt.gzip else (False,):
            path = write_frame(frame, tmp_path / file_name("m", date(2026, 1, 5), None, fmt.name, gzip), fmt.name, gzip)
            assert format_of(path) is fmt
            assert fmt.read(path)[S.SHIPMENT_ID].to_list() == ["S1", "S2"]
    assert format_of(tmp_path / "x.xlsx") is None and file_format(tmp_path / "x.parquet.gz") is None
