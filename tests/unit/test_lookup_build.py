"""The day's look-up files built in bounded memory (issue 16 point 4): the ids, the rows, the link
entries and the scores are built one id range (and one link hash range) at a time, never from the
whole day at once, and the files are those the whole day sorted at once gave (a copy of that build
is kept here as the reference): byte for byte, but for the rows copy's text buffers (bytes under
nulls and padding), which follow how Polars laid out the strings it read (its batches are
compared)."""

from __future__ import annotations

import os
import random
import shutil
import stat
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from riskpipe import lookup
from riskpipe import schema as S
from riskpipe.store import PRIVATE_FILE, Layout, private_dir, scan_raw_shipments

DAY = date(2026, 3, 5)
LINK_COLUMNS = list(lookup.LINK_FIELDS)


# --- the build as it was: the whole day's ids, link entries and scores sorted at once ---------------


def _original_write_private(frame: pl.DataFrame, path: Path, row_group_size: int) -> None:
    tmp = lookup._private_tmp(path)
    try:
        table = frame.rechunk().to_arrow()
        table = table.replace_schema_metadata({lookup.BATCH_ROWS_KEY: str(row_group_size).encode()})
        options = ipc.IpcWriteOptions(compression=lookup.IPC_COMPRESSION)
        with ipc.new_file(str(tmp), table.schema, options=options) as w:
            w.write_table(table, max_chunksize=max(1, row_group_size))
        os.chmod(tmp, PRIVATE_FILE)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _original_write_array(values: np.ndarray, path: Path) -> None:
    tmp = lookup._private_tmp(path)
    try:
        with open(tmp, "wb") as fh:
            np.save(fh, values, allow_pickle=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _original_id_array(ids: pl.Series) -> np.ndarray:
    encoded = [s.encode() for s in ids.fill_null("").to_list()]
    width = max((len(b) for b in encoded), default=1) or 1
    return np.array(encoded, dtype=f"S{width}")


def _original_build(layout: Layout, day: date, fp: str) -> dict[str, Path]:
    paths = lookup._paths(layout, day, fp)
    folder = paths["rows"].parent
    private_dir(folder, under=layout.home)
    scan = scan_raw_shipments(layout, [day])
    sorted_ids = scan.select(S.SHIPMENT_ID).collect().get_column(S.SHIPMENT_ID).sort()
    _original_write_private(scan.collect().sort(S.SHIPMENT_ID), paths["rows"], lookup.LOOKUP_ROWS)
    ids = _original_id_array(sorted_ids)
    columns = scan.collect_schema().names()
    parts = [
        scan.select(S.SHIPMENT_ID, col)
        .sort(S.SHIPMENT_ID)
        .with_row_index("row")
        .select(pl.lit(code, pl.UInt8).alias("field"), pl.col(col).cast(pl.String).alias("v"), "row")
        .filter(pl.col("v").is_not_null() & (pl.col("v") != ""))
        .select(pl.col("v").hash(seed=lookup._SEED).alias("h"), "field", "row")
        .collect()
        for col, code in lookup.LINK_FIELDS.items()
        if col in columns
    ]
    links = (
        pl.concat(parts).sort("h", "field", "row")
        if parts
        else pl.DataFrame(schema={"h": pl.UInt64, "field": pl.UInt8, "row": pl.UInt32})
    )
    _original_write_array(links.get_column("h").cast(pl.UInt64).to_numpy(), paths["links_h"])
    _original_write_array(links.get_column("field").cast(pl.UInt8).to_numpy(), paths["links_field"])
    _original_write_array(links.get_column("row").cast(pl.UInt32).to_numpy(), paths["links_row"])
    if lookup._scores_file(layout, day).exists():
        scores = pl.read_parquet(lookup._scores_file(layout, day)).sort(S.SHIPMENT_ID)
        _original_write_private(scores, paths["scores"], lookup.LOOKUP_ROWS)
        _original_write_array(_original_id_array(scores.get_column(S.SHIPMENT_ID)), paths["scores_ids"])
    else:
        paths = {k: p for k, p in paths.items() if not k.startswith("scores")}
    _original_write_array(ids, paths["ids"])
    return paths


# --- synthetic days --------------------------------------------------------------------------------


def _raw_day(n: int, seed: int) -> pl.DataFrame:
    """``n`` shipments with ids of varying length (some non-ASCII), link values shared across rows
    and across fields, null and empty values, in no particular order."""
    rng = random.Random(seed)
    ids = [f"S{'x' * (i % 7)}{i:05d}{'é' if i % 11 == 0 else ''}" for i in range(n)]
    rng.shuffle(ids)
    shared = ["555-0101", "a@b.c", "k1", "", None, "SELLER-1"]

    def value(i: int, field: int) -> str | None:
        r = rng.random()
        if r < 0.3:
            return shared[(i + field) % len(shared)]  # the same value in several rows and fields
        if r < 0.4:
            return None
        if r < 0.45:
            return ""
        return f"v{field}-{rng.randrange(n // 3 + 1)}"

    data: dict[str, list[object]] = {S.SHIPMENT_ID: ids, S.ARRIVAL_DATE: [DAY] * n}
    for f, col in enumerate(LINK_COLUMNS):
        data[col] = [value(i, f) for i in range(n)]
    data["declared_value"] = [round(rng.random() * 100, 2) for _ in range(n)]
    schema = {S.SHIPMENT_ID: pl.String, S.ARRIVAL_DATE: pl.Date, **dict.fromkeys(LINK_COLUMNS, pl.String)}
    return pl.DataFrame(data, schema={**schema, "declared_value": pl.Float64})


def _home(root: Path, raw: pl.DataFrame, files: int, scores: pl.DataFrame | None) -> Layout:
    layout = Layout(root)
    folder = layout.raw_shipments_day(DAY)
    folder.mkdir(parents=True)
    cuts = np.linspace(0, raw.height, files + 1).astype(int)
    for k in range(files):
        raw.slice(cuts[k], cuts[k + 1] - cuts[k]).write_parquet(folder / f"part-{k}.parquet", row_group_size=13)
    if scores is not None:
        target = lookup._scores_file(layout, DAY)
        target.parent.mkdir(parents=True)
        scores.write_parquet(target, row_group_size=17)
    return layout


def _scores_of(raw: pl.DataFrame, keep: float, seed: int) -> pl.DataFrame:
    """Scores for a share of the day's shipments, shuffled (the published file is not sorted)."""
    rng = random.Random(seed)
    ids = [sid for sid in raw.get_column(S.SHIPMENT_ID).to_list() if rng.random() < keep]
    rng.shuffle(ids)
    return pl.DataFrame({S.SHIPMENT_ID: ids, S.RISK_SCORE: [rng.random() for _ in ids]})


@pytest.fixture()
def small_ranges(monkeypatch):
    """Batches of 4 rows, id ranges of 32 rows, 520 rows read ahead (the IPC writer pads a 4-row
    batch's validity bitmap over 512 rows), link parts of about 400 entries."""
    monkeypatch.setattr(lookup, "LOOKUP_ROWS", 4)
    monkeypatch.setattr(lookup, "BUILD_CHUNK_ROWS", 34)
    monkeypatch.setattr(lookup, "LOOKAHEAD_ROWS", 520, raising=False)
    monkeypatch.setattr(lookup, "LINK_PART_ENTRIES", 400, raising=False)


def _files(paths: dict[str, Path]) -> dict[str, bytes]:
    return {k: p.read_bytes() for k, p in paths.items()}


def _built_both_ways(tmp_path: Path, raw: pl.DataFrame, files: int, scores: pl.DataFrame | None):
    layout = _home(tmp_path / "home", raw, files, scores)
    reference = Layout(tmp_path / "reference")
    shutil.copytree(layout.home, reference.home)
    fp = lookup.day_fingerprint(layout, DAY)
    assert fp is not None
    want = _original_build(reference, DAY, fp)
    got = lookup._build(layout, DAY, fp)
    return layout, want, got


CASES = {
    "several ranges and parts, shuffled scores for fewer ids": (1500, 3, 0.7),
    "every shipment scored": (97, 2, 1.0),
    "no scores": (150, 1, None),
    "one row": (1, 1, 1.0),
    "one row, no score": (1, 1, 0.0),
    "empty day": (0, 1, None),
}


@pytest.mark.parametrize("sample", [100_000, 40], ids=["exact bounds", "sampled bounds"])
@pytest.mark.parametrize("case", list(CASES))
def test_the_files_are_byte_for_byte_those_of_the_day_sorted_at_once(tmp_path, small_ranges, monkeypatch, case, sample):
    monkeypatch.setattr(lookup, "SAMPLE_IDS", sample, raising=False)
    n, files, keep = CASES[case]
    raw = _raw_day(n, seed=n)
    scores = None if keep is None else _scores_of(raw, keep, seed=n + 1)
    layout, want, got = _built_both_ways(tmp_path, raw, files, scores)
    assert set(got) == set(want) and ("scores" in got) == (scores is not None)
    reference, built = _files(want), _files(got)
    for kind in [k for k in want if k != "rows"]:
        assert built[kind] == reference[kind], kind
    for kind in [k for k in want if want[k].suffix == ".arrow"]:  # batch by batch: rows, sizes, schema
        a, b = (ipc.open_file(pa.memory_map(str(p[kind]))) for p in (want, got))
        assert a.schema.equals(b.schema, check_metadata=True), kind
        sizes = [b.get_batch(i).num_rows for i in range(b.num_record_batches)]
        assert sizes == [a.get_batch(i).num_rows for i in range(a.num_record_batches)], kind
        assert all(a.get_batch(i).equals(b.get_batch(i)) for i in range(a.num_record_batches)), kind
        assert all(s == lookup.LOOKUP_ROWS for s in sizes[:-1]), kind
    for kind in [k for k in got if k.endswith("ids") or k.startswith("links")]:  # array by array, too
        assert np.array_equal(np.load(got[kind]), np.load(want[kind])), kind
    for p in got.values():
        assert stat.S_IMODE(p.stat().st_mode) == PRIVATE_FILE
    assert stat.S_IMODE(got["ids"].parent.stat().st_mode) == 0o700
    assert sorted(p.name for p in got["ids"].parent.iterdir()) == sorted(p.name for p in got.values())
    rows = pl.from_arrow(ipc.open_file(pa.memory_map(str(got["rows"]))).read_all())
    assert isinstance(rows, pl.DataFrame)
    assert rows.equals(raw.sort(S.SHIPMENT_ID))
    if n:  # the readers find a shipment and its links in the new files
        sid = raw.get_column(S.SHIPMENT_ID)[n // 2]
        assert lookup.read_rows(got, [sid]).equals(raw.filter(pl.col(S.SHIPMENT_ID) == sid))
        lookup._OPEN.clear()


def test_the_build_never_reads_the_whole_day_at_once(tmp_path, small_ranges, monkeypatch) -> None:
    """No read of the raw day or of the scores (a Polars collect, a Parquet record batch) returns
    more than an id range's rows, and the link entries are sorted one hash range at a time: the
    build's memory does not grow with the day (a 4 M-row day held 1.9 GB, a 16 M-row one ~7.6 GB)."""
    raw = _raw_day(1200, seed=5)
    layout = _home(tmp_path / "home", raw, 3, _scores_of(raw, 0.9, seed=6))
    reads: list[int] = []
    real_collect, real_batches, real_fromfile = pl.LazyFrame.collect, pq.ParquetFile.iter_batches, np.fromfile

    def collect(self, *args, **kwargs):
        out = real_collect(self, *args, **kwargs)
        reads.append(out.height)
        return out

    written: list[int] = []
    real_write = ipc.RecordBatchFileWriter.write_table

    def write(self, table, *args, **kwargs):
        written.append(table.num_rows)
        return real_write(self, table, *args, **kwargs)

    def batches(self, *args, **kwargs):
        for b in real_batches(self, *args, **kwargs):
            reads.append(b.num_rows)
            yield b

    def whole(*_a, **_k):
        raise AssertionError("a file was read whole")

    parts: list[int] = []

    def fromfile(*args, **kwargs):
        out = real_fromfile(*args, **kwargs)
        parts.append(out.size)
        return out

    monkeypatch.setattr(pl.LazyFrame, "collect", collect)
    monkeypatch.setattr(pq.ParquetFile, "iter_batches", batches)
    monkeypatch.setattr(pl, "read_parquet", whole)
    monkeypatch.setattr(pq, "read_table", whole)
    monkeypatch.setattr(np, "fromfile", fromfile)
    monkeypatch.setattr(ipc.RecordBatchFileWriter, "write_table", write)
    paths = lookup.build_lookup(layout, DAY)
    monkeypatch.setattr(np, "fromfile", real_fromfile)
    assert paths is not None
    assert reads and max(reads) <= 32  # BUILD_CHUNK_ROWS 34 with batches of 4: ranges of 32 rows
    assert written and max(written) <= 32 + 520 + 4  # a range and the rows read ahead at a time
    entries = np.load(paths["links_h"]).size
    assert entries > 3000 and parts and sum(parts) == entries and max(parts) < entries / 4


def test_a_build_failing_after_the_rows_leaves_no_temporary_file_and_no_ids(tmp_path, small_ranges, monkeypatch):
    """A failure late in the build (here: renaming in the scores copy) reaches the caller and
    leaves neither the completeness mark nor any temporary or spilled file."""
    raw = _raw_day(120, seed=3)
    layout = _home(tmp_path / "home", raw, 2, _scores_of(raw, 0.5, seed=4))
    real_replace = os.replace

    def replace(src, dst, *a, **k):
        if Path(dst).name.startswith("scores"):
            raise OSError("No space left on device")
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="No space left"):
        lookup.build_lookup(layout, DAY)
    monkeypatch.setattr(os, "replace", real_replace)
    folder = lookup.lookup_root(layout) / f"day={DAY.isoformat()}"
    left = sorted(p.name for p in folder.iterdir())
    assert not [name for name in left if name.startswith(".") or name.startswith("ids")], left
    assert lookup.ready_lookup(layout, DAY) is None
    assert lookup.build_lookup(layout, DAY) is not None  # a later build completes


def test_the_build_reads_the_raw_day_and_the_scores_twice_whatever_the_number_of_ranges(
    tmp_path, small_ranges, monkeypatch
) -> None:
    """The ids are sampled in one pass and, from SPLIT_MIN_RANGES ranges on, the rows split by id
    range in a second, then each range is read back from the spill: filtering the raw day once per range decoded its id column once a
    range (ingest order: row-group statistics skip nothing), 31 times at 4 M rows, 122 at 16 M. A
    lazy collect of a Parquet scan counts as one read of the files it scans; a record batch read
    counts its rows."""
    raw = _raw_day(1200, seed=7)
    scores = _scores_of(raw, 0.8, seed=8)
    layout = _home(tmp_path / "home", raw, 3, scores)
    raw_folder = str(layout.raw_shipments_day(DAY))
    scores_file = str(lookup._scores_file(layout, DAY))
    chunk = lookup._chunk_rows(lookup.LOOKUP_ROWS)
    assert len(lookup._id_ranges([Path(scores_file)], chunk)[2]) > 20  # many ranges (of 32 rows)
    collects = {"raw": 0, "scores": 0}
    rows = {"raw": 0, "scores": 0}
    real_collect, real_init, real_batches = pl.LazyFrame.collect, pq.ParquetFile.__init__, pq.ParquetFile.iter_batches

    def which(text: str) -> str | None:
        return "raw" if raw_folder in text else "scores" if scores_file in text else None

    def collect(self, *args, **kwargs):
        plan = self.explain(optimized=False)
        for kind in collects:
            if kind == which(plan):
                collects[kind] += 1
        return real_collect(self, *args, **kwargs)

    def init(self, source, *args, **kwargs):
        self._watched = which(str(source))
        return real_init(self, source, *args, **kwargs)

    def batches(self, *args, **kwargs):
        for b in real_batches(self, *args, **kwargs):
            if getattr(self, "_watched", None):
                rows[self._watched] += b.num_rows
            yield b

    monkeypatch.setattr(pl.LazyFrame, "collect", collect)
    monkeypatch.setattr(pq.ParquetFile, "__init__", init)
    monkeypatch.setattr(pq.ParquetFile, "iter_batches", batches)
    paths = lookup.build_lookup(layout, DAY)
    monkeypatch.setattr(pl.LazyFrame, "collect", real_collect)
    assert paths is not None and np.load(paths["ids"]).size == raw.height
    passes = {
        "raw": collects["raw"] + rows["raw"] / raw.height,
        "scores": collects["scores"] + rows["scores"] / scores.height,
    }
    assert passes["raw"] <= 2 and passes["scores"] <= 2, passes
    assert rows["raw"] >= raw.height and rows["scores"] >= scores.height  # the watch saw the reads


def test_a_null_id_is_placed_as_the_whole_day_sort_places_it(tmp_path, small_ranges) -> None:
    """Ingest keeps no null id, but the split by id range places one where the filter of the first
    range did (and the whole-day sort does): first, as an empty id."""
    raw = _raw_day(300, seed=9)
    raw = raw.with_columns(
        pl.when(pl.int_range(pl.len()).is_in([5, 250])).then(None).otherwise(pl.col(S.SHIPMENT_ID)).alias(S.SHIPMENT_ID)
    )
    layout, want, got = _built_both_ways(tmp_path, raw, 2, None)
    for kind in [k for k in want if k != "rows"]:
        assert got[kind].read_bytes() == want[kind].read_bytes(), kind
    a, b = (ipc.open_file(pa.memory_map(str(p["rows"]))) for p in (want, got))
    assert a.num_record_batches == b.num_record_batches > 1
    assert all(a.get_batch(i).equals(b.get_batch(i)) for i in range(a.num_record_batches))
    assert np.load(got["ids"])[:2].tolist() == [b"", b""]


@pytest.mark.parametrize("split_from", [1, 10**6], ids=["split in one pass", "filtered per range"])
@pytest.mark.parametrize("case", list(CASES))
def test_both_ways_of_reading_a_range_give_the_files_of_the_day_sorted_at_once(
    tmp_path, small_ranges, monkeypatch, case, split_from
) -> None:
    """Ranges split from the day in one pass (many ranges) or filtered from it per range (up to
    SPLIT_MIN_RANGES): the same files, whatever the number of ranges."""
    monkeypatch.setattr(lookup, "SPLIT_MIN_RANGES", split_from)
    n, files, keep = CASES[case]
    raw = _raw_day(n, seed=n + 2)
    scores = None if keep is None else _scores_of(raw, keep, seed=n + 3)
    layout, want, got = _built_both_ways(tmp_path, raw, files, scores)
    assert set(got) == set(want)
    for kind in [k for k in want if k != "rows"]:
        assert got[kind].read_bytes() == want[kind].read_bytes(), kind
    a, b = (ipc.open_file(pa.memory_map(str(p["rows"]))) for p in (want, got))
    assert a.schema.equals(b.schema, check_metadata=True) and a.num_record_batches == b.num_record_batches
    assert all(a.get_batch(i).equals(b.get_batch(i)) for i in range(a.num_record_batches))
    assert sorted(p.name for p in got["ids"].parent.iterdir()) == sorted(p.name for p in got.values())


def test_a_killed_build_s_temporary_files_are_removed_by_the_next_build(tmp_path, small_ranges):
    """A build killed outright (no ``finally``) leaves its spill of the day's rows and its link
    part files; builds run one at a time under the lock, so the next one removes them."""
    raw = _raw_day(120, seed=5)
    layout = _home(tmp_path / "home", raw, 2, _scores_of(raw, 0.5, seed=6))
    folder = lookup.lookup_root(layout) / f"day={DAY.isoformat()}"
    folder.mkdir(parents=True)
    left = [folder / ".rows-abc.ranges.tmp-0badc0de", folder / ".links-abc.part3.tmp-12345678"]
    for f in left:
        f.write_bytes(b"spilled rows")
    assert lookup.build_lookup(layout, DAY) is not None
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]
