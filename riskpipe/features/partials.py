"""The whole-day feature columns of one key partition (the night on a cluster, issue 16 point 4).

The whole-day columns (windows over party keys, history look-ups, the party graph, the day's
networks) need the rows of one key value to meet. :mod:`riskpipe.distnight` brings them together
per *key kind*: every shard emits, for each kind, its rows' (node, key hash, few side values),
partitioned by the key's range of the 64-bit hash space (:func:`part_of`); one task per partition
computes here what the families compute over the whole day, restricted to its keys, and its
results go back to the shards by node. A key's rows are all in one partition, so each per-key
aggregate equals the whole day's; a row whose key is null is alone (every family gives it its own
default), so it never leaves its shard (:func:`kind_columns` on the shard's null rows).

Ranges, not modulo: the history window table (``history/window/day=D.parquet``) is written
sorted by (entity, key) with row-group statistics, so a partition reads only the row groups of
its key range (:func:`window_lookup`); the single-process layout stays as it is.

A *node* is a row's place: ``shard << 32 | position in the shard's id-sorted rows`` (Int64).
The formulas are the families' (tested equal to :func:`riskpipe.features.build._day_frame`);
where a family exposes an expression it is reused, otherwise the lines below mirror it and say so.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from riskpipe import schema as S
from riskpipe.features import graph as G
from riskpipe.features import history as H
from riskpipe.features import network as N
from riskpipe.features import parties as P
from riskpipe.features import value as V
from riskpipe.features.keys import ENTITY_KEYS, LINK_KEYS, key_col
from riskpipe.store import Layout

#: every key kind the whole-day columns group by (entity keys, then the other link keys)
KINDS: list[str] = list({**ENTITY_KEYS, **LINK_KEYS})
KIND_CODE: dict[str, int] = {k: i for i, k in enumerate(KINDS)}
NODE = "_node"
KIND = "_kind"
KEY = "_k"
NAME = "_name"
SHIPPER = "_shipper"
USD = "_usd"
SCORE = "_s"
LABEL = "_label"
ROOT = "_root"
#: contacts whose distinct shippers the parties family counts
CONTACTS = ["shipper_phone", "shipper_email", "account_ip"]
#: the history family's entities (looked up in the window table and the prior exams)
HISTORY_ENTITIES = sorted(
    set(H.COUNT_ENTITIES) | set(H.FIRST_SEEN_ENTITIES) | set(H.EXAM_ENTITIES), key=H.ENTITY_CODES.__getitem__
)
#: the kinds of the second round: network links (gated) and hop 2 of the graph
ROUND2_KINDS: list[str] = [k for k in KINDS if k in LINK_KEYS or k in G.HOP2_KINDS]


def names_sharing_col(contact: str) -> str:
    return f"_ns_{contact}"


def hop2_col(kind: str) -> str:
    return f"_h2_{kind}"


def node_expr(shard: int) -> pl.Expr:
    """The node of each row of shard ``shard`` (rows in shipment-id order)."""
    return (pl.lit(shard << 32, pl.Int64) + pl.int_range(0, pl.len(), dtype=pl.Int64)).alias(NODE)


def shard_of_node(node: pl.Expr) -> pl.Expr:
    return (node // (1 << 32)).cast(pl.Int64)


def _step(parts: int) -> int:
    return ((1 << 64) - 1) // parts + 1


def part_of(key: pl.Expr, parts: int) -> pl.Expr:
    """Partition ``0..parts-1`` of a 64-bit key hash: its range of the key space (null: 0)."""
    if parts < 1:
        raise ValueError(f"partitions: need at least 1, got {parts}")
    if parts == 1:
        return pl.lit(0, pl.Int64)
    return (key.fill_null(0) // pl.lit(_step(parts), pl.UInt64)).cast(pl.Int64)


def key_range(part: int, parts: int) -> tuple[int, int | None]:
    """The keys ``lo <= key < hi`` of partition ``part`` (hi None: to the end)."""
    if parts == 1:
        return 0, None
    step = _step(parts)
    return part * step, (None if part == parts - 1 else (part + 1) * step)


# ---------------------------------------------------------------------------------------------
# round 1: per key kind, the windows, history look-ups and the graph's hop 1
# ---------------------------------------------------------------------------------------------
def emit_round1(thin: pl.DataFrame) -> pl.DataFrame:
    """Long rows (kind, node, key, side values) of a shard's thin frame (``NODE``, the
    ``_key_*`` columns and the value in USD). Rows with a null key are left out (they stay in
    their shard), except for the consignee address: the value family groups (name, address), so
    an address-less row travels by its name (``KEY`` stays the address; the route is ``_route``)."""
    out = []
    for kind in KINDS:
        k = pl.col(key_col(kind))
        cols = [pl.lit(KIND_CODE[kind], pl.UInt8).alias(KIND), pl.col(NODE), k.alias(KEY)]
        side = {
            NAME: pl.col(key_col("cons_name")) if kind == "cons_addr" else pl.lit(None, pl.UInt64),
            SHIPPER: pl.col(key_col("shipper")) if kind in CONTACTS else pl.lit(None, pl.UInt64),
            USD: pl.col(S.DECLARED_VALUE_USD) if kind == "cons_addr" else pl.lit(None, pl.Float64),
        }
        route = pl.coalesce(k, pl.col(key_col("cons_name"))) if kind == "cons_addr" else k
        frame = thin.select(*cols, *(e.alias(n) for n, e in side.items()), route.alias("_route"))
        out.append(frame if kind == "cons_addr" else frame.filter(pl.col(KEY).is_not_null()))
    return pl.concat(out)


def _keyed(rows: pl.DataFrame, kind: str) -> pl.DataFrame:
    """A kind's long rows with the families' column names (``_key_<kind>`` and side keys)."""
    side = {key_col("cons_name"): NAME, key_col("shipper"): SHIPPER, S.DECLARED_VALUE_USD: USD}
    k = key_col(kind)
    return rows.select(NODE, pl.col(KEY).alias(k), *(pl.col(c).alias(n) for n, c in side.items() if n != k))


def window_lookup(layout: Layout, day: date, entity: str, keys: pl.Series, lo: int, hi: int | None) -> pl.DataFrame:
    """``keys`` of ``entity`` (all in ``lo <= key < hi``) in the window table of ``day``: the
    sums and first-seen age, as :func:`riskpipe.features.history.window_features` reads them
    (its ``_from_window``, mirrored with a key-range filter that skips other row groups)."""
    scan = pl.scan_parquet(H.window_path(layout, day)).filter(pl.col(H.ENTITY) == H.ENTITY_CODES[entity])
    scan = scan.filter(pl.col(H.KEY) >= pl.lit(lo, pl.UInt64))
    if hi is not None:
        scan = scan.filter(pl.col(H.KEY) < pl.lit(hi, pl.UInt64))
    uniq = keys.unique()
    table = (
        scan.select(H.KEY, *H._SUMS, H.SEEN_LO, H.SEEN_HI)
        .join(pl.LazyFrame({H.KEY: uniq}), on=H.KEY, how="semi")
        .collect()
    )
    width = pl.lit(64, pl.Int32)
    age = (
        pl.when(pl.col(H.SEEN_HI) > 0)
        .then(width - pl.col(H.SEEN_HI).bitwise_leading_zeros().cast(pl.Int32) + H._HALF)
        .when(pl.col(H.SEEN_LO) > 0)
        .then(width - pl.col(H.SEEN_LO).bitwise_leading_zeros().cast(pl.Int32))
    )
    return (
        pl.DataFrame({H.KEY: uniq})
        .join(table, on=H.KEY, how="left", maintain_order="left")
        .with_columns(*(pl.col(c).fill_null(0) for c in H._SUMS), age.alias("age"))
        .drop(H.SEEN_LO, H.SEEN_HI)
    )


class Round1:
    """What every partition of round 1 shares: the day, its history days, whether the window
    table is current, the prior exams per party and the known outcomes with their link keys
    (both small: one row per labelled shipment), read once by :func:`prepare`."""

    def __init__(
        self,
        layout: Layout,
        day: date,
        days: list[date],
        use_window: bool,
        exams: pl.DataFrame,
        known: pl.DataFrame | None,
    ) -> None:
        self.layout, self.day, self.days, self.use_window = layout, day, days, use_window
        self.exams, self.known = exams, known


def prepare(layout: Layout, day: date, known_labels: pl.DataFrame | None) -> Round1:
    """The shared inputs of round 1 (warms the labelled-party caches: the partitions only read them)."""
    days = H.lookback_days(layout, day)
    exams = H.prior_exam_counts(layout, known_labels, day)
    known = G._known(layout, known_labels, day)
    return Round1(layout, day, days, H.window_current(layout, day, days), exams, known)


def _history(r: Round1, frame: pl.DataFrame, entity: str, lo: int, hi: int | None) -> dict[str, pl.Series]:
    """The history family's columns of ``entity`` (mirrors :func:`riskpipe.features.history.add_history`)."""
    k = key_col(entity)
    keys_today = frame.get_column(k).drop_nulls().unique()
    if r.use_window and r.days and keys_today.len():
        sub = window_lookup(r.layout, r.day, entity, keys_today, lo, hi)
        schema = H.window_features(r.layout, r.day, [], entity, keys_today.head(0)).schema
        sub = sub.select(list(schema)).cast(schema)
    else:
        sub = H.window_features(r.layout, r.day, r.days, entity, keys_today, False)
    sub = sub.rename({H.KEY: k})
    ex = r.exams.filter(pl.col(H.ENTITY) == H.ENTITY_CODES[entity]).drop(H.ENTITY).rename({H.KEY: k})
    looked = (
        frame.select(k)
        .join(sub, on=k, how="left", maintain_order="left")
        .join(ex, on=k, how="left", maintain_order="left")
    )
    e = entity
    cols = []
    if e in H.COUNT_ENTITIES:
        cols += [pl.col(f"p{w}").fill_null(0).cast(pl.Int32).alias(H.parcels_col(e, w)) for w in H.WINDOWS]
        cols += [pl.col(f"s{w}").fill_null(0).cast(pl.Int32).alias(H.shippers_col(e, w)) for w in H.WINDOWS]
    if e in H.FIRST_SEEN_ENTITIES:
        cols.append(pl.col("age").fill_null(0).cast(pl.Int16).alias(H.first_seen_col(e)))
    if e in H.EXAM_ENTITIES:
        cols += [
            pl.col("exams").fill_null(0).cast(pl.Int32).alias(H.exams_col(e)),
            pl.col("positives").fill_null(0).cast(pl.Int32).alias(H.positives_col(e)),
        ]
    return {c.name: c for c in looked.select(cols).get_columns()}


