"""The shipment page's per-day look-up files (issue 16 point 5): one shipment's row read from the
one row group holding its id, its network from the day's link entries, its parties' history from
the link entries of past days, each equal to the full scan it replaces; the files are private."""

from __future__ import annotations

import stat
from datetime import timedelta

import polars as pl
import pytest

from riskpipe import lookup
from riskpipe import schema as S
from riskpipe.labels import LabelStore
from riskpipe.store import Layout, scan_raw_shipments, write_parquet_atomic
from riskpipe.web import shipment as shipment_mod
from riskpipe.web.data import WorkbenchData

from .conftest import DAY, build_home, raw_rows

PHONES = ["555-0101", "555-0202", "555-0303", ""]
SELLERS = ["sel-1", "sel-2", "sel-3"]


def _home(tmp_path, monkeypatch):
    """The conftest home, its day and four earlier days widened to many rows sharing identifiers
    (row groups of 4 rows in the look-up files, so a day has several)."""
    monkeypatch.setattr(lookup, "LOOKUP_ROWS", 4)
    settings = build_home(tmp_path / "home")
    layout = Layout(settings.home)
    for k in range(0, 5):
        d = DAY - timedelta(days=k)
        extra = [
            {
                S.SHIPMENT_ID: f"X{k}{i:02d}",
                S.CONSIGNEE_PHONE: PHONES[i % 4] or None,
                S.SELLER_ID: SELLERS[i % 3],
                S.CONSIGNEE_ADDRESS_KEY: "k1" if i % 5 == 0 else f"a{i}",
                S.SHIPPER_NAME: "A Co" if i % 7 == 0 else "B Co",
            }
            for i in range(30)
        ]
        path = layout.raw_shipments_day(d) / "part-0.parquet"
        old = pl.read_parquet(path) if path.exists() else None
        new = raw_rows(d, extra)
        write_parquet_atomic(pl.concat([old, new], how="diagonal_relaxed") if old is not None else new, path)
    LabelStore(settings.db_url).record_one("X200", DAY - timedelta(days=1), "fentanyl", "targeted", "ana", None, None)
    return settings, layout


def _no_background(data: WorkbenchData) -> WorkbenchData:
    data._index_later = lambda days: None  # type: ignore[method-assign]
    return data


