"""Combining shard scores: a mismatch with the day's shipments is a one-line error."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from riskpipe import schema as S
from riskpipe.config import load_settings
from riskpipe.shard import combine_shards
from riskpipe.store import Layout, write_parquet_atomic

DAY = date(2026, 1, 5)


def test_combine_refuses_shards_that_miss_shipments_of_the_day(tmp_path):
    layout = Layout(tmp_path)
    features = write_parquet_atomic(pl.DataFrame({S.SHIPMENT_ID: ["a", "b", "c"]}), tmp_path / "features.parquet")
    shard = write_parquet_atomic(
        pl.DataFrame({S.SHIPMENT_ID: ["a", "c"], S.RISK_SCORE: [0.2, 0.1]}), tmp_path / "shard-0.parquet"
    )
    with pytest.raises(ValueError, match=r"shards of 2026-01-05: 2 scored rows for 3 shipments of the day"):
        combine_shards(layout, load_settings(layout.home), DAY, [str(shard)], features, tmp_path / "scored.parquet")