def _target_stat(r: Round1, frame: pl.DataFrame, entity: str) -> pl.Series:
    """``te_<entity>`` (mirrors :func:`riskpipe.features.graph._target_stats` for one entity)."""
    known, name = r.known, G.te_col(entity)
    if known is None:
        return pl.Series(name, [1.0] * frame.height, dtype=pl.Float32)
    n_all, k_all = known.height, int(known.get_column(S.IS_POSITIVE).sum())
    prior = (k_all + 1.0) / (n_all + 2.0)
    k = key_col(entity)
    stats = (
        known.filter(pl.col(k).is_not_null())
        .group_by(k)
        .agg(pl.len().alias("_n"), pl.col(S.IS_POSITIVE).sum().alias("_k"))
    )
    te = ((pl.col("_k").fill_null(0) + G.TE_STRENGTH * prior) / (pl.col("_n").fill_null(0) + G.TE_STRENGTH)) / prior
    looked = frame.select(k).join(stats, on=k, how="left", maintain_order="left")
    return looked.select(te.cast(pl.Float32).alias(name)).to_series()


def _seized_days(r: Round1, frame: pl.DataFrame, kind: str) -> pl.Series:
    """``graph_<kind>_seized_days`` (mirrors the hop-1 loop of :func:`riskpipe.features.graph._links`;
    the degree of a key is counted on the partition, which holds all of the day's rows of it)."""
    k, name = key_col(kind), G.seized_days_col(kind)
    pos = None if r.known is None else r.known.filter(pl.col(S.IS_POSITIVE) == 1)
    if pos is None or pos.height == 0:
        return pl.Series(name, [None] * frame.height, dtype=pl.Int32)
    latest = pos.filter(pl.col(k).is_not_null()).group_by(k).agg(pl.col(S.EXAM_DATE).max())
    latest = latest.join(G._degree_ok(frame, k, latest.get_column(k), G.LINK_CAPS[kind]), on=k, how="semi")
    looked = frame.select(k).join(latest, on=k, how="left", maintain_order="left")
    days = (pl.lit(r.day) - pl.col(S.EXAM_DATE)).dt.total_days().cast(pl.Int32)
    return looked.select(days.alias(name)).to_series()