def test_a_shipment_is_read_from_the_one_row_group_holding_its_id(tmp_path, monkeypatch) -> None:
    settings, layout = _home(tmp_path, monkeypatch)
    scan = _no_background(WorkbenchData(settings, reason_texts={}))
    expected = {sid: scan.manifest(DAY, sid) for sid in ("S1", "S3", "X017", "X029", "nope")}
    assert expected["X017"] is not None and expected["nope"] is None
    paths = lookup.build_lookup(layout, DAY)
    assert paths is not None and S.SHIPMENT_ID in lookup.columns_of(paths)  # written
    read: list[list[int]] = []
    real = lookup.read_groups

    def spy(rows_path, groups, columns, *rest):
        read.append(list(groups))
        return real(rows_path, groups, columns, *rest)

    monkeypatch.setattr(lookup, "read_groups", spy)
    data = _no_background(WorkbenchData(settings, reason_texts={}))
    n_groups = -(-scan_raw_shipments(layout, [DAY]).select(pl.len()).collect().item() // 4)
    assert n_groups >= 8
    for sid, want in expected.items():
        read.clear()
        assert data.manifest(DAY, sid) == want
        assert len(read) == 1 and len(read[0]) <= 1  # one row group of the day's sorted copy, not the day


def test_network_from_the_link_entries_equals_the_scan(tmp_path, monkeypatch) -> None:
    settings, layout = _home(tmp_path, monkeypatch)
    scan = _no_background(WorkbenchData(settings, reason_texts={}))
    manifests = [scan.manifest(DAY, sid) for sid in ("S1", "S3", "X000", "X005", "X013")]
    cases = [(m, n, lim) for m in manifests for n in (None, "N1") for lim in (40, 3)]
    expected = [scan.network(DAY, m, n, limit=lim) for m, n, lim in cases]
    assert sum(len(e["shipments"]) for e in expected) > 20 and any(e["truncated"] for e in expected)
    lookup.build_lookup(layout, DAY)
    data = _no_background(WorkbenchData(settings, reason_texts={}))
    monkeypatch.setattr(shipment_mod, "scan_raw_shipments", None)  # the day is not scanned any more
    assert [data.network(DAY, m, n, limit=lim) for m, n, lim in cases] == expected


@pytest.mark.parametrize("rows_shown", [200, 3])
def test_history_from_the_link_entries_equals_the_scan(tmp_path, monkeypatch, rows_shown: int) -> None:
    settings, layout = _home(tmp_path, monkeypatch)
    monkeypatch.setattr(shipment_mod, "HISTORY_ROWS", rows_shown)
    store = LabelStore(settings.db_url)
    scan = _no_background(WorkbenchData(settings, reason_texts={}))
    manifests = [scan.manifest(DAY, sid) for sid in ("S1", "X000", "X007", "X014")]
    expected = [scan.party_history(DAY, m, store.current()) for m in manifests]
    assert sum(len(e) for e in expected) >= 10
    assert rows_shown < 200 or any(r[S.OUTCOME] == "fentanyl" for e in expected for r in e)
    for k in (1, 3):  # some past days with look-up files, the others scanned
        lookup.build_lookup(layout, DAY - timedelta(days=k))
    data = _no_background(WorkbenchData(settings, reason_texts={}))
    assert [data.party_history(DAY, m, store.current()) for m in manifests] == expected
    for d in layout.raw_days():
        lookup.build_lookup(layout, d)
    assert [data.party_history(DAY, m, store.current()) for m in manifests] == expected


def test_lookup_files_are_private_and_follow_the_raw_partition(tmp_path, monkeypatch) -> None:
    settings, layout = _home(tmp_path, monkeypatch)
    paths = lookup.build_lookup(layout, DAY)
    assert paths is not None and lookup.ready_lookup(layout, DAY) == paths
    for p in paths.values():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert stat.S_IMODE(paths["rows"].parent.stat().st_mode) == 0o700
    extra = raw_rows(DAY, [{S.SHIPMENT_ID: "Z1"}])
    write_parquet_atomic(extra, layout.raw_shipments_day(DAY) / "part-9.parquet")  # a re-ingest
    assert lookup.ready_lookup(layout, DAY) is None  # stale: the page scans until rebuilt
    data = _no_background(WorkbenchData(settings, reason_texts={}))
    assert data.manifest(DAY, "Z1") is not None
    assert lookup.build_lookup(layout, DAY) != paths and not paths["rows"].exists()  # old files removed


def test_a_score_is_read_from_the_scores_sorted_copy_and_follows_a_rescore(tmp_path, monkeypatch) -> None:
    settings, layout = _home(tmp_path, monkeypatch)
    scan = _no_background(WorkbenchData(settings, reason_texts={}))
    expected = {sid: scan.score(DAY, sid) for sid in ("S1", "S3", "S4", "X017")}
    assert expected["S1"] is not None and expected["S1"][S.RISK_SCORE] is not None
    paths = lookup.build_lookup(layout, DAY)
    assert paths is not None and "scores" in paths
    kinds: list[str] = []
    real = lookup.read_rows

    def spy(paths_, ids, columns=None, kind="rows"):
        kinds.append(kind)
        return real(paths_, ids, columns, kind)

    monkeypatch.setattr(shipment_mod, "read_rows", spy)
    data = _no_background(WorkbenchData(settings, reason_texts={}))
    assert {sid: data.score(DAY, sid) for sid in expected} == expected
    assert kinds == ["scores"] * len(expected)  # not a scan of the day's scores
    spath = layout.day_dir(layout.scores, DAY) / "scores.parquet"
    write_parquet_atomic(pl.read_parquet(spath).with_columns(pl.lit(0.5).alias(S.RISK_SCORE)), spath)  # a rerun
    assert lookup.ready_lookup(layout, DAY) is None
    assert data.score(DAY, "S1")[S.RISK_SCORE] == 0.5


def test_days_without_lookup_files_read_only_the_row_groups_their_statistics_allow(tmp_path, monkeypatch) -> None:
    settings, layout = _home(tmp_path, monkeypatch)
    d = DAY - timedelta(days=2)
    path = layout.raw_shipments_day(d) / "part-0.parquet"
    pl.read_parquet(path).sort(S.CONSIGNEE_PHONE).write_parquet(path, row_group_size=4, statistics=True)
    cols = [S.SHIPMENT_ID, S.ARRIVAL_DATE, S.CONSIGNEE_PHONE, S.SHIPPER_NAME]
    values = {S.CONSIGNEE_PHONE: "555-0202", S.SHIPPER_NAME: "nobody"}
    asked: list[list[bool]] = []
    real = lookup._may_hold

    def spy(ranges, value):
        asked.append(real(ranges, value))
        return asked[-1]

    monkeypatch.setattr(lookup, "_may_hold", spy)
    got = lookup.scan_matching(layout, [d], values, cols)
    exact = pl.any_horizontal([pl.col(c) == v for c, v in values.items()])
    want = scan_raw_shipments(layout, [d]).select(cols).filter(exact).collect()
    assert got.sort(S.SHIPMENT_ID).to_dicts() == want.sort(S.SHIPMENT_ID).to_dicts() and want.height >= 7
    kept = [any(g) for g in zip(*asked, strict=True)]  # per row group: can one of the values be there
    assert len(kept) >= 8 and sum(kept) <= 4  # the phone's groups (and an edge one), not the day


def test_a_settled_day_is_not_listed_again_for_each_page(tmp_path, monkeypatch) -> None:
    _settings, layout = _home(tmp_path, monkeypatch)
    monkeypatch.setattr(lookup, "SETTLE_NS", 0)
    paths = lookup.build_lookup(layout, DAY)
    listings = [0]
    real = type(layout.home).glob

    def counting(self, pattern):
        listings[0] += 1
        return real(self, pattern)

    monkeypatch.setattr(type(layout.home), "glob", counting)
    assert lookup.ready_lookup(layout, DAY) == paths
    before = listings[0]
    for _ in range(5):
        assert lookup.ready_lookup(layout, DAY) == paths
    assert listings[0] == before  # one stat of the folder and of the scores file, no listing
    write_parquet_atomic(raw_rows(DAY, [{S.SHIPMENT_ID: "Z1"}]), layout.raw_shipments_day(DAY) / "part-9.parquet")
    assert lookup.ready_lookup(layout, DAY) is None  # a new file in the partition is seen at once


def test_a_days_files_are_built_under_a_lock_other_processes_see(tmp_path, monkeypatch) -> None:
    """Several workbench worker processes (and the nightly) may want the same day's files at once:
    the build holds a file lock of the home (flock: other processes wait, then find them built)."""
    import fcntl
    import os

    settings, layout = _home(tmp_path, monkeypatch)
    lock_path = lookup.lookup_root(layout) / lookup.BUILD_LOCK_FILE
    held: list[bool] = []
    real = lookup._write_sorted_copy

    def spy(scan, bounds, path, *rest):
        fd = os.open(lock_path, os.O_RDWR) if lock_path.exists() else None
        if fd is None:
            held.append(False)
        else:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another open file: as another process
                fcntl.flock(fd, fcntl.LOCK_UN)
                held.append(False)
            except BlockingIOError:
                held.append(True)
            finally:
                os.close(fd)
        return real(scan, bounds, path, *rest)

    monkeypatch.setattr(lookup, "_write_sorted_copy", spy)
    assert lookup.build_lookup(layout, DAY) is not None
    assert held and all(held)
    held.clear()
    assert lookup.build_lookup(layout, DAY) is not None and held == []  # built: nothing written again


def test_lookups_read_memory_mapped_files_not_parquet(tmp_path, monkeypatch) -> None:
    """A shipment's row, score and network come from memory-mapped sorted ids and link hashes and
    one Arrow batch (a Parquet row group cost the page 10 ms of CPU a look-up, its link entries'
    footer and row groups as much): no Parquet read once the day's files are built."""
    import pyarrow.parquet as pq

    settings, layout = _home(tmp_path, monkeypatch)
    scan = _no_background(WorkbenchData(settings, reason_texts={}))
    sids = ("S1", "S3", "X000", "X013", "X029")
    want = {
        sid: (scan.manifest(DAY, sid), scan.score(DAY, sid), scan.network(DAY, scan.manifest(DAY, sid), None))
        for sid in sids
    }
    lookup.build_lookup(layout, DAY)

    def refuse(*_a, **_k):
        raise AssertionError("a Parquet file was read")

    for name in ("scan_parquet", "read_parquet"):
        monkeypatch.setattr(pl, name, refuse)
    monkeypatch.setattr(pq, "ParquetFile", refuse)
    monkeypatch.setattr(pq, "read_metadata", refuse)
    monkeypatch.setattr(shipment_mod, "scan_raw_shipments", refuse)
    data = _no_background(WorkbenchData(settings, reason_texts={}))
    data.targets_frame = lambda day: None  # type: ignore[method-assign]  # the published list: read apart
    for sid, (manifest, score, network) in want.items():
        assert data.manifest(DAY, sid) == manifest
        got = data.score(DAY, sid)
        assert (got is None) == (score is None)
        if got is not None and score is not None:
            assert got[S.RISK_SCORE] == score[S.RISK_SCORE]
        assert data.network(DAY, manifest, None) == network
    assert data.manifest(DAY, "nope") is None and data.manifest(DAY, "X0") is None


def test_history_of_days_with_search_indexes_reads_row_groups_not_the_days_ids(tmp_path, monkeypatch) -> None:
    """Past days without look-up files but with search indexes (the search page builds them for
    90 days): the history reads the raw row groups whose statistics can hold the party's values,
    not the index's candidate ids followed by a scan of each day's shipment ids (on the 4 M-row
    home that quadrupled the history's cost once 4 of 30 days had indexes)."""
    from riskpipe import search

    settings, layout = _home(tmp_path, monkeypatch)
    store = LabelStore(settings.db_url)
    scan = _no_background(WorkbenchData(settings, reason_texts={}))
    manifests = [scan.manifest(DAY, sid) for sid in ("S1", "X000", "X007", "X014")]
    expected = [scan.party_history(DAY, m, store.current()) for m in manifests]
    assert sum(len(e) for e in expected) >= 10
    for d in layout.raw_days():
        search.index_path(layout, d)
    monkeypatch.setattr(shipment_mod, "scan_raw_shipments", None)  # no day is scanned whole
    data = _no_background(WorkbenchData(settings, reason_texts={}))
    assert [data.party_history(DAY, m, store.current()) for m in manifests] == expected


@pytest.mark.parametrize("split_from", [1, 10**6], ids=["split in one pass", "filtered per range"])
def test_the_rows_file_is_built_one_id_range_at_a_time_and_equals_the_day_sorted(
    tmp_path, monkeypatch, split_from
) -> None:
    """The night builds the look-up files after publishing: sorting the whole raw day at once held
    7.2 GB at 4 M rows (the night's largest process). The rows are now read and sorted one id range
    at a time: no frame of the day's raw columns is ever larger than a range, and the file holds
    the day sorted by id in batches of LOOKUP_ROWS rows (all but the last full)."""
    import pyarrow as pa
    import pyarrow.ipc as ipc
    import pyarrow.parquet as pq

    settings, layout = _home(tmp_path, monkeypatch)  # batches of 4 rows
    monkeypatch.setattr(lookup, "BUILD_CHUNK_ROWS", 10, raising=False)  # ranges of 8 rows
    monkeypatch.setattr(lookup, "SPLIT_MIN_RANGES", split_from)
    expected = scan_raw_shipments(layout, [DAY]).sort(S.SHIPMENT_ID).collect()
    assert expected.height > 20
    wide: list[int] = []
    real_collect, real_read = pl.LazyFrame.collect, lookup._RangeSpill.read
    real_batches = pq.ParquetFile.iter_batches

    def watched(self, *args, **kwargs):
        out = real_collect(self, *args, **kwargs)
        if out.width > 10:  # a frame of the raw day's columns
            wide.append(out.height)
        return out

    def batches(self, *args, **kwargs):
        for b in real_batches(self, *args, **kwargs):
            if b.num_columns > 10:  # a record batch of the raw day's columns
                wide.append(b.num_rows)
            yield b

    def read(self, k):  # a range's rows read back from the spill
        out = real_read(self, k)
        if out.width > 10:
            wide.append(out.height)
        return out

    monkeypatch.setattr(pl.LazyFrame, "collect", watched)
    monkeypatch.setattr(pq.ParquetFile, "iter_batches", batches)
    monkeypatch.setattr(lookup._RangeSpill, "read", read)
    paths = lookup.build_lookup(layout, DAY)
    monkeypatch.setattr(pl.LazyFrame, "collect", real_collect)
    monkeypatch.setattr(pq.ParquetFile, "iter_batches", real_batches)
    assert paths is not None and wide and max(wide) <= 8
    reader = ipc.open_file(pa.memory_map(str(paths["rows"])))
    sizes = [reader.get_batch(i).num_rows for i in range(reader.num_record_batches)]
    assert all(n == 4 for n in sizes[:-1]) and 0 < sizes[-1] <= 4
    got = pl.from_arrow(reader.read_all())
    assert isinstance(got, pl.DataFrame)
    assert got.equals(expected)


@pytest.mark.parametrize("split_from", [1, 10**6], ids=["split in one pass", "filtered per range"])
def test_a_rows_build_that_fails_midway_leaves_no_file_and_no_open_handle(tmp_path, monkeypatch, split_from) -> None:
    """A range that fails after the first was written (disk full, a raw file gone): the error
    reaches the caller, the half-written temporary file is closed and removed, no look-up file."""
    import os

    settings, layout = _home(tmp_path, monkeypatch)
    monkeypatch.setattr(lookup, "BUILD_CHUNK_ROWS", 10)  # ranges of 8 rows: several writes
    monkeypatch.setattr(lookup, "SPLIT_MIN_RANGES", split_from)
    real_read, real_collect = lookup._RangeSpill.read, pl.LazyFrame.collect
    calls = {"wide": 0}

    def fail_second(out):
        if out.width > 10:  # the second range's rows (read back from the spill, or filtered)
            calls["wide"] += 1
            if calls["wide"] == 2:
                raise OSError("No space left on device")
        return out

    folder = lookup.lookup_root(layout)
    before = set(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(lookup._RangeSpill, "read", lambda self, k: fail_second(real_read(self, k)))
    monkeypatch.setattr(pl.LazyFrame, "collect", lambda self, *a, **k: fail_second(real_collect(self, *a, **k)))
    with pytest.raises(OSError, match="No space left"):
        lookup.build_lookup(layout, DAY)
    monkeypatch.setattr(lookup._RangeSpill, "read", real_read)
    monkeypatch.setattr(pl.LazyFrame, "collect", real_collect)
    opened = [os.readlink(f"/proc/self/fd/{fd}") for fd in set(os.listdir("/proc/self/fd")) - before]
    assert not [p for p in opened if str(folder) in p]
    assert not [p for p in folder.rglob("*") if p.is_file() and p.suffix in (".arrow", ".npy")]
    assert not [p for p in folder.rglob(".*") if p.is_file() and p.name != lookup.BUILD_LOCK_FILE]  # no spill
