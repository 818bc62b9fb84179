from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest

from riskpipe import schema as S
from riskpipe.bench.features import bench_features, make_bench_world
from riskpipe.errors import RiskpipeError
from riskpipe.evaluation.indicators import indicator_table, table_markdown, truth_days
from riskpipe.features import (
    CATEGORICAL_FEATURES,
    FEATURE_COLUMNS,
    FEATURE_FAMILIES,
    build_features,
    family_fires,
    value,
)
from riskpipe.features.testing import write_raw_day
from riskpipe.store import Layout, write_parquet_atomic

D = date(2026, 3, 10)


def test_public_lists_are_consistent():
    assert [c for fam in FEATURE_FAMILIES.values() for c in fam] == FEATURE_COLUMNS
    assert set(CATEGORICAL_FEATURES) <= set(FEATURE_COLUMNS)
    assert len(set(FEATURE_COLUMNS)) == len(FEATURE_COLUMNS)


def test_categoricals_are_small_enums_and_the_rest_numeric(tmp_path):
    lay = Layout(tmp_path)
    write_raw_day(lay, D, [{}])
    f = build_features(lay, D)
    for c in FEATURE_COLUMNS:
        dtype = f.schema[c]
        if c in CATEGORICAL_FEATURES:
            assert isinstance(dtype, pl.Enum) and len(dtype.categories) < 255, c
        else:
            assert dtype.is_numeric(), (c, dtype)


def test_family_fires_one_flag_per_family(tmp_path):
    lay = Layout(tmp_path)
    write_raw_day(
        lay,
        D,
        [
            {S.DESCRIPTION: "NPP"},  # commodity
            {S.CONSIGNEE_ADDRESS: "P.O. Box 9"},  # parties
            {S.COUNTRY_OF_ORIGIN: "MX"},  # crossborder: partner export missing
            {S.DECLARED_VALUE: 500.0, S.CONSIGNEE_NAME: "Q", S.CONSIGNEE_ADDRESS: "2 Elm"},  # value: split over $800
            {S.DECLARED_VALUE: 400.0, S.CONSIGNEE_NAME: "Q", S.CONSIGNEE_ADDRESS: "2 Elm"},
            {},
        ],
    )
    fires = family_fires(build_features(lay, D))
    assert fires.columns == list(FEATURE_FAMILIES)
    assert fires.select(pl.all().cast(pl.Int8)).rows() == [
        (1, 0, 0, 0, 0, 0, 0, 0),
        (0, 0, 1, 0, 0, 0, 0, 0),
        (0, 0, 0, 0, 0, 1, 0, 0),
        (0, 1, 0, 0, 0, 0, 0, 0),
        (0, 1, 0, 0, 0, 0, 0, 0),
        (0, 0, 0, 0, 0, 0, 0, 0),
    ]


def test_indicator_table_from_truth(tmp_path):
    lay = Layout(tmp_path)
    raw = write_raw_day(lay, D, [{S.DESCRIPTION: "NPP"}, {S.DESCRIPTION: "NPP"}, {}, {}, {}, {S.DESCRIPTION: "NPP"}])
    truth = raw.select(
        S.SHIPMENT_ID,
        S.ARRIVAL_DATE,
        pl.Series(
            S.TRUE_CLASS,
            ["precursor", "no_finding", "fentanyl", "no_finding", "no_finding", "no_finding"],
            dtype=S.Outcome,
        ),
        pl.lit(None, pl.String).alias(S.SCHEME),
        pl.lit(None, pl.String).alias(S.CELL_ID),
    )
    write_parquet_atomic(truth, lay.partition(lay.truth, D) / "truth.parquet")
    assert truth_days(lay) == [D]
    table = indicator_table(lay, [D])
    row = table.filter(pl.col("family") == "commodity").row(0, named=True)
    assert row["fires_on_positives"] == 0.5
    assert row["fires_on_negatives"] == 0.5
    assert row["lift"] == 1.0
    assert (row["positives"], row["negatives"]) == (2, 4)
    # fires on the three NPP parcels, one of them positive: what examining them all would find
    assert (row["fired"], row["precision"]) == (3, pytest.approx(1 / 3))
    text = table_markdown(table, [D])
    assert "| commodity | 50.0 % | 50.00 % | 1.0 | 3 | 33.3 % |" in text
    assert "prevalence 0.3333" in text


def test_indicator_table_needs_truth(tmp_path):
    with pytest.raises(RiskpipeError, match="ground truth"):
        indicator_table(Layout(tmp_path), [])


