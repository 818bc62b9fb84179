"""Why a target is on the list, and its risk as a percentile of the day (the list's own words)."""

from __future__ import annotations

import polars as pl
from polars.testing import assert_frame_equal

from riskpipe import schema as S
from riskpipe.names import ReferenceNames
from riskpipe.web.explain import PCT_BELOW, WHY_KIND, WHY_TEXT, explain_selection


def test_explain_selection_risk_below_cut_exploration_network() -> None:
    # port X: one risk pick (A), its ceiling full (C, 0.8, not picked); port Y: one risk pick (B,
    # 0.02: below the day-wide cut of 0.8 that two risk picks would need) and one exploration
    # (G, chance 1 in 4, listed with A's network N1)
    targets = pl.DataFrame(
        {
            S.RANK: [1, 2, 3],
            S.SHIPMENT_ID: ["A", "G", "B"],
            S.PORT_OF_ENTRY: ["X", "Y", "Y"],
            S.RISK_SCORE: [0.9, 0.0, 0.02],
            S.SELECTION: ["risk", "exploration", "risk"],
            S.NETWORK_ID: ["N1", "N1", None],
            S.SELECTION_PROBABILITY: [1.0, 0.25, 1.0],
        }
    )
    day_scores = pl.Series([0.0, 0.01, 0.02, 0.8, 0.9])  # the day: A 0.9, C 0.8 (not picked), B, F, G
    got = explain_selection(targets, day_scores)
    assert_frame_equal(
        got.select(S.SHIPMENT_ID, PCT_BELOW, WHY_KIND),
        pl.DataFrame(
            {
                S.SHIPMENT_ID: ["A", "G", "B"],
                PCT_BELOW: [80.0, 0.0, 40.0],
                WHY_KIND: ["risk", "exploration · network", "below cut-off"],
            },
            schema_overrides={PCT_BELOW: pl.Float32},
        ),
    )
    text = dict(got.select(S.SHIPMENT_ID, WHY_TEXT).iter_rows())
    assert text["A"] == "Risk: 1 of 1 risk picks at port X; among the day's 2 highest scores"
    assert (
        text["B"].startswith("Below cut-off: 1 of 1 risk picks at port Y")
        and "cut-off of 0.800 for 2 risk picks" in text["B"]
    )
    assert "ports whose ceiling was full" in text["B"]
    assert text["G"].startswith(
        "Exploration: drawn at random among the shipments of port Y not picked by risk, chance 25.0%"
    )
    # a list published before selection_probability existed still explains itself
    old = explain_selection(targets.drop(S.SELECTION_PROBABILITY), day_scores)
    assert dict(old.select(S.SHIPMENT_ID, WHY_TEXT).iter_rows())["G"].startswith(
        "Exploration: drawn at random among the shipments of port Y not picked by risk (keeps"
    )
    assert text["G"].endswith("listed with network N1 right after its best-ranked member (rank 1)")


def test_reference_names_beside_codes() -> None:
    names = ReferenceNames.load()
    assert names.port("4701") == "New York, NY (JFK)"
    assert names.port("9999") == ""
    assert names.hts("8479.89.9499").startswith("Machines with individual functions")  # a risky heading first
    assert names.hts("8517120000") == "Electrical equipment"  # else the HS chapter
    assert names.hts(None) == "" and names.hts("x") == ""


def test_every_port_of_the_default_capacity_table_and_the_synthetic_world_has_a_name() -> None:
    from riskpipe.config import DEFAULT_PORT_CAPACITY
    from riskpipe.synth.places import CANADA_TRUCK_PORTS, PORTS

    names = ReferenceNames.load()
    codes = (
        set(DEFAULT_PORT_CAPACITY)
        | {p for ports in PORTS.values() for p, _ in ports}
        | {p for p, _ in CANADA_TRUCK_PORTS}
    )
    assert sorted(c for c in codes if not names.port(c)) == []
