"""The share of random compliance exams is a setting of the synthetic world (issue 13: the demo's
random-exam view must hold enough positives to judge the model), 1 % by default, and the demo
says which share it used."""

from __future__ import annotations

import inspect
from datetime import date

import polars as pl
import pytest

from riskpipe import schema as S
from riskpipe.errors import RiskpipeError
from riskpipe.store import Layout
from riskpipe.synth import generate
from riskpipe.synth.exams import RANDOM_SHARE

START = date(2026, 1, 5)


def _random_share(layout: Layout) -> float:
    o = pl.read_csv(layout.landing / "outcomes" / "*.csv", infer_schema=False)
    truth = pl.read_parquet(layout.truth / "*" / "truth.parquet")
    examined_days = o[S.EXAM_DATE].unique().to_list()
    shipments = truth.filter(pl.col(S.ARRIVAL_DATE).cast(pl.String).is_in(examined_days)).height
    return int((o[S.EXAM_REASON] == "random").sum()) / shipments


def test_random_exam_share_sets_how_many_parcels_get_a_random_exam(tmp_path):
    default, high = Layout(tmp_path / "a"), Layout(tmp_path / "b")
    generate(default, START, 3, 3000, seed=1)
    generate(high, START, 3, 3000, seed=1, random_exam_share=0.2)
    assert _random_share(default) == pytest.approx(RANDOM_SHARE, abs=0.004)
    assert _random_share(high) == pytest.approx(0.2, abs=0.015)


def test_random_exam_share_out_of_range_is_refused(tmp_path):
    with pytest.raises(RiskpipeError, match="--random-exam-share"):
        generate(Layout(tmp_path), START, 1, 100, seed=1, random_exam_share=0.9)


def test_the_cli_defaults_are_the_generator_and_demo_settings():
    from flows.demo import DEMO_RANDOM_EXAM_SHARE, demo_flow
    from riskpipe.cli import world

    assert world.RANDOM_EXAM_SHARE == RANDOM_SHARE
    assert world.DEMO_RANDOM_EXAM_SHARE == DEMO_RANDOM_EXAM_SHARE
    assert inspect.signature(world.demo).parameters["random_exam_share"].default == DEMO_RANDOM_EXAM_SHARE
    assert inspect.signature(demo_flow.fn).parameters["random_exam_share"].default == DEMO_RANDOM_EXAM_SHARE
    assert inspect.signature(world.generate).parameters["random_exam_share"].default == RANDOM_SHARE