def kind_columns(r: Round1, kind: str, rows: pl.DataFrame, lo: int = 0, hi: int | None = None) -> pl.DataFrame:
    """Round 1 of one key kind over ``rows`` (:func:`emit_round1`'s rows of that kind: every row
    of the day holding each of their keys; keys in ``lo <= key < hi``): ``NODE`` and the
    kind's whole-day columns."""
    frame = _keyed(rows, kind)
    cols: dict[str, pl.Series] = {}
    if kind == "cons_addr":
        # the value family's windows over (name, address) and the parties' names at an address
        cols.update({c.name: c for c in frame.select(*V.day_exprs(), P.day_exprs()[0]).get_columns()})
    if kind in CONTACTS:
        cols[names_sharing_col(kind)] = frame.select(P._names_sharing(kind).alias(names_sharing_col(kind))).to_series()
    if kind in HISTORY_ENTITIES:
        cols.update(_history(r, frame, kind, lo, hi))
    if kind in G.TE_ENTITIES:
        cols[G.te_col(kind)] = _target_stat(r, frame, kind)
    if kind in G.LINK_KINDS:
        cols[G.seized_days_col(kind)] = _seized_days(r, frame, kind)
    return frame.select(NODE).with_columns(cols.values())


def round1_partition(r: Round1, rows: pl.DataFrame, part: int, parts: int) -> dict[str, pl.DataFrame]:
    """Round 1 of every kind of one partition (``rows``: the shards' long rows routed to it)."""
    lo, hi = key_range(part, parts)
    return {kind: kind_columns(r, kind, rows.filter(pl.col(KIND) == KIND_CODE[kind]), lo, hi) for kind in KINDS}


