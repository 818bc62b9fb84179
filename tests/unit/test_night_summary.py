"""The night's summary: one typed record, written and read back as the same JSON."""

from __future__ import annotations

import json

from riskpipe.nightly import NightSummary


def _summary(**kw) -> NightSummary:
    fields = dict(
        day="2026-02-01",
        shipments=7541,
        targets=470,
        exploration=47,
        top_risk_gaps={"top_n": 470, "not_examined": 104},
        networks_in_targets=12,
        model_version="m1",
        score_mean=0.003,
        score_p99=0.2,
        drift_major=["value_usd"],
        champion_problem=None,
        champion_registered=True,
    )
    return NightSummary(**(fields | kw))


def test_the_summary_round_trips_through_its_json_form():
    night = _summary(champion_problem="model m0 is unsigned", champion_registered=False)
    text = json.dumps(night.as_dict(), indent=1)
    assert list(json.loads(text)) == [
        "day",
        "shipments",
        "targets",
        "exploration",
        "top_risk_gaps",
        "networks_in_targets",
        "model_version",
        "score_mean",
        "score_p99",
        "drift_major",
        "champion_problem",
        "champion_registered",
    ]
    assert NightSummary.from_dict(json.loads(text)) == night


def test_a_record_written_before_the_champion_fields_still_reads():
    old = _summary().as_dict()
    del old["champion_problem"], old["champion_registered"]
    night = NightSummary.from_dict({**old, "unknown": 1})
    assert night.champion_problem is None and night.champion_registered and night.targets == 470
