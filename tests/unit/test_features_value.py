from __future__ import annotations

import math
from datetime import date

import polars as pl
import pytest

from riskpipe import schema as S
from riskpipe.features import value as V
from riskpipe.features.testing import raw_frame

DAY = date(2026, 1, 6)


def run(rows: list[dict], norms: pl.DataFrame | None = None) -> pl.DataFrame:
    n = V.empty_norms() if norms is None else norms.lazy()
    return V.add_value(raw_frame(rows, DAY).lazy(), n).collect().sort(S.SHIPMENT_ID)  # joins may reorder


def test_value_per_kg_and_piece():
    f = run([{S.DECLARED_VALUE: 100.0, S.GROSS_WEIGHT_KG: 4.0, S.PIECE_COUNT: 5}])
    assert f.row(0, named=True)[V.VALUE_PER_KG_USD] == 25.0
    assert f.row(0, named=True)[V.VALUE_PER_PIECE_USD] == 20.0
    assert f.row(0, named=True)[V.DECLARED_VALUE_USD] == 100.0


def test_round_values_and_just_under_800():
    f = run([{S.DECLARED_VALUE: v} for v in (50.0, 49.99, 5.0, 790.0, 800.0, 799.5)])
    assert f.get_column(V.VALUE_ROUND).to_list() == [1, 0, 0, 1, 1, 0]
    assert f.get_column(V.VALUE_JUST_UNDER_800).to_list() == [0, 0, 0, 1, 0, 1]


def test_800_per_person_per_day_aggregate():
    same = {S.CONSIGNEE_NAME: "Ana Cruz", S.CONSIGNEE_ADDRESS: "7 Oak Ave"}
    f = run(
        [
            {**same, S.DECLARED_VALUE: 500.0},
            {**same, S.CONSIGNEE_NAME: "ANA  CRUZ", S.DECLARED_VALUE: 400.0},  # same person, other spelling
            {S.CONSIGNEE_NAME: "Bo Li", S.CONSIGNEE_ADDRESS: "7 Oak Ave", S.DECLARED_VALUE: 900.0},  # alone
            {S.CONSIGNEE_NAME: "Cy", S.CONSIGNEE_ADDRESS: "1 Elm", S.DECLARED_VALUE: 300.0},
            {S.CONSIGNEE_NAME: "Cy", S.CONSIGNEE_ADDRESS: "1 Elm", S.DECLARED_VALUE: 300.0},
        ]
    )
    assert f.get_column(V.CONSIGNEE_DAY_PARCELS).to_list() == [2, 2, 1, 2, 2]
    assert f.get_column(V.CONSIGNEE_DAY_VALUE_USD).to_list() == [900.0, 900.0, 900.0, 600.0, 600.0]
    assert f.get_column(V.CONSIGNEE_DAY_OVER_800).to_list() == [1, 1, 0, 0, 0]


def test_value_against_heading_norm_from_history():
    # history of heading 6109: 20 parcels at ln((9+1)/1) and 20 at ln((99+1)/1) -> mean ln(sqrt(1000))
    hist = raw_frame([{S.DECLARED_VALUE: 9.0}] * 20 + [{S.DECLARED_VALUE: 99.0}] * 20, date(2026, 1, 5))
    norms = V.norms_from_history(V.heading_day_aggregates(hist.lazy())).collect()
    assert norms.height == 1
    assert norms.item(0, V.NORM_LOG_VPK) == pytest.approx(math.log(math.sqrt(1000.0)))
    f = run([{S.DECLARED_VALUE: 9.0}, {S.DECLARED_VALUE: 9.0, S.HTS_CODE: "2933399100"}], norms)
    assert f.item(0, V.VALUE_PER_KG_VS_HEADING) == pytest.approx(math.log(10) - math.log(math.sqrt(1000.0)))
    assert f.item(0, V.VALUE_PER_PIECE_VS_HEADING) == pytest.approx(math.log(10) - math.log(math.sqrt(1000.0)))
    assert f.item(1, V.VALUE_PER_KG_VS_HEADING) is None  # no norm for 2933


