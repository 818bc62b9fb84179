"""The family registry: both build paths iterate it, so every registered family gives the same
frame in the one-plan build and in the batched build; a new family is one object plus one entry."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from riskpipe import schema as S
from riskpipe.bench.features import make_bench_world
from riskpipe.features import build_features, families, family_fires
from riskpipe.features.build import FEATURE_COLUMNS, feature_columns, write_features
from riskpipe.features.family import DayContext, FamilyDay, NoWork
from riskpipe.features.keys import key_col
from riskpipe.features.testing import write_raw_day
from riskpipe.store import Layout

D = date(2026, 3, 10)


@pytest.fixture(scope="module")
def both_paths(tmp_path_factory) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One day of 3,000 rows (two history days, parties repeating, positive exams of history
    parcels known): the one-plan frame and the file of the batched build (5 batches)."""
    home = tmp_path_factory.mktemp("families")
    lay = Layout(home / "home")
    make_bench_world(lay, D, rows=3_000, history_days=2)
    hist = pl.read_parquet(lay.raw_shipments_day(D - timedelta(days=1)) / "part-0.parquet")
    labels = hist.head(300).select(
        S.SHIPMENT_ID,
        pl.lit(D - timedelta(days=1)).alias(S.EXAM_DATE),
        pl.Series(S.OUTCOME, ["fentanyl", "no_finding", "precursor"] * 100).cast(S.Outcome),
    )
    one = build_features(lay, D, labels)
    out = home / "out" / "features.parquet"
    write_features(lay, D, labels, out, batch_rows=700)
    return one, pl.read_parquet(out)


@pytest.mark.parametrize("family", families.FAMILIES, ids=lambda f: f.name)
def test_both_paths_give_the_same_columns_for_every_family(both_paths, family):
    one, batched = both_paths
    cols = [S.SHIPMENT_ID, *family.columns]
    # floats summed per group in another row order may differ in the last bits (nothing else may)
    assert_frame_equal(batched.select(cols), one.select(cols), check_exact=False, rtol=1e-12)
    assert one.height == 3_000


def test_the_day_exercises_every_family_kind(both_paths):
    """The shared day is not trivial: the whole-day families see repeat parties and positives."""
    one, _ = both_paths
    assert one.get_column("hist_cons_addr_parcels_1d").sum() > 0
    assert one.get_column("hist_shipper_prior_positives").sum() > 0
    assert one.get_column("net_size").max() > 1
    assert one.get_column("consignee_day_parcels").max() > 1
    assert one.get_column(S.NETWORK_ID).is_not_null().any()


def test_registry_declarations_are_consistent():
    assert feature_columns(families.FAMILIES) == FEATURE_COLUMNS
    for f in families.FAMILIES:
        assert set(f.day_columns) <= set(f.columns), f.name
        assert set(f.categorical) <= set(f.columns), f.name
        assert f.reasons and set(f.reasons) <= set(f.columns), f.name
    with pytest.raises(ValueError, match="columns built twice: declared_under_listed, desc_cas_number"):
        feature_columns([*families.FAMILIES, families.FAMILIES[0]])


# --- a toy family, registered only by one entry in the registry ---------------------------------
TOY_LEN = "toy_description_chars"
TOY_AT_ADDRESS = "toy_parcels_at_address_today"
TOY_RANK = "toy_rank_in_day"


class _ToyDay(NoWork):
    def rows(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        return frame.with_columns(pl.col(S.DESCRIPTION).str.len_chars().cast(pl.Int32).alias(TOY_LEN))

    def day_exprs(self) -> list[pl.Expr]:
        return [pl.len().over(key_col("cons_addr")).cast(pl.Int32).alias(TOY_AT_ADDRESS)]

    def day_frame(self, frame: pl.DataFrame) -> pl.DataFrame:
        return frame.with_columns(pl.int_range(0, pl.len(), dtype=pl.Int32).alias(TOY_RANK))


class ToyFamily:
    name = "toy"
    columns = [TOY_LEN, TOY_AT_ADDRESS, TOY_RANK]
    categorical: list[str] = []
    day_columns = [TOY_AT_ADDRESS, TOY_RANK]
    reasons = {TOY_AT_ADDRESS: "three or more parcels to one address today"}

    def fires(self) -> pl.Expr:
        return pl.col(TOY_AT_ADDRESS) >= 3

    def open(self, ctx: DayContext) -> FamilyDay:
        return _ToyDay()


def test_a_toy_family_is_one_registry_entry(tmp_path, monkeypatch):
    monkeypatch.setattr(families, "FAMILIES", [*families.FAMILIES, ToyFamily()])
    lay = Layout(tmp_path / "home")
    rows = [{S.DESCRIPTION: "tea", S.CONSIGNEE_ADDRESS: "1 Elm", S.CONSIGNEE_NAME: f"P{i}"} for i in range(3)]
    rows += [{S.DESCRIPTION: "silicone mold"}, {S.DESCRIPTION: "gift"}]
    write_raw_day(lay, D, rows)
    one = build_features(lay, D)
    assert one.columns == [S.SHIPMENT_ID, S.NETWORK_ID, *FEATURE_COLUMNS, TOY_LEN, TOY_AT_ADDRESS, TOY_RANK]
    assert one.select(TOY_LEN, TOY_AT_ADDRESS, TOY_RANK).rows() == [
        (3, 3, 0),
        (3, 3, 1),
        (3, 3, 2),
        (13, 1, 3),
        (4, 1, 4),
    ]
    out = tmp_path / "features.parquet"
    write_features(lay, D, None, out, batch_rows=2)  # 3 batches
    assert_frame_equal(pl.read_parquet(out), one)
    assert family_fires(one).get_column("toy").to_list() == [True, True, True, False, False]
