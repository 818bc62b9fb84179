"""The health page's score level of a day is the night summary's figure, the same on every read:
a float mean summed by the streaming engine in the order its threads finish changed in its last
bit from one read of a scores file to the next (9 reads in 100 of a 5,000-row file of 50-row
groups), so the page's chart cache, keyed by the figures, missed and drew the charts again."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest

from riskpipe import schema as S
from riskpipe.config import load_settings
from riskpipe.report import DayFigures
from riskpipe.store import Layout
from riskpipe.web.health import HealthData

DAY = date(2026, 3, 2)


def test_a_day_s_mean_score_is_the_summary_s_on_every_read(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    layout = Layout(home)
    rng = np.random.default_rng(0)
    n = 5_000
    values = np.round(rng.random(n) * np.where(rng.random(n) < 0.3, 1.0, 0.4), 2)
    scores = pl.DataFrame({S.SHIPMENT_ID: [f"S{i:05d}" for i in range(n)], S.RISK_SCORE: values})
    path = layout.day_dir(layout.scores, DAY) / "scores.parquet"
    path.parent.mkdir(parents=True)
    scores.write_parquet(path, row_group_size=50)
    data = HealthData(load_settings(home), reason_texts={})
    means = {v["mean_score"] for _ in range(40) for v in data.volumes()}
    raw = pl.DataFrame({S.MODE: ["post"] * n, S.PORT_OF_ENTRY: ["JFK"] * n})
    assert means == {DayFigures.of(pl.scan_parquet(path), raw).score_mean}
    assert means.pop() == pytest.approx(float(np.mean(values)), rel=1e-15)