def round1_local(r: Round1, kind: str, thin: pl.DataFrame) -> pl.DataFrame:
    """Round 1 of the shard's rows whose ``kind`` key is null (each on its own; see the module)."""
    if kind == "cons_addr":
        return kind_columns(r, kind, emit_round1(thin.head(0)).head(0))
    rows = thin.filter(pl.col(key_col(kind)).is_null())
    long = rows.select(
        pl.lit(KIND_CODE[kind], pl.UInt8).alias(KIND),
        NODE,
        pl.col(key_col(kind)).alias(KEY),
        pl.lit(None, pl.UInt64).alias(NAME),
        (pl.col(key_col("shipper")) if kind in CONTACTS else pl.lit(None, pl.UInt64)).alias(SHIPPER),
        pl.lit(None, pl.Float64).alias(USD),
    )
    return kind_columns(r, kind, long)


def row_columns_round1(frame: pl.DataFrame) -> pl.DataFrame:
    """The row-wise columns after round 1: the parties' shared contact (mirrors
    :func:`riskpipe.features.parties.day_exprs`) and the graph's link score (mirrors
    :func:`riskpipe.features.graph._links`)."""
    shared = pl.max_horizontal(*(pl.col(names_sharing_col(c)) for c in CONTACTS)).cast(pl.Int32)
    parts = [
        pl.lit(G.LINK_WEIGHT) * (-pl.col(G.seized_days_col(kind)).cast(pl.Float64) / G.DECAY_DAYS).exp()
        for kind in G.LINK_KINDS
    ]
    miss = pl.lit(1.0)
    for p in parts:
        miss = miss * (1.0 - p.fill_null(0.0))
    return frame.with_columns(
        shared.alias(P.SHARED_CONTACT_SHIPPER_NAMES),
        (shared > 1).cast(pl.Int8).alias(P.SHARED_CONTACT_MULTI_SHIPPER),
        (1.0 - miss).alias(SCORE),
    ).with_columns(pl.col(SCORE).cast(pl.Float32).alias(G.LINK_SCORE))


# ---------------------------------------------------------------------------------------------
# round 2: the networks' links and the graph's hop 2
# ---------------------------------------------------------------------------------------------
def emit_round2(frame: pl.DataFrame) -> pl.DataFrame:
    """Long rows (kind, node, key, link score) of a shard after round 1: the network's link keys
    (shipper-side ones only for new parties, :func:`riskpipe.features.network.link_columns`) and
    the hop-2 kinds; null keys left out (they link nothing and get nothing)."""
    gated = N.link_columns(frame)
    out = []
    for kind in ROUND2_KINDS:
        k = gated.get_column(kind) if kind in LINK_KEYS else frame.get_column(key_col(kind))
        out.append(
            pl.DataFrame(
                [
                    pl.Series(KIND, [KIND_CODE[kind]] * frame.height, dtype=pl.UInt8),
                    frame.get_column(NODE),
                    k.alias(KEY),
                ]
            )
            .with_columns(frame.get_column(SCORE).alias(SCORE))
            .filter(pl.col(KEY).is_not_null())
        )
    return pl.concat(out)


