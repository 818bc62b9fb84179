"""Network indicators: connected groups of the day's shipments linked by shared identifiers
(consignee address key, phones, emails, account IP, seller).

Connected components of the bipartite graph shipments - shared identifiers, with scipy's
compiled ``connected_components`` (no loop per row).
An identifier shared by more shipments of the day than its cap (a forwarder's address, a carrier
hub) links nothing, and shipper-side identifiers (seller, shipper phone and email) link only while
the shipper or seller is new (first seen at most ``NEW_PARTY_DAYS`` ago): an established seller
sells to thousands of unrelated buyers and would glue all trade into one giant group, while
illicit cells rotate new shippers and sellers.
The group id becomes ``network_id``: ``"N-"`` + the smallest shipment id of the group
(deterministic; null for a shipment linked to no other).
"""

from __future__ import annotations

import polars as pl

from riskpipe import schema as S
from riskpipe.features import history as H
from riskpipe.features.family import DayContext, FamilyDay, NoWork
from riskpipe.features.keys import LINK_KEYS, key_col

NET_SIZE = "net_size"
NET_SHIPPERS = "net_distinct_shippers"
NET_CONSIGNEES = "net_distinct_consignees"
NET_PRIOR_PARCELS_7D = "net_prior_parcels_7d"
NET_GROWTH_RATIO = "net_growth_ratio"
NET_TOUCHES_POSITIVE = "net_touches_positive"

COLUMNS = [NET_SIZE, NET_SHIPPERS, NET_CONSIGNEES, NET_PRIOR_PARCELS_7D, NET_GROWTH_RATIO, NET_TOUCHES_POSITIVE]

DEFAULT_MAX_GROUP = 200
#: per identifier kind: the largest group of shipments of the day it may link
LINK_CAPS: dict[str, int] = {
    # consignee side: a household's own parcels link; a bigger shared identifier bridges households
    # into one giant group (measured on the synthetic world: an IP cap of 10 already percolates)
    "cons_addr": 10,
    "cons_phone": 5,
    "cons_email": 5,
    "account_ip": 5,
    "seller": 50,
    "shipper_phone": 50,
    "shipper_email": 50,
}
NEW_PARTY_DAYS = 7
_SHIPPER_SIDE = {"seller": "seller", "shipper_phone": "shipper", "shipper_email": "shipper"}
_NODE = "_node"
_GROUP = "_group"
_LABEL = "_label"


def components(frame: pl.DataFrame, link_cols: list[str], max_group: int | list[int] = DEFAULT_MAX_GROUP) -> pl.Series:
    """Component label (smallest row index of the component) of every row of ``frame``.

    ``link_cols``: hashed identifier columns; two rows sharing a non-null value of one column
    are linked when the column's group has at most ``max_group`` (one cap, or one per column) rows.
    Each row of a group is linked to the group's first row (a star: same components as the
    bipartite rows-identifiers graph, with no identifier nodes to number), then
    ``scipy.sparse.csgraph.connected_components`` (compiled, linear in the links) on int32 indices."""
    import numpy as np
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = frame.height
    caps = [max_group] * len(link_cols) if isinstance(max_group, int) else list(max_group)
    node = pl.int_range(0, pl.len(), dtype=pl.Int32).alias(_NODE)
    edges = pl.concat(
        [
            frame.lazy()
            .select(node, pl.col(c).alias(_GROUP))
            .drop_nulls(_GROUP)
            .filter(pl.len().over(_GROUP).is_between(2, cap))
            .select(_NODE, pl.col(_NODE).min().over(_GROUP).alias("_root"))
            .filter(pl.col(_NODE) != pl.col("_root"))
            for c, cap in zip(link_cols, caps, strict=True)
        ]
    ).collect()
    if edges.height == 0:
        return pl.Series(_LABEL, np.arange(n), dtype=pl.UInt32)
    rows = edges.get_column(_NODE).to_numpy()
    cols = edges.get_column("_root").to_numpy()
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    # label = smallest row index of the component (rows are visited in order: first hit is smallest)
    _, first = np.unique(comp, return_index=True)
    return pl.Series(_LABEL, first[comp], dtype=pl.UInt32)


