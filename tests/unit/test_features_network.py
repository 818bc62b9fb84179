from __future__ import annotations

from datetime import date

import polars as pl

from riskpipe import schema as S
from riskpipe.features import build_features
from riskpipe.features import network as N
from riskpipe.features.testing import write_raw_day
from riskpipe.store import Layout

D = date(2026, 3, 10)


def test_components_by_label_propagation():
    # chain 0-1 (a), 1-2 (b), 2-3 (a2): one component; 4 alone; 5-6 (c)
    frame = pl.DataFrame(
        {
            "k1": [1, 1, None, 7, None, 9, 9],
            "k2": [None, 2, 2, None, 8, None, None],
            "k3": [None, None, 3, 3, None, None, None],
        },
        schema={"k1": pl.UInt64, "k2": pl.UInt64, "k3": pl.UInt64},
    )
    assert N.components(frame, ["k1", "k2", "k3"]).to_list() == [0, 0, 0, 0, 4, 5, 5]


def test_same_value_in_different_identifier_kinds_does_not_link():
    frame = pl.DataFrame({"k1": [1, None], "k2": [None, 1]}, schema={"k1": pl.UInt64, "k2": pl.UInt64})
    assert N.components(frame, ["k1", "k2"]).to_list() == [0, 1]


def test_oversized_identifier_groups_link_nothing():
    frame = pl.DataFrame({"k": [5, 5, 5, 6, 6]}, schema={"k": pl.UInt64})
    assert N.components(frame, ["k"], max_group=2).to_list() == [0, 1, 2, 3, 3]


def test_network_features_and_id(tmp_path):
    lay = Layout(tmp_path)
    write_raw_day(lay, date(2026, 3, 8), [{S.CONSIGNEE_ADDRESS: "1 Elm"}] * 14)
    write_raw_day(
        lay,
        D,
        [
            {S.CONSIGNEE_ADDRESS: "1 Elm", S.SHIPPER_NAME: "A", S.SHIPMENT_ID: "X3"},
            {S.CONSIGNEE_ADDRESS: "2 Oak", S.SHIPPER_NAME: "B", S.SHIPMENT_ID: "X2", S.CONSIGNEE_PHONE: "555 0101 999"},
            {S.CONSIGNEE_ADDRESS: "1 Elm", S.SHIPPER_NAME: "B", S.SHIPMENT_ID: "X9", S.CONSIGNEE_PHONE: "5550101999"},
            {S.CONSIGNEE_ADDRESS: "3 Ash", S.SHIPPER_NAME: "C", S.SHIPMENT_ID: "X1", S.SELLER_ID: "s9"},
            {S.CONSIGNEE_ADDRESS: "4 Fir", S.SHIPPER_NAME: "D", S.SHIPMENT_ID: "X0"},
            {S.CONSIGNEE_ADDRESS: "5 Yew", S.SHIPPER_NAME: "E", S.SHIPMENT_ID: "X5", S.SELLER_ID: "s9"},
        ],
    )
    f = build_features(lay, D)
    assert f.get_column(S.SHIPMENT_ID).to_list() == ["X0", "X1", "X2", "X3", "X5", "X9"]
    assert f.get_column(S.NETWORK_ID).to_list() == [None, "N-X1", "N-X2", "N-X2", "N-X1", "N-X2"]
    assert f.get_column(N.NET_SIZE).to_list() == [1, 2, 3, 3, 2, 3]
    assert f.get_column(N.NET_SHIPPERS).to_list() == [1, 2, 2, 2, 2, 2]
    assert f.get_column(N.NET_CONSIGNEES).to_list() == [1, 2, 2, 2, 2, 2]
    # 1 Elm had 14 parcels 2 days before: counted once for the group
    assert f.get_column(N.NET_PRIOR_PARCELS_7D).to_list() == [0, 0, 14, 14, 0, 14]
    assert f.get_column(N.NET_GROWTH_RATIO).to_list() == [1.0, 2.0, 1.0, 1.0, 2.0, 1.0]
    assert f.get_column(N.NET_TOUCHES_POSITIVE).to_list() == [0] * 6
    lab = pl.DataFrame(
        {S.SHIPMENT_ID: ["S0308-0000"], S.EXAM_DATE: [date(2026, 3, 9)], S.OUTCOME: ["fentanyl"]},
        schema={S.SHIPMENT_ID: pl.String, S.EXAM_DATE: pl.Date, S.OUTCOME: S.Outcome},
    )
    g = build_features(lay, D, lab)
    assert g.get_column(N.NET_TOUCHES_POSITIVE).to_list() == [0, 0, 1, 1, 0, 1]