def test_heading_norm_needs_enough_parcels():
    hist = raw_frame([{S.DECLARED_VALUE: 9.0}] * (V.MIN_NORM_COUNT - 1), date(2026, 1, 5))
    norms = V.norms_from_history(V.heading_day_aggregates(hist.lazy())).collect()
    assert norms.item(0, V.NORM_LOG_VPK) is None


def test_a_person_s_day_value_does_not_depend_on_the_order_of_the_day_s_rows():
    """The day's rows arrive in an order that varies between builds (files, threads): a float sum
    in row order changed a person's day value in its last bit, and with it the score, so a day's
    provisional and nightly scores differed. The sum is exact (whole micro-dollars)."""
    import numpy as np

    from riskpipe.features.keys import key_col

    rng = np.random.default_rng(7)
    n = 3_000
    frame = pl.DataFrame(
        {
            "_row": np.arange(n),
            key_col("cons_name"): rng.integers(0, 40, n).astype(np.uint64),
            key_col("cons_addr"): rng.integers(0, 3, n).astype(np.uint64),
            S.DECLARED_VALUE_USD: rng.lognormal(3, 2, n) * 1.37,  # after a currency conversion
        }
    )
    want = frame.with_columns(*V.day_exprs()).sort("_row")
    for seed in range(5):
        shuffled = frame.sample(fraction=1.0, shuffle=True, seed=seed)
        got = shuffled.with_columns(*V.day_exprs()).sort("_row")
        assert got.equals(want)
    # still the day's value: a person's parcels added up (to the micro-dollar)
    one = want.filter((pl.col(key_col("cons_name")) == 0) & (pl.col(key_col("cons_addr")) == 0))
    assert abs(one[V.CONSIGNEE_DAY_VALUE_USD][0] - one[S.DECLARED_VALUE_USD].sum()) < 1e-6 * one.height


def test_a_day_value_with_values_beyond_the_exact_sum_is_still_their_sum():
    """Infinite, NaN, null and huge declared values (validation lets a manifest carry some) are
    added as floats beside the exact micro-dollar sum, as the plain sum added them."""
    from riskpipe.features.keys import key_col

    values = [10.5, float("inf"), 2.25, float("nan"), 3.0, None, 4e12, 1.0]
    person = [0, 0, 1, 1, 2, 2, 3, 3]
    frame = pl.DataFrame(
        {key_col("cons_name"): person, key_col("cons_addr"): [7] * 8, S.DECLARED_VALUE_USD: values},
        schema={key_col("cons_name"): pl.UInt64, key_col("cons_addr"): pl.UInt64, S.DECLARED_VALUE_USD: pl.Float64},
    )
    got = frame.with_columns(*V.day_exprs())[V.CONSIGNEE_DAY_VALUE_USD].to_list()
    assert got[0] == got[1] == float("inf")
    assert math.isnan(got[2]) and math.isnan(got[3])
    assert got[4] == got[5] == 3.0
    assert got[6] == got[7] == 4e12 + 1.0


def test_heading_norms_do_not_depend_on_the_order_or_the_files_of_the_history(tmp_path):
    """Two builds of one day (provisional and nightly, whole and shards) read the same heading
    tables: a float sum of the days' sums, added by the streaming engine in the order its threads
    finish, changed a norm in its last bit from one read to the next (value_per_kg_vs_heading
    differed in 2 builds of 10), and with it a score. The sum is exact."""
    import numpy as np

    rng = np.random.default_rng(5)
    headings = [f"{h:04d}" for h in range(6100, 6112)]
    days = []
    for _ in range(V.NORM_WINDOW_DAYS):
        n = rng.integers(0, 400, len(headings))
        days.append(
            pl.DataFrame(
                {
                    V.HEADING: headings,
                    "n_vpk": n,
                    "sum_log_vpk": n * rng.normal(2.0, 3.0, len(headings)) * np.exp(rng.normal(0, 4, len(headings))),
                    "n_vpp": n + 1,
                    "sum_log_vpp": (n + 1) * rng.normal(1.0, 2.0, len(headings)),
                }
            )
        )
    for d, frame in enumerate(days):
        frame.write_parquet(tmp_path / f"day={d:02d}.parquet", row_group_size=3)
    history = pl.concat(days)
    reads = [pl.scan_parquet(tmp_path / "day=*.parquet")] * 40 + [
        history.reverse().lazy(),
        history.sample(fraction=1.0, shuffle=True, seed=2).lazy(),
    ]
    got = {tuple(V.norms_from_history(read).collect().sort(V.HEADING).iter_rows()) for read in reads}
    assert len(got) == 1
    norms = {row[0]: row[1:] for row in got.pop()}
    for h in headings:  # still the mean of the logs: the exact sum over the exact count
        mine = history.filter(pl.col(V.HEADING) == h)
        for n_col, s_col, norm in (("n_vpk", "sum_log_vpk", 0), ("n_vpp", "sum_log_vpp", 1)):
            want = math.fsum(mine[s_col]) / mine[n_col].sum()
            assert norms[h][norm] == pytest.approx(want, rel=1e-15, abs=1e-300)


