"""The night on shards: features and scoring of one day spread over workers (a Dask cluster).

What runs where (each step is one function here; ``flows.nightly`` submits them as tasks):

1. :func:`split_raw` (one task, streaming): the day's raw rows are written once into ``n``
   shard folders by the stable hash of the consignee address key (:func:`riskpipe.shard.shard_of`),
   so a worker reads only its shard's rows. All shipments to one address are in one shard.
2. The whole-day columns (windows over party keys, history look-ups, the party graph, the day's
   networks) as a map-reduce over ``P`` key partitions, every step a task on the workers
   (``keys_*``; the formulas in :mod:`riskpipe.features.partials`). A key's rows must meet, for
   nine key kinds at once, so each kind is partitioned on its own by the range of its 64-bit key
   hash: :func:`keys_map` (per shard) keys the shard's rows, numbers them (nodes) and emits per
   kind (node, key, a few side values); :func:`keys_reduce1` (per partition) computes the windows,
   history look-ups (reading only its key range of the window table) and the graph's hop 1;
   :func:`keys_map2` joins them back by node and emits the networks' link keys and the link
   scores; :func:`keys_reduce2` gives the networks' edges and the graph's hop 2;
   :func:`keys_components` (one task) labels the components of the edge list; :func:`keys_map3`
   (per shard: each component's partial counts, its distinct (component, party) pairs),
   :func:`keys_reduce3` (per pair partition: pairs counted per component) and
   :func:`keys_networks` (per label partition: the parts added) aggregate each component (size,
   parties, ``network_id``) without gathering its rows, however large it is; then each
   shard's columns are assembled by :func:`keys_shard_columns`. No step holds the day's thin
   frame: a shard step holds its shard, a partition step its keys' rows (about 45 bytes per row
   and kind), the components step a label per row of the day (9 bytes a row) and one edge file,
   :func:`keys_pieces` the day's shipment ids. (:func:`day_columns`, one task
   holding the day's thin frame, about 0.5 KB a row, is the former central step, kept for
   comparison and the tests.)
3. :func:`features_shard` (one task per shard, on the workers): the row-level families on the
   shard's raw rows, joined to the shard's whole-day columns (by shipment id) and checked to
   cover exactly the shard's shipments.
4. :func:`score_piece` (one task per piece, on the workers): a contiguous range of shipment ids
   gathered from the shards' feature files and scored. Pieces, not address shards, because the
   scoring cascade of a large day re-scores the top of each *batch of the id-sorted day*
   (:func:`score_pieces` follows the single-process batches; scoring each 250 k-row address
   shard on its own changed a quarter of the scores of a 1 M-row day). Then
   :func:`join_ranges` streams the pieces into the day's features file and
   :func:`riskpipe.shard.combine_shards` combines the scores (the day's top rows get their
   reasons there, central, from the top rows only).
5. Ranking and the report run as one task on a worker (``riskpipe.nightly.rank_and_stage_step``,
   not on the flow's process), holding one id range of the scored day at a time, never the day
   (:func:`riskpipe.rank.rank_pieces`: each range's candidates - per port its best ``room`` rows
   and its ``ceiling`` smallest random keys, and its top ``budget`` scores - merged centrally; the
   exploration draw is keyed by each shipment's place among all the day's ids, computed from the
   range's first place, so the list is drawn from the whole day exactly as a single-process run
   does). The scores file is streamed, the report's figures are streaming aggregates and drift
   compares bounded samples.

Each row's features and score do not depend on which shard it was in: the row families are
row-local (the family protocol), the whole-day columns of a row are those of the whole day (a
key's rows all meet in its partition; a row with a null key is alone in every family), and the
pieces score with ``top_n=0`` before the day's top rows are attributed. So the outputs equal the
single-process run's (tested, threads and a two-worker Dask cluster), bit for bit (a consignee's
day value is an integer sum of micro-dollars, the same in any order).
"""

from __future__ import annotations

import os
import shutil
from bisect import bisect_right
from datetime import date
from pathlib import Path