def round2_partition(rows: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
    """The network's edges (node, root: the group's first node; the same components as
    :func:`riskpipe.features.network.components`) and per hop-2 kind each node's sum of the
    other link scores (mirrors :func:`riskpipe.features.graph._hop2`, before the max over kinds)."""
    edges, hop2 = [], {}
    for kind in ROUND2_KINDS:
        sub = rows.filter(pl.col(KIND) == KIND_CODE[kind])
        if kind in LINK_KEYS:
            cap = N.LINK_CAPS[kind]
            edges.append(
                sub.lazy()
                .filter(pl.len().over(KEY).is_between(2, cap))
                .select(NODE, pl.col(NODE).min().over(KEY).alias(ROOT))
                .filter(pl.col(NODE) != pl.col(ROOT))
                .collect()
            )
        if kind in G.HOP2_KINDS:
            k = key_col(kind)
            seeds = sub.select(NODE, pl.col(KEY).alias(k), SCORE)
            sums = seeds.filter(pl.col(SCORE) > 0).group_by(k).agg(pl.col(SCORE).sum().alias("_sum"))
            sums = sums.join(G._degree_ok(seeds, k, sums.get_column(k), G.LINK_CAPS[kind]), on=k, how="semi")
            got = (
                seeds.select(k, SCORE)
                .join(sums, on=k, how="left", maintain_order="left")
                .select((pl.col("_sum") - pl.col(SCORE)).fill_null(0.0).clip(0.0, 1.0).alias(hop2_col(kind)))
            )
            hop2[kind] = seeds.select(NODE).hstack(got.get_columns())
    return pl.concat(edges), hop2


def hop2_score(frame: pl.DataFrame) -> pl.Series:
    """``graph_hop2_score`` from the per-kind sums (0 where a row got none)."""
    best = pl.max_horizontal(pl.lit(0.0), *(pl.col(hop2_col(k)).fill_null(0.0) for k in G.HOP2_KINDS))
    return frame.select((best * G.HOP2_WEIGHT).cast(pl.Float32).alias(G.HOP2_SCORE)).to_series()


def component_labels(edges: pl.DataFrame) -> pl.DataFrame:
    """(node, label: the smallest node of its component) of every node in an edge; nodes in no
    edge are their own component. Holds the edges (two Int64 a link) and the linked nodes only."""
    import numpy as np
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if edges.height == 0:
        return pl.DataFrame(schema={NODE: pl.Int64, LABEL: pl.Int64})
    a, b = edges.get_column(NODE).to_numpy(), edges.get_column(ROOT).to_numpy()
    nodes, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
    n, m = nodes.size, a.size
    graph = coo_matrix((np.ones(m, dtype=np.int8), (inverse[:m], inverse[m:])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    _, first = np.unique(comp, return_index=True)  # nodes ascending: the first is the smallest
    return pl.DataFrame({NODE: nodes, LABEL: nodes[first[comp]]})


def component_labels_in_files(edge_files: list[str], shard_rows: list[int]) -> pl.DataFrame:
    """:func:`component_labels` of the edges in ``edge_files`` (see :func:`component_label_pieces`)."""
    pieces = [
        pl.DataFrame({NODE: node, LABEL: label}) for node, label in component_label_pieces(edge_files, shard_rows)
    ]
    if not pieces:
        return pl.DataFrame(schema={NODE: pl.Int64, LABEL: pl.Int64})
    return pl.concat(pieces)


def write_component_labels(edge_files: list[str], shard_rows: list[int], path: Path) -> int:
    """:func:`component_labels_in_files` written to ``path`` (Parquet, node ascending, a row
    group per shard's piece at most) as the pieces come, never gathered; returns the rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(NODE, pa.int64()), (LABEL, pa.int64())])
    rows = 0
    with pq.ParquetWriter(str(path), schema) as writer:
        for node, label in component_label_pieces(edge_files, shard_rows):
            writer.write_table(pa.table({NODE: node, LABEL: label}, schema=schema))
            rows += node.size
    return rows


#: edges hooked at a time by :func:`component_label_pieces` (its temporaries: ~60 bytes an edge)
EDGE_SLICE = 500_000


def _edge_slices(edge_files: list[str], dense: Any) -> Iterator[tuple[Any, Any]]:
    """(a, b): the dense places of the edges' two ends, :data:`EDGE_SLICE` edges at a time."""
    for f in edge_files:
        edges = pl.read_parquet(f, columns=[NODE, ROOT])
        for part in edges.iter_slices(EDGE_SLICE):
            yield dense(part.get_column(NODE).to_numpy()), dense(part.get_column(ROOT).to_numpy())
        del edges


def component_label_pieces(edge_files: list[str], shard_rows: list[int]) -> Iterator[tuple[Any, Any]]:
    """(nodes, labels) of the linked rows, shard by shard (nodes ascending, both Int64), as
    :func:`component_labels` labels them (each component by its smallest node), from the edges
    in ``edge_files`` read one file at a time: holds a label per row of the day (4 bytes while
    the day has fewer than 2**31 rows, nodes numbered densely from ``shard_rows``, the rows of each
    shard) and its pointer-jumping copy, a touched flag (1 byte) and one file's edges, not the
    edge list and its sparse graph (about 270 bytes a linked row at 1 M rows: the largest task
    of a 16 M-row night).

    Min-label hooking with pointer jumping: each pass over the edges hooks the larger of an edge's
    two roots onto the smaller, then every label jumps to its root; passes repeat until no edge
    joins two roots (a few passes: each at least halves the roots an edge chain spans). A label
    only ever falls to a node of its own component and the component's smallest node is never
    hooked, so each component ends labelled by its smallest node, as :func:`component_labels`."""
    import numpy as np

    offsets = np.concatenate([[0], np.cumsum(np.asarray(shard_rows, dtype=np.int64))])
    n = int(offsets[-1])
    width = np.int32 if n < 2**31 else np.int64
    label = np.arange(n, dtype=width)
    touched = np.zeros(n, dtype=bool)

    def dense(node: np.ndarray) -> np.ndarray:
        return (offsets[node >> 32] + (node & 0xFFFFFFFF)).astype(width, copy=False)

    def jump(lab: np.ndarray) -> np.ndarray:
        # a label's label, a slice at a time: ``take`` converts the indices to 64 bits and
        # buffers its output (mode "raise"), 12 bytes a row of the day at once
        up = np.empty_like(lab)
        while True:
            same = True
            for i in range(0, n, EDGE_SLICE):
                np.take(lab, lab[i : i + EDGE_SLICE], out=up[i : i + EDGE_SLICE], mode="clip")
                same = same and bool(np.array_equal(up[i : i + EDGE_SLICE], lab[i : i + EDGE_SLICE]))
            if same:
                return lab
            lab, up = up, lab

    first = True
    while True:
        hooked = False
        for a, b in _edge_slices(edge_files, dense):
            if first:
                touched[a] = True
                touched[b] = True
            la, lb = label[a], label[b]
            low = np.minimum(la, lb)
            join = la != lb
            if join.any():
                hooked = True
                np.minimum.at(label, la[join], low[join])
                np.minimum.at(label, lb[join], low[join])
            del a, b, la, lb, low, join
        first = False
        label = jump(label)
        if not hooked:
            break
    # dense places back to nodes, a shard at a time (no day-sized temporaries)
    for s in range(len(shard_rows)):
        lo, hi = int(offsets[s]), int(offsets[s + 1])
        where = np.flatnonzero(touched[lo:hi]).astype(np.int64)
        if where.size == 0:
            continue
        lab = label[where + lo].astype(np.int64)
        owner = np.searchsorted(offsets, lab, side="right") - 1  # the label's shard (a smaller node)
        yield (np.int64(s) << 32) + where, (owner.astype(np.int64) << 32) + (lab - offsets[owner])


# ---------------------------------------------------------------------------------------------
# round 3: the networks' columns per component
# ---------------------------------------------------------------------------------------------
def emit_round3(frame: pl.DataFrame) -> pl.DataFrame:
    """Per row: its component label and what the network family aggregates over a group."""
    prior_pos = pl.any_horizontal(pl.col(H.positives_col(e)) > 0 for e in ("cons_addr", "cons_name", "cons_phone"))
    return frame.select(
        LABEL,
        NODE,
        S.SHIPMENT_ID,
        key_col("cons_addr"),
        key_col("shipper"),
        H.parcels_col("cons_addr", 7),
        prior_pos.alias("_pos"),
    )


# The network family (:func:`riskpipe.features.network.add_network`) aggregates each component;
# one component may hold most of the day (a synthetic 1 M-row day has one of 817 k rows), so no
# step gathers a component's rows: a shard sends per component its partial counts (by label) and
# its distinct (component, party) pairs (by the pair's hash: a component's parties spread over all
# partitions); a pair partition counts its pairs per component; a label partition adds the parts.
_PAIR_KEYS = {"shipper": key_col("shipper"), "cons_addr": key_col("cons_addr")}


def round3_map(long: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
    """A shard's part of round 3 (``long``: :func:`emit_round3`): per component its rows, whether
    any touches a positive, its first shipment id; and per party kind its distinct (component,
    party) pairs (an address with its 7-day parcels, as the family sums them once per address)."""
    parts = long.group_by(LABEL).agg(
        pl.len().cast(pl.Int64).alias("_n"),
        pl.col("_pos").any().alias("_pos"),
        pl.col(S.SHIPMENT_ID).min().alias("_first"),
    )
    p7 = H.parcels_col("cons_addr", 7)
    pairs = {
        "shipper": long.select(LABEL, _PAIR_KEYS["shipper"]).unique(),
        "cons_addr": long.select(LABEL, _PAIR_KEYS["cons_addr"], p7).unique([LABEL, _PAIR_KEYS["cons_addr"]]),
    }
    return parts, pairs


def pair_part(kind: str, parts: int) -> pl.Expr:
    """The pair partition of a (component, party) pair of ``kind``."""
    return (pl.struct(LABEL, _PAIR_KEYS[kind]).hash(7) % parts).cast(pl.Int64)


def round3_pairs(pairs: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """A pair partition: per component its distinct shippers and consignee addresses (null
    counted as one value, as ``n_unique``) and the 7-day parcels summed once per address."""
    p7 = H.parcels_col("cons_addr", 7)
    shippers = pairs["shipper"].unique().group_by(LABEL).agg(pl.len().cast(pl.Int64).alias("_shippers"))
    addrs = pairs["cons_addr"].unique([LABEL, _PAIR_KEYS["cons_addr"]], keep="first", maintain_order=True)
    consignees = addrs.group_by(LABEL).agg(
        pl.len().cast(pl.Int64).alias("_consignees"),
        pl.col(p7).filter(pl.col(_PAIR_KEYS["cons_addr"]).is_not_null()).sum().cast(pl.Int64).alias("_prior7"),
    )
    return shippers.join(consignees, on=LABEL, how="full", coalesce=True)


def round3_labels(parts: pl.DataFrame, pairs: pl.DataFrame) -> pl.DataFrame:
    """A label partition: the network family's columns and ``network_id`` of each of its
    components (``LABEL``), from the shards' parts and the pair partitions' counts (mirrors
    :func:`riskpipe.features.network.add_network` after its components)."""
    groups = parts.group_by(LABEL).agg(
        pl.col("_n").sum().cast(pl.Int32).alias(N.NET_SIZE),
        pl.col("_pos").any().cast(pl.Int8).alias(N.NET_TOUCHES_POSITIVE),
        pl.col("_first").min().alias("_first"),
    )
    counts = pairs.group_by(LABEL).agg(
        pl.col("_shippers").sum().cast(pl.Int32).alias(N.NET_SHIPPERS),
        pl.col("_consignees").sum().cast(pl.Int32).alias(N.NET_CONSIGNEES),
        pl.col("_prior7").sum().cast(pl.Int32).alias(N.NET_PRIOR_PARCELS_7D),
    )
    return (
        groups.join(counts, on=LABEL, how="left")
        .with_columns(pl.col(N.NET_PRIOR_PARCELS_7D).fill_null(0))
        .with_columns(
            (pl.col(N.NET_SIZE) / (1.0 + pl.col(N.NET_PRIOR_PARCELS_7D) / 7.0)).alias(N.NET_GROWTH_RATIO),
            pl.when(pl.col(N.NET_SIZE) > 1).then(pl.concat_str(pl.lit("N-"), pl.col("_first"))).alias(S.NETWORK_ID),
        )
        .select(LABEL, S.NETWORK_ID, *N.COLUMNS)
        .sort(LABEL)
    )
