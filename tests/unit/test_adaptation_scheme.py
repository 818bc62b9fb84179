"""The adaptation study's new-scheme follow-up, its arms and its plot."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

from riskpipe import schema as S
from riskpipe.charts import recall_by_week_png
from riskpipe.evaluation.adaptation import Arm, adaptation_summary, new_schemes, scheme_discovery
from riskpipe.model.evaluate import TRUE_POSITIVE

D0 = date(2026, 2, 1)


def test_new_schemes_are_those_without_positives_in_the_warm_up():
    def day(schemes: list[str | None], pos: list[int]) -> pl.DataFrame:
        return pl.DataFrame({S.SCHEME: schemes, TRUE_POSITIVE: pos}, schema_overrides={TRUE_POSITIVE: pl.Int8})

    truth = {
        D0: day(["a", "b", None], [1, 0, 0]),
        D0 + timedelta(1): day(["a", "b", "c"], [1, 1, 1]),
    }
    assert new_schemes(truth, [D0]) == {"b", "c"}  # b existed but had no positive: new to the labels


def _study() -> pl.DataFrame:
    rows = []
    for arm, found_new in ((Arm("weekly", 0.0), [0] * 20), (Arm("weekly", 0.1, 0.5), [0] * 9 + [1] + [0] * 10)):
        for i in range(20):
            rows.append(
                {
                    "policy": arm.policy,
                    "exploration_share": arm.exploration_share,
                    "novelty_share": arm.novelty_share,
                    "weighted": arm.weighted,
                    "arm": arm.name,
                    "day": D0 + timedelta(i),
                    "positives": 4,
                    "found": 2 if i >= 6 else 1,
                    "shipments": 100,
                    "selected": 5,
                    "new_scheme_positives": 1 if i >= 7 else 0,
                    "new_scheme_found": found_new[i],
                }
            )
    return pl.DataFrame(rows)


def test_scheme_discovery_days_until_first_found_and_recalls():
    out = scheme_discovery(_study(), last_days=14)
    none, novelty = out.row(0, named=True), out.row(1, named=True)
    assert none["arm"] == "weekly, no exploration" and novelty["arm"].endswith("50% of it by novelty")
    assert none["new_scheme_appeared"] == D0 + timedelta(7)
    assert none["new_scheme_first_found"] is None and none["days_to_find"] is None
    assert novelty["new_scheme_first_found"] == D0 + timedelta(9) and novelty["days_to_find"] == 2
    assert novelty["new_scheme_found"] == 1 and novelty["new_scheme_positives"] == 13
    assert none["cumulative_recall"] == (6 * 1 + 14 * 2) / 80
    assert none["recall_last_days"] == 0.5


def test_summary_keeps_the_arms_apart_and_the_plot_is_a_png(tmp_path):
    summary = adaptation_summary(_study())
    assert summary.height == 2 * 3 and summary["new_scheme_found"].sum() == 1
    path = tmp_path / "recall.png"
    series = {
        arm: part.sort("week")["recall_at_capacity"].to_list()
        for (arm,), part in summary.group_by("arm", maintain_order=True)
    }
    recall_by_week_png(series, [1, 2, 3], path, "recall")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 2000


def test_scheme_discovery_shows_the_top_of_the_same_scores_beside_the_list():
    """The list mechanics cost (ports, exploration) is the list's recall minus that of the top
    rows of the same nights' scores: both over the last days."""
    study = _study().with_columns(pl.when(pl.col("day") >= D0 + timedelta(10)).then(3).otherwise(2).alias("top_found"))
    out = scheme_discovery(study, last_days=14).row(0, named=True)
    assert out["recall_last_days"] == 0.5
    assert out["top_recall_last_days"] == (4 * 2 + 10 * 3) / 56
    assert "top_recall_last_days" not in scheme_discovery(_study(), last_days=14).columns