def test_bench_features_small(tmp_path):
    lay = Layout(tmp_path)
    make_bench_world(lay, D, rows=2_000, history_days=2)
    out = bench_features(lay, D)
    assert out["rows"] == 2_000
    assert out["history_days"] == 2
    assert {"commodity", "value", "parties", "crossborder", "history", "network"} <= set(out["stages_s"])
    f = build_features(lay, D)
    assert f.get_column("hist_cons_addr_parcels_1d").sum() > 0  # people repeat across days
    assert build_features(lay, D - timedelta(days=1)).height == 2_000


def test_write_features_in_batches_equals_one_batch(tmp_path):
    """A large day is built in id-range batches (whole-day columns once, row families streamed
    and split); the file must equal the one-batch build (a sum of floats may differ in the last
    bits: rows are summed in another order), and no work files remain."""
    from polars.testing import assert_frame_equal

    from riskpipe.features.build import write_features

    lay = Layout(tmp_path / "home")
    make_bench_world(lay, D, rows=3_000, history_days=2)
    one = build_features(lay, D)
    out = tmp_path / "out" / "features.parquet"
    write_features(lay, D, None, out, batch_rows=700)  # 5 batches
    assert_frame_equal(pl.read_parquet(out), one, check_exact=False, rtol=1e-12)
    assert sorted(p.name for p in out.parent.iterdir()) == ["features.parquet"]
    write_features(lay, D, None, out, batch_rows=10_000)  # one batch: the in-memory path
    assert_frame_equal(pl.read_parquet(out), one)
    with pytest.raises(ValueError, match="batch_rows"):
        write_features(lay, D, None, out, batch_rows=0)


def _numeric_features(f: pl.DataFrame) -> list[str]:
    return [c for c in FEATURE_COLUMNS if f.schema[c].is_float()]


def test_non_finite_raw_values_give_finite_features_and_norms(tmp_path):
    """A store written before ingest refused them (issue 12) may hold inf, NaN and denormal
    values: the day's features stay finite (inf clipped, NaN null) and the heading norms of the
    days after it are not poisoned."""
    from riskpipe.features.build import FEATURE_ABS_MAX
    from riskpipe.features.value import VALUE_PER_KG_VS_HEADING

    lay = Layout(tmp_path)
    bad = [
        {S.DECLARED_VALUE: 1.7e308, S.DECLARED_VALUE_USD: float("inf")},
        {S.DECLARED_VALUE_USD: float("-inf")},
        {S.DECLARED_VALUE_USD: float("nan")},
        {S.GROSS_WEIGHT_KG: 1e-320},
        {S.GROSS_WEIGHT_KG: float("inf"), S.LISTED_PRICE_USD: float("inf")},
    ]
    write_raw_day(lay, D, bad + [{S.DECLARED_VALUE: 10.0 + i} for i in range(25)])
    f = build_features(lay, D)
    num = _numeric_features(f)
    assert f.select(pl.col(num).is_nan().any()).row(0) == (False,) * len(num)
    assert f.select((pl.col(num).abs() <= FEATURE_ABS_MAX).all()).row(0) == (True,) * len(num)
    assert f.filter(pl.col(value.VALUE_PER_KG_USD) == FEATURE_ABS_MAX).height >= 2  # inf -> the clip bound
    # the next day's heading norm comes from the day above: finite, near the ordinary rows
    nxt = D + timedelta(days=1)
    write_raw_day(lay, nxt, [{S.DECLARED_VALUE: 12.0}, {S.DECLARED_VALUE: 30.0}])
    g = build_features(lay, nxt)
    assert g[VALUE_PER_KG_VS_HEADING].is_not_null().all()
    assert g[VALUE_PER_KG_VS_HEADING].abs().max() < 2


def test_batched_build_clips_too(tmp_path):
    from riskpipe.features.build import write_features

    lay = Layout(tmp_path / "home")
    write_raw_day(lay, D, [{S.DECLARED_VALUE_USD: float("inf")}, {S.GROSS_WEIGHT_KG: 1e-320}] + [{}] * 6)
    out = tmp_path / "f.parquet"
    write_features(lay, D, None, out, batch_rows=3)
    f = pl.read_parquet(out)
    num = _numeric_features(f)
    assert f.select(pl.col(num).is_finite().fill_null(True).all()).row(0) == (True,) * len(num)


