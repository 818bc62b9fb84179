"""The synthetic world's ground truth (``truth/``): read here and nowhere else in riskpipe."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import polars as pl

from riskpipe import schema as S
from riskpipe.holdout import TruthReader
from riskpipe.model.evaluate import TRUE_POSITIVE
from riskpipe.store import Layout


def read_truth(layout: Layout, days: Sequence[date]) -> pl.DataFrame | None:
    """Ground truth of the synthetic world for ``days`` (evaluation only), or None."""
    files = [layout.partition(layout.truth, d) / "truth.parquet" for d in days]
    files = [f for f in files if f.exists()]
    if not files:
        return None
    return pl.concat([pl.read_parquet(f, columns=[S.SHIPMENT_ID, S.TRUE_CLASS]) for f in files]).select(
        S.SHIPMENT_ID,
        pl.col(S.TRUE_CLASS).cast(pl.String).is_in(S.POSITIVE_OUTCOMES).cast(pl.Int8).alias(TRUE_POSITIVE),
    )


def read_truth_day(layout: Layout, day: date) -> pl.DataFrame | None:
    """Shipment, ``true_class``, ``scheme`` and ``true_positive`` of one day, or None without a
    truth file (the adaptation study follows new schemes with it)."""
    path = layout.partition(layout.truth, day) / "truth.parquet"
    if not path.exists():
        return None
    return pl.read_parquet(path, columns=[S.SHIPMENT_ID, S.TRUE_CLASS, S.SCHEME]).with_columns(
        pl.col(S.TRUE_CLASS).cast(pl.String).is_in(S.POSITIVE_OUTCOMES).cast(pl.Int8).alias(TRUE_POSITIVE)
    )


def truth_reader(layout: Layout) -> TruthReader:
    """``read_truth`` bound to ``layout``: the truth view's source for retraining's evaluation."""
    return lambda days: read_truth(layout, days)