def link_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """The identifiers that may link, per kind (shipper-side ones only for new parties)."""
    exprs = []
    for kind in LINK_KEYS:
        c = pl.col(key_col(kind))
        if kind in _SHIPPER_SIDE:
            new = pl.col(H.first_seen_col(_SHIPPER_SIDE[kind])) <= NEW_PARTY_DAYS
            c = pl.when(new).then(c)
        exprs.append(c.alias(kind))
    return frame.select(exprs)


def add_network(frame: pl.DataFrame, caps: dict[str, int] | None = None) -> pl.DataFrame:
    """Add the network family and ``network_id`` to today's frame, which must be sorted by
    shipment id and carry the ``_key_*`` link columns and the history columns."""
    caps = {**LINK_CAPS, **(caps or {})}
    comp = components(link_columns(frame), list(LINK_KEYS), [caps[k] for k in LINK_KEYS])
    # consignee-side parties only: a big shipper or seller linked to one positive would taint the
    # whole group through its unrelated parcels
    prior_pos = pl.any_horizontal(pl.col(H.positives_col(e)) > 0 for e in ("cons_addr", "cons_name", "cons_phone"))
    addr = key_col("cons_addr")
    p7 = H.parcels_col("cons_addr", 7)
    f = frame.select(addr, key_col("shipper"), p7, prior_pos.alias("_pos"), comp.alias(_LABEL))
    groups = f.group_by(_LABEL).agg(
        pl.len().cast(pl.Int32).alias(NET_SIZE),
        pl.col(key_col("shipper")).n_unique().cast(pl.Int32).alias(NET_SHIPPERS),
        pl.col(addr).n_unique().cast(pl.Int32).alias(NET_CONSIGNEES),
        pl.col("_pos").any().cast(pl.Int8).alias(NET_TOUCHES_POSITIVE),
    )
    # the 7-day parcels of each distinct consignee address of the group, counted once per address
    prior7 = (
        f.filter(pl.col(addr).is_not_null())
        .unique([_LABEL, addr])
        .group_by(_LABEL)
        .agg(pl.col(p7).sum().cast(pl.Int32).alias(NET_PRIOR_PARCELS_7D))
    )
    looked = (
        f.select(_LABEL)
        .join(groups, on=_LABEL, how="left", maintain_order="left")
        .join(prior7, on=_LABEL, how="left", maintain_order="left")
        .with_columns(pl.col(NET_PRIOR_PARCELS_7D).fill_null(0))
        .with_columns(
            (pl.col(NET_SIZE) / (1.0 + pl.col(NET_PRIOR_PARCELS_7D) / 7.0)).alias(NET_GROWTH_RATIO),
            # frame is sorted by shipment id, so the group's smallest row holds its smallest id
            pl.when(pl.col(NET_SIZE) > 1)
            .then(pl.concat_str(pl.lit("N-"), frame.get_column(S.SHIPMENT_ID).gather(comp)))
            .alias(S.NETWORK_ID),
        )
    )
    return frame.with_columns(looked.select(S.NETWORK_ID, *COLUMNS).get_columns())


def fires() -> pl.Expr:
    """A group whose consignee-side parties touch a past positive."""
    return pl.col(NET_TOUCHES_POSITIVE) == 1


class _Groups(NoWork):
    def day_frame(self, frame: pl.DataFrame) -> pl.DataFrame:
        return add_network(frame)


class NetworkFamily:
    """Whole-day: groups of the day's shipments; reads the history family's columns (so it is
    listed after it) and adds ``network_id`` beside its columns."""

    name = "network"
    columns = COLUMNS
    categorical: list[str] = []
    day_columns = COLUMNS
    reasons = {NET_TOUCHES_POSITIVE: "its network's consignees were linked to an earlier positive exam"}

    def fires(self) -> pl.Expr:
        return fires()

    def open(self, ctx: DayContext) -> FamilyDay:
        return _Groups()


FAMILY = NetworkFamily()