def test_features_file_is_lz4_without_statistics_and_reads_back_equal(tmp_path):
    """The night's features file (both build paths) is written the fast way (LZ4, no column
    statistics: its readers read whole columns) and holds ``build_features``' frame (equal up to the
    last bits of a float sum: the day's value sums are parallel, two builds differ there too)."""
    import pyarrow.parquet as pq
    from polars.testing import assert_frame_equal

    from riskpipe.features.build import write_features

    lay = Layout(tmp_path / "home")
    make_bench_world(lay, D, rows=1_500, history_days=1)
    one = build_features(lay, D)
    for batch_rows in (10_000, 600):
        out = tmp_path / f"out-{batch_rows}" / "features.parquet"
        write_features(lay, D, None, out, batch_rows=batch_rows)
        assert_frame_equal(pl.read_parquet(out), one, check_exact=False, rtol=1e-12)
        meta = pq.ParquetFile(out).metadata
        chunks = [meta.row_group(g).column(c) for g in range(meta.num_row_groups) for c in range(meta.num_columns)]
        assert {ch.compression for ch in chunks} <= {"LZ4", "LZ4_RAW"}
        assert all(ch.statistics is None or not ch.statistics.has_min_max for ch in chunks)


def test_night_writes_the_day_history_after_publishing_and_the_same_tables(tmp_path):
    """The nightly features step leaves the day's history tables to ``history_step`` (run after
    publishing, off the critical path); those equal the by-product of a features build, and the
    features file is the same either way."""
    from polars.testing import assert_frame_equal

    from riskpipe import nightly
    from riskpipe.config import load_settings
    from riskpipe.features import history, value

    lay = Layout(tmp_path / "home")
    make_bench_world(lay, D, rows=1_500, history_days=2)
    by_product = Layout(tmp_path / "by-product")
    make_bench_world(by_product, D, rows=1_500, history_days=2)
    one = build_features(by_product, D)  # writes D's history as a by-product
    assert history.history_current(by_product, D)

    feats = nightly.build_features_step(lay, load_settings(lay.home), D)
    assert_frame_equal(pl.read_parquet(feats), one, check_exact=False, rtol=1e-12)
    assert not history.history_current(lay, D)  # not on the critical path
    assert nightly.history_step(lay, D) is True
    assert history.history_current(lay, D)
    for path in (history.entities_path, value.headings_path):
        assert_frame_equal(
            pl.read_parquet(path(lay, D)), pl.read_parquet(path(by_product, D)), check_exact=False, rtol=1e-12
        )
    assert nightly.history_step(lay, D) is False  # idempotent


def test_sorted_by_id_equals_a_frame_sort_and_flags_the_ids_sorted():
    """The one-batch build sorts its collected frame one column at a time (a whole-frame sort held
    it twice: the step's peak memory); the ids come out flagged sorted, so that the build's final
    sort by id is a no-op instead of a second copy of the wide frame."""
    from polars.testing import assert_frame_equal

    from riskpipe.features.build import sorted_by_id

    ids = [f"X{(i * 7919) % 1000:05d}" for i in range(1000)]
    frame = pl.DataFrame({"a": range(1000), S.SHIPMENT_ID: ids, "b": [i / 3 for i in range(1000)]})
    want = frame.sort(S.SHIPMENT_ID)
    got = sorted_by_id(frame.clone())
    assert_frame_equal(got, want)
    assert got.get_column(S.SHIPMENT_ID).flags["SORTED_ASC"]


def test_id_order_is_the_string_sort_of_the_ids():
    """Ids of one byte length (up to 16 bytes) are sorted as two big-endian words, other ids by
    the string sort: the same permutation either way (bytes order, non-ASCII and NUL included)."""
    import random

    from riskpipe.features.build import id_order

    rng = random.Random(3)
    alphabet = "AZaz09-_\u00e9\u20ac\x00"
    for length in (1, 7, 8, 9, 15, 16, 17, 24):
        ids = sorted({"".join(rng.choice(alphabet) for _ in range(length)) for _ in range(400)})
        rng.shuffle(ids)
        s = pl.Series(S.SHIPMENT_ID, ids, dtype=pl.String)
        assert s.gather(id_order(s)).to_list() == sorted(ids, key=str.encode)
    mixed = pl.Series(S.SHIPMENT_ID, ["b", "ab", "a", "abc", "\u00e9", "a\x00"])
    assert mixed.gather(id_order(mixed)).to_list() == sorted(mixed.to_list(), key=str.encode)
    store_ids = pl.Series(S.SHIPMENT_ID, [f"{p}2603050{i:07d}" for i in range(999, -1, -1) for p in ("LP", "AC")])
    assert id_order(store_ids).equals(store_ids.arg_sort())
    assert id_order(pl.Series(S.SHIPMENT_ID, [], dtype=pl.String)).len() == 0