def test_a_heading_norm_over_a_non_finite_sum_is_null():
    """A history table written before non-finite log values were dropped may hold an inf (or
    NaN) sum: that heading has no norm, the others keep theirs."""
    days = pl.DataFrame(
        {
            V.HEADING: ["6109", "6109", "8517", "8517", "9503"],
            "n_vpk": [30, 30, 30, 30, 30],
            "sum_log_vpk": [float("inf"), 3.0, float("nan"), 1.0, 60.0],
            "n_vpp": [30, 30, 30, 30, 30],
            "sum_log_vpp": [1.0, 2.0, 3.0, 4.0, -1e300],
        }
    )
    norms = V.norms_from_history(days.lazy()).collect().sort(V.HEADING)
    assert norms[V.NORM_LOG_VPK].to_list() == [None, None, 2.0]
    assert norms[V.NORM_LOG_VPP].to_list() == [3.0 / 60, 7.0 / 60, -1e300 / 30]


def test_a_day_s_heading_sums_do_not_depend_on_the_order_or_the_chunks_of_the_day(tmp_path):
    """The day's heading table (history, read by the next 30 nights' norms) is the same whatever
    order the streaming engine's threads add the day's rows in, and whether the day is added in
    one pass or chunk by chunk (the bounded history build): a float sum differed in its last bit."""
    import numpy as np

    rng = np.random.default_rng(9)
    n = 5_000
    raw = pl.DataFrame(
        {
            V.HEADING: rng.choice(["6109", "8517", "9503", None], n),
            V.LOG_VPK: rng.normal(2.0, 3.0, n) ** 3,
            V.LOG_VPP: rng.normal(1.0, 0.5, n) * np.exp(rng.normal(0.0, 3.0, n)),
        }
    ).with_columns(pl.when(pl.int_range(pl.len()) % 20 != 3).then(pl.col(V.LOG_VPK)).alias(V.LOG_VPK))
    raw.write_parquet(tmp_path / "day.parquet", row_group_size=50)
    reads = [pl.scan_parquet(tmp_path / "day.parquet")] * 30 + [
        raw.reverse().lazy(),
        raw.sample(fraction=1.0, shuffle=True, seed=4).lazy(),
    ]
    got = {tuple(V.heading_aggregates(read).collect().sort(V.HEADING).iter_rows()) for read in reads}
    assert len(got) == 1
    chunks = pl.concat([V.heading_units(raw.slice(s, 333).lazy()).collect() for s in range(0, n, 333)])
    assert V.heading_sums(chunks.lazy()).collect().sort(V.HEADING).rows() == list(next(iter(got)))
    for heading, n_vpk, sum_vpk, n_vpp, sum_vpp in got.pop():  # still the sums of the logs
        mine = raw.filter(pl.col(V.HEADING) == heading)
        assert (n_vpk, n_vpp) == (mine[V.LOG_VPK].count(), mine[V.LOG_VPP].count())
        assert sum_vpk == pytest.approx(math.fsum(mine[V.LOG_VPK].drop_nulls()), rel=1e-15)
        assert sum_vpp == pytest.approx(math.fsum(mine[V.LOG_VPP]), rel=1e-15)
