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


@pytest.mark.parametrize(
    "pieces,match",
    [
        ([["a", "b"], ["c"]], None),
        ([["a"], ["c"]], r"2 scored rows for 3 shipments"),
        ([["c"], ["a", "b"]], r"piece-1.parquet repeats shipments or is out of id order"),
        ([["a", "b"], ["b", "c"]], r"piece-1.parquet repeats shipments or is out of id order"),
    ],
)
def test_combine_pieces_checks_each_piece_without_the_day_s_ids(tmp_path, pieces, match):
    """The pieces are checked one at a time (rows, unique ids, id ranges in order): the step no
    longer holds the day's ids and risks; pieces out of order were streamed out of order."""
    from riskpipe.shard import combine_pieces

    layout = Layout(tmp_path)
    features = write_parquet_atomic(pl.DataFrame({S.SHIPMENT_ID: ["a", "b", "c"]}), tmp_path / "features.parquet")
    files = [
        str(
            write_parquet_atomic(
                pl.DataFrame(
                    {S.SHIPMENT_ID: ids, S.RISK_SCORE: [0.5] * len(ids), S.MODEL_VERSION: ["rules-only"] * len(ids)}
                ),
                tmp_path / f"piece-{i}.parquet",
            )
        )
        for i, ids in enumerate(pieces)
    ]
    settings = load_settings(layout.home)
    if match is None:
        out = combine_pieces(layout, settings, DAY, files, features, tmp_path / "scored.parquet", top_n=0)
        assert pl.read_parquet(out)[S.SHIPMENT_ID].to_list() == ["a", "b", "c"]
    else:
        with pytest.raises(ValueError, match=match):
            combine_pieces(layout, settings, DAY, files, features, tmp_path / "scored.parquet", top_n=0)