import polars as pl

from riskpipe import nightly
from riskpipe import schema as S
from riskpipe import score as scoring
from riskpipe.config import Settings
from riskpipe.features.build import PARQUET_OPTIONS, _assemble, _Day, _day_frame, sorted_by_id
from riskpipe.nightly import features_path, load_labels, require_day
from riskpipe.rules import load_rules, rules_file
from riskpipe.score import join_raw_features, scoring_columns
from riskpipe.search import watchlist_step
from riskpipe.shard import checked_id_ranges, pinned_model, shard_dir, shard_of
from riskpipe.store import (
    PRIVATE_FILE,
    Layout,
    private_dir,
    scan_raw_shipments,
    set_mode,
    tmp_sibling,
    write_text_atomic,
)

_SHARD = "_shard"
DAY_COLUMNS_FILE = "day-columns.parquet"


def _name(i: int, n: int) -> str:
    return f"{i:03d}-of-{n:03d}"


#: the raw day is split this many rows at a time (one chunk in memory: about 2 KB a row with its
#: partitioned copy and the reader's buffers; 0.54 GB at 50 k, 0.99 GB at 250 k, 2.46 GB at 1 M rows)
SPLIT_CHUNK_ROWS = 100_000


def split_raw(layout: Layout, day: date, n_shards: int, chunk_rows: int | None = None) -> list[dict[str, str]]:
    """The day's raw rows in ``n_shards`` folders by consignee address hash, ``chunk_rows`` rows
    of the day at a time (each chunk's rows of a shard one file in its folder; folders 0700: the
    rows hold names and addresses). Holds one chunk: Polars' partitioned sink held about 0.3 KB
    per row of the day (1.56 GB at 4 M rows). Returns each shard's paths: ``raw`` (a glob of its
    files), ``features`` and ``scored`` (written by later steps)."""
    require_day(layout, day)
    chunk_rows = SPLIT_CHUNK_ROWS if chunk_rows is None else max(1, int(chunk_rows))
    out = shard_dir(layout, day)
    shutil.rmtree(out, ignore_errors=True)  # leftovers of a killed run
    private_dir(out, under=layout.home)
    raw = scan_raw_shipments(layout, [day])
    rows = raw.select(pl.len()).collect().item()
    folders = [out / f"raw-{_name(i, n_shards)}" for i in range(n_shards)]
    for folder in folders:
        private_dir(folder)
    written = [0] * n_shards
    for k, first in enumerate(range(0, rows, chunk_rows)):
        chunk = raw.slice(first, chunk_rows).with_columns(shard_of(n_shards).alias(_SHARD)).collect()
        for (i,), part in chunk.partition_by(_SHARD, as_dict=True, include_key=False).items():
            _write(part, folders[int(i)] / f"part-{k:04d}.parquet")
            written[int(i)] += 1
    parts = []
    for i, folder in enumerate(folders):
        if not written[i]:  # a shard with no rows still has the day's columns
            _write(raw.head(0).collect(), folder / "part-0000.parquet")
        parts.append(
            {
                "raw": str(folder / "*.parquet"),
                "features": str(out / f"features-{_name(i, n_shards)}.parquet"),
                "scored": str(out / f"scored-{_name(i, n_shards)}.parquet"),
            }
        )
    return parts


def _open_day(layout: Layout, settings: Settings, day: date) -> _Day:
    """The day's families opened as the nightly features step opens them (no history by-product:
    the night writes the day's history after publishing)."""
    return _Day(layout, day, load_labels(settings), settings.partner_key_path, history_by_product=False)


