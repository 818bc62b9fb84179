"""The whole-day columns as a key-partitioned map-reduce (``riskpipe.distnight``'s ``keys_*``
steps, ``riskpipe.features.partials``): every shard's columns equal the single-process whole-day
frame's (``features.build._day_frame``), whatever the number of shards and key partitions, with
the history window table current or not; no step reads the day's thin frame whole."""

from __future__ import annotations

import os
import stat
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from riskpipe import schema as S
from riskpipe.features import history as H
from riskpipe.store import PRIVATE_FILE, scan_raw_shipments, write_parquet_atomic

START = date(2026, 3, 2)
DAYS = 8


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A generated, ingested world with outcomes (the graph family's links need positives)."""
    from riskpipe.config import load_settings
    from riskpipe.ingest import import_labels, ingest_paths
    from riskpipe.labels import LabelStore
    from riskpipe.store import Layout
    from riskpipe.synth import generate

    home = tmp_path_factory.mktemp("keys") / "home"
    home.mkdir()
    layout = Layout(home)
    generate(layout, START, DAYS, 900, 11)
    ingest_paths(layout)
    settings = load_settings(home)
    import_labels(layout, layout.landing / "outcomes", LabelStore(settings.db_url))
    # tonight, a second parcel to each party linked to a seizure (so that hop 2 carries something)
    day = START + timedelta(days=DAYS - 1)
    linked = _single(layout, settings, day).filter(pl.col("graph_link_score") > 0).get_column(S.SHIPMENT_ID)
    raw = scan_raw_shipments(layout, [day]).filter(pl.col(S.SHIPMENT_ID).is_in(linked.implode())).collect()
    again = raw.with_columns(pl.col(S.SHIPMENT_ID) + "-again")
    write_parquet_atomic(again, layout.raw_shipments_day(day) / "part-again.parquet", PRIVATE_FILE)
    return home


def _single(layout, settings, day) -> pl.DataFrame:
    from riskpipe import distnight
    from riskpipe.features.build import _day_frame

    return _day_frame(distnight._open_day(layout, settings, day))


def _partitioned(layout, settings, day, shards: int, parts: int) -> pl.DataFrame:
    from riskpipe import distnight

    split = distnight.split_raw(layout, day, shards)
    old = os.umask(0o022)
    try:
        files, plan = distnight.partitioned_day_columns(layout, settings, day, split, parts, shards)
    finally:
        os.umask(old)
    # the work files hold hashed party keys: owner only
    work = distnight._keys_dir(layout, day)
    for p in [work, *work.rglob("*")]:
        assert stat.S_IMODE(p.stat().st_mode) == (0o700 if p.is_dir() else 0o600), p
    got = pl.concat([pl.read_parquet(f) for f in files]).sort(S.SHIPMENT_ID)
    assert plan["rows"] == got.height
    return got


@pytest.mark.parametrize(("shards", "parts", "window"), [(3, 4, False), (2, 1, False), (3, 5, True)])
def test_the_key_partitions_give_the_single_process_whole_day_columns(home, shards, parts, window):
    from riskpipe.config import load_settings
    from riskpipe.store import Layout

    layout, settings = Layout(home), load_settings(home)
    day = START + timedelta(days=DAYS - 1)
    if window:
        H.update_window(layout, day)
    assert H.window_current(layout, day) is window
    want = _single(layout, settings, day)
    got = _partitioned(layout, settings, day, shards, parts)
    assert_frame_equal(got, want)
    # the comparison has teeth: networks, history, hop 1 and hop 2 of the graph are not empty
    assert want.get_column(S.NETWORK_ID).drop_nulls().n_unique() > 5
    assert want.select(pl.col(H.parcels_col("cons_addr", 7)).max()).item() > 0
    assert want.select(pl.col("graph_hop2_score").max()).item() > 0
    assert want.select(pl.col("graph_link_score").max()).item() > 0


@pytest.mark.parametrize("shape", ["random", "chains", "star", "none"])
def test_components_from_edge_files_equal_the_in_memory_labels(tmp_path, shape):
    """The networks step reads the edge files one at a time and keeps a label per row of the day
    (the edge list's sparse graph took ~270 bytes a linked row): same components, each labelled
    by its smallest node, as the in-memory labelling (scipy)."""
    import numpy as np

    from riskpipe.features import partials

    rng = np.random.default_rng(5)
    shard_rows = [700, 0, 1300, 500]
    nodes = np.concatenate([(s << 32) + np.arange(n, dtype=np.int64) for s, n in enumerate(shard_rows)])
    if shape == "random":
        a, b = rng.choice(nodes, 1500), rng.choice(nodes, 1500)
    elif shape == "chains":  # long paths in shuffled order: many hooking passes
        perm = rng.permutation(nodes)[:2400]
        a, b = perm[:-1], perm[1:]
        keep = np.arange(a.size) % 800 != 799  # three chains of 800
        a, b = a[keep], b[keep]
    elif shape == "star":
        a, b = np.full(900, nodes[-1]), rng.choice(nodes[:-1], 900, replace=False)
    else:
        a, b = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    edges = pl.DataFrame(
        {partials.NODE: a, partials.ROOT: b}, schema={partials.NODE: pl.Int64, partials.ROOT: pl.Int64}
    )
    files = []
    for i, part in enumerate(edges.sample(fraction=1.0, shuffle=True, seed=1).iter_slices(400) if edges.height else []):
        files.append(str(tmp_path / f"{i}.parquet"))
        part.write_parquet(files[-1])
    got = partials.component_labels_in_files(files, shard_rows)
    expected = partials.component_labels(edges).sort(partials.NODE)
    assert_frame_equal(got, expected)
    # the components step writes them a shard at a time, never gathered
    written = tmp_path / "labels.parquet"
    assert partials.write_component_labels(files, shard_rows, written) == expected.height
    assert_frame_equal(pl.read_parquet(written), expected)
    if shape == "chains":
        assert expected[partials.LABEL].n_unique() == 3


def test_round3_spreads_a_giant_network_over_the_partitions(tmp_path):
    """One component holding most of the day is aggregated without any step gathering its rows:
    its (component, party) pairs spread over the pair partitions, each shard sends one row per
    component; the columns equal the family's aggregation over the whole component."""
    import numpy as np

    from riskpipe.features import network as N
    from riskpipe.features import partials
    from riskpipe.features.keys import key_col

    rng = np.random.default_rng(2)
    n, parts = 4000, 4
    p7 = H.parcels_col("cons_addr", 7)
    addr = rng.integers(0, 900, n).astype(np.uint64)
    label = np.where(np.arange(n) < 3400, 7, np.arange(n) + 100)  # a giant network and singletons
    long = pl.DataFrame(
        {
            partials.LABEL: label.astype(np.int64),
            partials.NODE: np.arange(n, dtype=np.int64),
            S.SHIPMENT_ID: [f"S{i:05d}" for i in rng.permutation(n)],
            key_col("cons_addr"): pl.Series(addr).scatter(np.arange(0, n, 97), None),
            key_col("shipper"): pl.Series(rng.integers(0, 500, n).astype(np.uint64)).scatter(np.arange(5, n, 89), None),
            p7: pl.Series((addr % 5).astype(np.int64)),
            "_pos": rng.random(n) < 0.001,
        }
    )
    shards = [long.slice(i * 1000, 1000) for i in range(4)]
    mapped = [partials.round3_map(s) for s in shards]
    pair_rows = []
    for i in range(parts):
        pairs = {
            k: pl.concat([m[1][k].filter(partials.pair_part(k, parts) == i) for m in mapped])
            for k in ("shipper", "cons_addr")
        }
        pair_rows.append(sum(p.height for p in pairs.values()))
        pair_rows_counts = partials.round3_pairs(pairs)
        pair_rows_counts.write_parquet(tmp_path / f"c{i}.parquet")
    counts = pl.read_parquet(str(tmp_path / "c*.parquet"))
    got = partials.round3_labels(pl.concat([m[0] for m in mapped]), counts)
    giant_pairs = sum(
        m[1][k].filter(pl.col(partials.LABEL) == 7).height for m in mapped for k in ("shipper", "cons_addr")
    )
    assert max(pair_rows) < 0.45 * giant_pairs  # no partition holds the giant network's pairs
    assert max(m[0].height for m in mapped) <= 1000  # a shard sends a row per component
    addr_col = key_col("cons_addr")
    prior = (
        long.filter(pl.col(addr_col).is_not_null())
        .unique([partials.LABEL, addr_col])
        .group_by(partials.LABEL)
        .agg(pl.col(p7).sum().cast(pl.Int32).alias(N.NET_PRIOR_PARCELS_7D))
    )
    expected = (
        long.group_by(partials.LABEL)
        .agg(
            pl.len().cast(pl.Int32).alias(N.NET_SIZE),
            pl.col(key_col("shipper")).n_unique().cast(pl.Int32).alias(N.NET_SHIPPERS),
            pl.col(addr_col).n_unique().cast(pl.Int32).alias(N.NET_CONSIGNEES),
            pl.col("_pos").any().cast(pl.Int8).alias(N.NET_TOUCHES_POSITIVE),
            pl.col(S.SHIPMENT_ID).min().alias("_first"),
        )
        .join(prior, on=partials.LABEL, how="left")
        .with_columns(pl.col(N.NET_PRIOR_PARCELS_7D).fill_null(0))
        .with_columns(
            (pl.col(N.NET_SIZE) / (1.0 + pl.col(N.NET_PRIOR_PARCELS_7D) / 7.0)).alias(N.NET_GROWTH_RATIO),
            pl.when(pl.col(N.NET_SIZE) > 1).then(pl.lit("N-") + pl.col("_first")).alias(S.NETWORK_ID),
        )
        .select(partials.LABEL, S.NETWORK_ID, *N.COLUMNS)
        .sort(partials.LABEL)
    )
    assert_frame_equal(got, expected)
    assert got.filter(pl.col(partials.LABEL) == 7)[N.NET_SIZE].item() == 3400


@pytest.mark.parametrize("sizes", [[500, 0, 1300, 700], [1, 1, 1], [3000]])
def test_ids_at_places_equal_the_sorted_day_without_holding_it(tmp_path, monkeypatch, sizes):
    """The pieces' boundary ids come from the shards' sorted ids one shard at a time (a sample,
    then the buckets holding the places): the same ids as sorting the day's ids."""
    import numpy as np

    from riskpipe import distnight

    monkeypatch.setattr(distnight, "IDS_SAMPLE", 40)  # buckets of many ids
    rng = np.random.default_rng(sum(sizes))
    ids = [
        f"{c}{n:07d}"
        for c, n in zip(rng.choice(list("ABCDXYZ"), sum(sizes)), rng.permutation(10**6)[: sum(sizes)], strict=True)
    ]
    files, first = [], 0
    for i, n in enumerate(sizes):
        f = tmp_path / f"thin-{i}.parquet"
        pl.DataFrame({S.SHIPMENT_ID: sorted(ids[first : first + n])}, schema={S.SHIPMENT_ID: pl.String}).write_parquet(
            f
        )
        files.append(str(f))
        first += n
    day = sorted(ids)
    places = sorted({0, len(day) - 1, len(day) // 2, *rng.integers(0, len(day), 25).tolist()})
    assert distnight.ids_at(files, places) == {p: day[p] for p in places}
    unsorted = tmp_path / "bad.parquet"
    pl.DataFrame({S.SHIPMENT_ID: ["b", "a"]}).write_parquet(unsorted)
    if len(day) > 2:
        with pytest.raises(ValueError, match="not sorted"):
            distnight.ids_at([*files, str(unsorted)], [1])


def test_split_raw_in_chunks_puts_every_row_in_its_shard_once(home, monkeypatch):
    """The day is split a chunk of rows at a time (Polars' partitioned sink held ~0.3 KB per row of
    the day): every row lands once, in the shard of its address, in 0600 files; an empty shard
    still has the day's columns."""
    from riskpipe import distnight
    from riskpipe.shard import shard_of
    from riskpipe.store import Layout

    layout = Layout(home)
    day = START + timedelta(days=DAYS - 1)
    raw = scan_raw_shipments(layout, [day]).collect()
    want = raw.with_columns(shard_of(7).alias("_s")).select(S.SHIPMENT_ID, "_s")
    parts = distnight.split_raw(layout, day, 7, chunk_rows=53)
    got = pl.concat(
        [
            pl.read_parquet(p["raw"]).select(S.SHIPMENT_ID).with_columns(pl.lit(i, pl.Int64).alias("_g"))
            for i, p in enumerate(parts)
        ]
    )
    assert got.height == raw.height and got[S.SHIPMENT_ID].n_unique() == raw.height
    joined = got.join(want, on=S.SHIPMENT_ID)
    assert (joined["_g"] == joined["_s"].cast(pl.Int64)).all()
    assert len(list(Path(parts[0]["raw"]).parent.glob("*.parquet"))) > 1  # several chunks
    for p in parts:
        for f in Path(p["raw"]).parent.glob("*.parquet"):
            assert stat.S_IMODE(f.stat().st_mode) == 0o600
        assert pl.read_parquet_schema(next(Path(p["raw"]).parent.glob("*.parquet"))) == raw.schema
    lonely = distnight.split_raw(layout, day, 400, chunk_rows=10**6)  # more shards than addresses
    assert any(pl.read_parquet(p["raw"]).height == 0 for p in lonely)
    assert all(pl.read_parquet_schema(next(Path(p["raw"]).parent.glob("*.parquet"))) == raw.schema for p in lonely)