def score_pieces(rows: int, min_pieces: int = 1) -> list[tuple[int, int, bool]]:
    """(first row, end row, cascade) of each piece of the id-sorted day that is scored on its own,
    such that the scores equal the single-process score step's.

    That step scores the day in ``ceil(rows / nightly.SCORE_BATCH_ROWS)`` id ranges, each with
    the two-stage cascade when it has more than ``score.CASCADE_MIN_ROWS`` rows, whose candidates
    (the top share of the first stage) are chosen per batch of ``score.BATCH_ROWS`` rows from the
    range's start. With the cascade, a piece is one such batch (scoring a 250 k-row address shard
    on its own instead changed a quarter of the scores of a 1 M-row day); without it a row's score
    is its own, and a range is cut into at least ``min_pieces`` pieces (of at most a batch)."""
    n_ranges = max(1, -(-rows // nightly.SCORE_BATCH_ROWS))
    edges = [i * rows // n_ranges for i in range(n_ranges)] + [rows]
    pieces = []
    for a, b in zip(edges, edges[1:], strict=False):
        cascade = b - a > scoring.CASCADE_MIN_ROWS
        step = scoring.BATCH_ROWS if cascade else max(1, min(scoring.BATCH_ROWS, -(-(b - a) // min_pieces)))
        pieces += [(s, min(s + step, b), cascade) for s in range(a, b, step)]
    return pieces


def day_columns(layout: Layout, settings: Settings, day: date, min_pieces: int = 1) -> dict[str, object]:
    """The whole-day columns of ``day`` (central: see the module's docstring), written sorted by
    shipment id. Returns the file, the day's row count and the pieces the day is scored in
    (:func:`score_pieces`) as (low, high, cascade): shipment ids ``low <= id < high`` (None: open)."""
    require_day(layout, day)
    frame = _day_frame(_open_day(layout, settings, day))
    rows = frame.height
    ids = frame.get_column(S.SHIPMENT_ID)
    pieces = [
        (ids[a] if a > 0 else None, ids[b] if b < rows else None, cascade)
        for a, b, cascade in score_pieces(rows, min_pieces)
    ]
    path = shard_dir(layout, day) / DAY_COLUMNS_FILE
    private_dir(path.parent, under=layout.home)
    _write(frame, path)
    return {"file": str(path), "rows": rows, "pieces": pieces}


def _write(frame: pl.DataFrame, path: Path) -> Path:
    """A work file of the shards (with column statistics: the id-range readers skip row groups)."""
    tmp = tmp_sibling(path)
    try:
        frame.write_parquet(tmp)
        set_mode(tmp, PRIVATE_FILE)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def features_shard(layout: Layout, settings: Settings, day: date, part: dict[str, str], day_file: str) -> str:
    """The features of one shard's shipments (sorted by shipment id) -> ``part["features"]``.

    The row families run on the shard's raw rows only; the whole-day columns are read for the
    shard's shipment ids. A shard whose rows and whole-day columns differ is an error."""
    b = _open_day(layout, settings, day)
    raw = pl.scan_parquet(part["raw"], hive_partitioning=False)
    for _, w in b.work:
        raw = w.adjust_raw(raw)
    for _, w in b.work:
        raw = w.rows(raw)
    rows = raw.select(S.SHIPMENT_ID, *b.row_columns).collect(engine="streaming")
    ids = rows.select(S.SHIPMENT_ID).lazy()
    day_part = pl.scan_parquet(day_file).join(ids, on=S.SHIPMENT_ID, how="semi").collect(engine="streaming")
    day_part = sorted_by_id(day_part)
    return str(_write(_assemble(b, rows, day_part), Path(part["features"])))


def features_range(feature_files: list[str], low: str | None, high: str | None) -> pl.DataFrame:
    """Rows of the shards' feature files with ``low <= shipment_id < high`` (None: unbounded),
    sorted by shipment id: one contiguous piece of the day's features file."""
    scan = pl.scan_parquet(feature_files)
    if low is not None:
        scan = scan.filter(pl.col(S.SHIPMENT_ID) >= low)
    if high is not None:
        scan = scan.filter(pl.col(S.SHIPMENT_ID) < high)
    return sorted_by_id(scan.collect())


def score_piece(
    layout: Layout,
    settings: Settings,
    day: date,
    feature_files: list[str],
    piece: tuple[str | None, str | None, bool],
    out: dict[str, str],
    model_version: str | None = None,
) -> dict[str, str]:
    """One piece of the day (:func:`day_columns`): its features gathered from the shards ->
    ``out["features"]``, its scores (cheap reasons; the day's top rows are attributed when the
    pieces are combined) by the night's model ``model_version`` (resolved once for the night,
    :func:`riskpipe.shard.night_champion`; None: the champion of this instant) -> ``out["scored"]``."""
    low, high, cascade = piece
    feats = features_range(feature_files, low, high)
    _write(feats, Path(out["features"]))
    model, rules = pinned_model(settings, model_version), load_rules(rules_file(settings))
    feature_columns, raw_columns = scoring_columns(model, rules, feats.schema)
    raw = scan_raw_shipments(layout, [day]).select(raw_columns)
    if low is not None:
        raw = raw.filter(pl.col(S.SHIPMENT_ID) >= low)
    if high is not None:
        raw = raw.filter(pl.col(S.SHIPMENT_ID) < high)
    joined = join_raw_features(raw.collect(), feats.select(feature_columns))
    del feats
    # the cascade as the single-process call over this piece's id range decided it
    scored = scoring.score_frame(joined, model, rules, top_n=0, cascade_min_rows=0 if cascade else joined.height)
    scored = watchlist_step(layout, settings, day, scored)
    _write(scored, Path(out["scored"]))
    return out


def piece_paths(layout: Layout, day: date, n: int) -> list[dict[str, str]]:
    """Where piece ``i`` of ``n`` writes its features and scores."""
    folder = shard_dir(layout, day)
    return [{k: str(folder / f"piece-{k}-{_name(i, n)}.parquet") for k in ("features", "scored")} for i in range(n)]


def join_ranges(layout: Layout, day: date, range_files: list[str], rows: int) -> Path:
    """The day's features file from its id ranges (in order), streamed into place; the ranges
    must hold the day's ``rows`` shipments, each once, in id order (a lost, doubled or misplaced
    row is an error), checked a range at a time."""
    got = sum(piece.height for piece in checked_id_ranges(range_files, day, [S.SHIPMENT_ID]))
    if got != rows:
        raise ValueError(f"shards of {day}: {got} feature rows for {rows} shipments of the day")
    scan = pl.scan_parquet(range_files)
    path = features_path(layout, day)
    private_dir(path.parent, under=layout.home)  # hashed party keys: owner only
    tmp = tmp_sibling(path)
    try:
        scan.sink_parquet(tmp, engine="streaming", **PARQUET_OPTIONS)
        set_mode(tmp, PRIVATE_FILE)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# ---------------------------------------------------------------------------------------------
# the whole-day columns as a key-partitioned map-reduce (no task holds the whole day)
# ---------------------------------------------------------------------------------------------
#: the work folder of the map-reduce under the shards' folder
KEYS_DIR = "keys"
_ROUND1_FILE = "round1.json"
_EXAMS_FILE = "round1-exams.parquet"
_KNOWN_FILE = "round1-known.parquet"
_LABELS_FILE = "components.parquet"


def _keys_dir(layout: Layout, day: date) -> Path:
    return shard_dir(layout, day) / KEYS_DIR


def _scatter(frame: pl.DataFrame, part: pl.Expr, n: int, folder: Path, name: str, drop: tuple[str, ...] = ()) -> None:
    """``frame`` split by ``part`` (0..n-1) into ``folder/<i>/<name>.parquet``, one file per part
    (an empty one too: a reader of part ``i`` always finds every writer's file); ``drop``:
    columns not written (e.g. the route the part was computed from)."""
    frame = frame.with_columns(part.alias("_part")).drop(*drop)
    got = {k[0]: f for k, f in frame.partition_by("_part", as_dict=True, include_key=False).items()}
    empty = frame.drop("_part").head(0)
    for i in range(n):
        out = folder / f"{i:04d}"
        private_dir(out, under=folder.parent)
        _write(got.get(i, empty), out / f"{name}.parquet")


def _gather(folder: Path, i: int, kind: str = "") -> pl.DataFrame:
    """Every writer's file of part ``i`` (of one key kind: ``kind``, see :func:`_kind_name`)."""
    return pl.read_parquet(str(folder / f"{i:04d}" / f"*{kind}.parquet"))


def _kind_name(kind: str) -> str:
    """The file name suffix of a key kind's results: each kind's own columns in its own files
    (one frame of all kinds padded with the others' columns as nulls held 9 x 70 columns a row)."""
    from riskpipe.features import partials

    return f"-k{partials.KIND_CODE[kind]}"


def _thin_path(layout: Layout, day: date, shard: int, stage: str) -> Path:
    return _keys_dir(layout, day) / f"{stage}-{shard:04d}.parquet"


def keys_prepare(layout: Layout, settings: Settings, day: date) -> dict[str, object]:
    """What every key partition of round 1 shares (:func:`riskpipe.features.partials.prepare`),
    written once (small: one row per labelled shipment); warms the labelled-party caches so that
    the partitions only read them."""
    import json

    from riskpipe.features import history as H
    from riskpipe.features import partials
    from riskpipe.features.build import _known_labels

    require_day(layout, day)
    folder = _keys_dir(layout, day)
    private_dir(folder, under=layout.home)
    H.ensure_history(layout, day)
    r = partials.prepare(layout, day, _known_labels(load_labels(settings), day))
    _write(r.exams, folder / _EXAMS_FILE)
    if r.known is not None:
        _write(r.known, folder / _KNOWN_FILE)
    meta = {"days": [d.isoformat() for d in r.days], "use_window": r.use_window, "known": r.known is not None}
    write_text_atomic(json.dumps(meta), folder / _ROUND1_FILE, PRIVATE_FILE)
    return meta


def _round1(layout: Layout, day: date):
    import json

    from riskpipe.features import partials

    folder = _keys_dir(layout, day)
    meta = json.loads((folder / _ROUND1_FILE).read_text(encoding="utf-8"))
    known = pl.read_parquet(folder / _KNOWN_FILE) if meta["known"] else None
    days = [date.fromisoformat(d) for d in meta["days"]]
    return partials.Round1(layout, day, days, meta["use_window"], pl.read_parquet(folder / _EXAMS_FILE), known)


def keys_map(layout: Layout, day: date, part: dict[str, str], shard: int, n_parts: int) -> int:
    """Map of round 1 for one shard: its thin frame (ids, value in USD, hashed party keys, as the
    single-process build keys them), sorted by id and numbered (nodes), kept for the later rounds;
    its long rows per key kind scattered to the ``n_parts`` key partitions. Returns its rows."""
    from riskpipe.features import partials
    from riskpipe.features.build import _KEYS
    from riskpipe.features.keys import key_col

    raw = pl.scan_parquet(part["raw"], hive_partitioning=False)
    keyed = raw.select(S.SHIPMENT_ID, S.DECLARED_VALUE_USD, *(e.alias(key_col(n)) for n, e in _KEYS.items()))
    thin = sorted_by_id(keyed.collect(engine="streaming")).with_columns(partials.node_expr(shard))
    _write(thin, _thin_path(layout, day, shard, "thin"))
    long = partials.emit_round1(thin)
    part_ = partials.part_of(pl.col("_route"), n_parts)
    _scatter(long, part_, n_parts, _keys_dir(layout, day) / "r1", f"{shard:04d}", drop=("_route",))
    return thin.height


def keys_reduce1(layout: Layout, day: date, part: int, n_parts: int, n_shards: int) -> int:
    """Round 1 of key partition ``part``: the windows, history look-ups and hop-1 graph columns of
    its keys (every kind), sent back to the shards by node. Returns the long rows it held."""
    from riskpipe.features import partials

    rows = _gather(_keys_dir(layout, day) / "r1", part)
    done = partials.round1_partition(_round1(layout, day), rows, part, n_parts)
    where = partials.shard_of_node(pl.col(partials.NODE))
    for kind, out in done.items():
        _scatter(out, where, n_shards, _keys_dir(layout, day) / "r1out", f"{part:04d}{_kind_name(kind)}")
    return rows.height


def keys_map2(layout: Layout, day: date, shard: int, n_parts: int) -> int:
    """Round 1's columns joined back to the shard's rows (its null-key rows computed here), then
    the map of round 2: the network's link keys and the hop-2 kinds with each row's link score."""
    from riskpipe.features import partials

    r = _round1(layout, day)
    thin = pl.read_parquet(_thin_path(layout, day, shard, "thin"))
    frame = thin
    for kind in partials.KINDS:
        local = partials.round1_local(r, kind, thin)
        got = _gather(_keys_dir(layout, day) / "r1out", shard, _kind_name(kind)).select(local.columns)
        both = pl.concat([got, local])
        if both.height != thin.height or both.get_column(partials.NODE).n_unique() != thin.height:
            raise RuntimeError(
                f"key partitions of {day}: shard {shard} got {both.height} rows of {kind} for {thin.height}"
            )
        frame = frame.join(both, on=partials.NODE, how="left", maintain_order="left")
    frame = partials.row_columns_round1(frame)
    _write(frame, _thin_path(layout, day, shard, "round1"))
    long = partials.emit_round2(frame)
    _scatter(
        long, partials.part_of(pl.col(partials.KEY), n_parts), n_parts, _keys_dir(layout, day) / "r2", f"{shard:04d}"
    )
    return frame.height


def keys_reduce2(layout: Layout, day: date, part: int, n_shards: int) -> int:
    """Round 2 of key partition ``part``: the network's edges (written for the components step)
    and the hop-2 sums (sent back to the shards)."""
    from riskpipe.features import partials

    rows = _gather(_keys_dir(layout, day) / "r2", part)
    edges, hop2 = partials.round2_partition(rows)
    folder = _keys_dir(layout, day) / "edges"
    private_dir(folder)
    _write(edges, folder / f"{part:04d}.parquet")
    where = partials.shard_of_node(pl.col(partials.NODE))
    for kind, out in hop2.items():
        _scatter(out, where, n_shards, _keys_dir(layout, day) / "r2out", f"{part:04d}{_kind_name(kind)}")
    return rows.height


def keys_components(layout: Layout, day: date) -> int:
    """The day's networks: connected components of the edges of every link kind. Central, but it
    reads the edge files one at a time and holds about 9 bytes per row of the day (a label, its
    pointer-jumping copy and a flag, :func:`riskpipe.features.partials.component_label_pieces`),
    not the edge list and its graph, and writes the labels a shard at a time. Returns the linked
    rows."""
    from riskpipe.features import partials

    folder = _keys_dir(layout, day)
    shards = sorted(folder.glob("thin-*.parquet"))
    rows = [pl.scan_parquet(f).select(pl.len()).collect().item() for f in shards]
    edges = sorted(str(f) for f in (folder / "edges").glob("*.parquet"))
    out = folder / _LABELS_FILE
    tmp = tmp_sibling(out)
    try:
        linked = partials.write_component_labels(edges, rows, tmp)
        set_mode(tmp, PRIVATE_FILE)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return linked


def keys_map3(layout: Layout, day: date, shard: int, n_parts: int) -> int:
    """The hop-2 score of the shard's rows, their component labels, and the map of round 3 (by
    component)."""
    from riskpipe.features import graph as G
    from riskpipe.features import partials

    node = pl.col(partials.NODE)
    frame = pl.read_parquet(_thin_path(layout, day, shard, "round1"))
    for kind in G.HOP2_KINDS:
        col = partials.hop2_col(kind)
        got = _gather(_keys_dir(layout, day) / "r2out", shard, _kind_name(kind)).select(partials.NODE, col)
        frame = frame.join(got, on=partials.NODE, how="left", maintain_order="left")
    frame = frame.with_columns(partials.hop2_score(frame))
    labels = (
        pl.scan_parquet(_keys_dir(layout, day) / _LABELS_FILE)
        .filter((node >= (shard << 32)) & (node < ((shard + 1) << 32)))
        .collect()
    )
    frame = frame.join(labels, on=partials.NODE, how="left", maintain_order="left")
    frame = frame.with_columns(pl.col(partials.LABEL).fill_null(node))
    _write(frame, _thin_path(layout, day, shard, "round2"))
    parts, pairs = partials.round3_map(partials.emit_round3(frame))
    folder = _keys_dir(layout, day)
    _scatter(parts, (pl.col(partials.LABEL) % n_parts).cast(pl.Int64), n_parts, folder / "r3", f"{shard:04d}")
    for kind, rows in pairs.items():
        _scatter(rows, partials.pair_part(kind, n_parts), n_parts, folder / "r3pairs", f"{shard:04d}-{kind}")
    return frame.height


def keys_reduce3(layout: Layout, day: date, part: int, n_parts: int) -> int:
    """Round 3 of pair partition ``part``: each component's distinct shippers and consignee
    addresses among its pairs (and their 7-day parcels), sent to the components' label
    partitions. A component's pairs spread over every pair partition, however large it is."""
    from riskpipe.features import partials

    folder = _keys_dir(layout, day)
    pairs = {kind: _gather(folder / "r3pairs", part, f"-{kind}") for kind in ("shipper", "cons_addr")}
    counts = partials.round3_pairs(pairs)
    _scatter(counts, (pl.col(partials.LABEL) % n_parts).cast(pl.Int64), n_parts, folder / "r3counts", f"{part:04d}")
    return sum(p.height for p in pairs.values())


def keys_networks(layout: Layout, day: date, part: int) -> int:
    """Round 3 of label partition ``part``: the network columns and ``network_id`` of its
    components (one row each, from the shards' parts and the pair partitions' counts), for the
    shards to join by label."""
    from riskpipe.features import partials

    folder = _keys_dir(layout, day)
    table = partials.round3_labels(_gather(folder / "r3", part), _gather(folder / "r3counts", part))
    private_dir(folder / "networks")
    _write(table, folder / "networks" / f"{part:04d}.parquet")
    return table.height


def keys_shard_columns(layout: Layout, day: date, shard: int) -> str:
    """The whole-day columns of the shard's shipments (``shipment_id``, ``network_id``, the
    families' day columns; sorted by id), as :func:`day_columns` gives them for the whole day."""
    from riskpipe.features import families, partials

    frame = pl.read_parquet(_thin_path(layout, day, shard, "round2"))
    labels = frame.get_column(partials.LABEL).unique()
    # one label partition's table at a time (a scan of them all held the day's networks table)
    tables = sorted((_keys_dir(layout, day) / "networks").glob("*.parquet"))
    wanted = pl.col(partials.LABEL).is_in(labels.implode())
    net = pl.concat([pl.read_parquet(f).filter(wanted) for f in tables])
    if net.height != labels.len():
        raise RuntimeError(f"key partitions of {day}: shard {shard} found {net.height} of its {labels.len()} networks")
    frame = frame.join(net, on=partials.LABEL, how="left", maintain_order="left")
    cols = [c for f in families.FAMILIES for c in f.day_columns]
    path = _thin_path(layout, day, shard, "day-columns")
    return str(_write(frame.select(S.SHIPMENT_ID, S.NETWORK_ID, *cols), path))


def keys_pieces(layout: Layout, day: date, n_shards: int, min_pieces: int = 1) -> dict[str, object]:
    """The day's row count and the pieces it is scored in (as :func:`day_columns` returns them),
    from the shards' id-sorted ids, one shard at a time (:func:`ids_at`): holds one shard's ids
    and a sample, not the day's ids (80 bytes a row: 1.3 GB for a 16 M-row day)."""
    files = [str(_thin_path(layout, day, s, "thin")) for s in range(n_shards)]
    rows = sum(pl.scan_parquet(f).select(pl.len()).collect().item() for f in files)
    spec = score_pieces(rows, min_pieces)
    at = ids_at(files, sorted({p for a, b, _ in spec for p in (a, b) if 0 < p < rows}))
    pieces = [(at[a] if a > 0 else None, at[b] if b < rows else None, cascade) for a, b, cascade in spec]
    return {"rows": rows, "pieces": pieces}


IDS_SAMPLE = 100_000


def ids_at(files: list[str], places: list[int]) -> dict[int, str]:
    """The shipment id at each of ``places`` (0-based) in the id order of all the rows of
    ``files`` (each sorted by ``shipment_id``, ids unique), reading one file at a time.

    A sample of every t-th id of each file (about ``IDS_SAMPLE`` in all) cuts the id space into
    buckets holding at most t ids per file; a first pass counts each file's ids below every cut,
    which finds the bucket of each place and its rank there; a second pass gathers those buckets'
    ids only (at most t a file) and picks the place's id. Exact."""
    if not places:
        return {}
    sizes = [pl.scan_parquet(f).select(pl.len()).collect().item() for f in files]
    step = max(1, sum(sizes) // IDS_SAMPLE)
    sample = (
        pl.concat([pl.scan_parquet(f).select(S.SHIPMENT_ID).gather_every(step).collect() for f in files])
        .get_column(S.SHIPMENT_ID)
        .sort()
    )
    below = pl.zeros(sample.len(), dtype=pl.Int64, eager=True)  # the day's ids below each cut
    for f in files:
        ids = pl.read_parquet(f, columns=[S.SHIPMENT_ID]).get_column(S.SHIPMENT_ID)
        if not ids.is_sorted():
            raise ValueError(f"{Path(f).name}: shipment ids not sorted")
        below = below + ids.search_sorted(sample, side="left").cast(pl.Int64)
    counts = below.to_list()
    cuts = sample.to_list()
    found: dict[int, tuple[str | None, str | None, int]] = {}
    for p in places:  # the bucket [lo, hi) holding place p, and p's rank in it
        j = bisect_right(counts, p) - 1
        lo, base = (cuts[j], counts[j]) if j >= 0 else (None, 0)
        hi = cuts[j + 1] if j + 1 < len(cuts) else None
        found[p] = (lo, hi, p - base)
    buckets: dict[tuple[str | None, str | None], list[pl.Series]] = {(lo, hi): [] for lo, hi, _ in found.values()}
    for f in files:
        ids = pl.read_parquet(f, columns=[S.SHIPMENT_ID]).get_column(S.SHIPMENT_ID)
        for lo, hi in buckets:
            a = int(ids.search_sorted(lo, side="left")) if lo is not None else 0
            b = int(ids.search_sorted(hi, side="left")) if hi is not None else ids.len()
            buckets[(lo, hi)].append(ids.slice(a, b - a))
    merged = {k: pl.concat(v).sort() for k, v in buckets.items()}
    return {p: str(merged[(lo, hi)][rank]) for p, (lo, hi, rank) in found.items()}


def partitioned_day_columns(
    layout: Layout, settings: Settings, day: date, parts: list[dict[str, str]], n_parts: int, min_pieces: int = 1
) -> tuple[list[str], dict[str, object]]:
    """Every step of the map-reduce in this process, in order (the flow runs the same steps as
    tasks): each shard's whole-day columns file, and the day's rows and pieces."""
    n = len(parts)
    keys_prepare(layout, settings, day)
    for s, p in enumerate(parts):
        keys_map(layout, day, p, s, n_parts)
    for i in range(n_parts):
        keys_reduce1(layout, day, i, n_parts, n)
    for s in range(n):
        keys_map2(layout, day, s, n_parts)
    for i in range(n_parts):
        keys_reduce2(layout, day, i, n)
    keys_components(layout, day)
    for s in range(n):
        keys_map3(layout, day, s, n_parts)
    for i in range(n_parts):
        keys_reduce3(layout, day, i, n_parts)
    for i in range(n_parts):
        keys_networks(layout, day, i)
    return [keys_shard_columns(layout, day, s) for s in range(n)], keys_pieces(layout, day, n, min_pieces)
