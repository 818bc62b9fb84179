"""Network indicators: connected groups of the day's shipments linked by shared identifiers
(consignee address key, phones, emails, account IP, seller).

Connected components by iterative min-label propagation with Polars joins (no loop per row).
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
    "cons_addr": 10, "cons_phone": 5, "cons_email": 5, "account_ip": 5,
    "seller": 50, "shipper_phone": 50, "shipper_email": 50,
}
NEW_PARTY_DAYS = 7
_SHIPPER_SIDE = {"seller": "seller", "shipper_phone": "shipper", "shipper_email": "shipper"}
MAX_ITERATIONS = 200
_NODE = "_node"
_GROUP = "_group"
_LABEL = "_label"


def components(frame: pl.DataFrame, link_cols: list[str], max_group: int | list[int] = DEFAULT_MAX_GROUP) -> pl.Series:
    """Component label (smallest row index of the component) of every row of ``frame``.

    ``link_cols``: hashed identifier columns; two rows sharing a non-null value of one column
    are linked when the column's group has at most ``max_group`` (one cap, or one per column) rows."""
    n = frame.height
    caps = [max_group] * len(link_cols) if isinstance(max_group, int) else list(max_group)
    nodes = pl.DataFrame({_NODE: pl.arange(0, n, eager=True, dtype=pl.UInt32)})
    members = pl.concat(
        [
            frame.select(pl.col(c).alias(_GROUP))
            .with_columns(pl.arange(0, n, dtype=pl.UInt32).alias(_NODE))
            .drop_nulls(_GROUP)
            .filter(pl.len().over(_GROUP).is_between(2, cap))
            .with_columns(pl.col(_GROUP).hash(seed=i))  # separate namespaces per identifier kind
            for i, (c, cap) in enumerate(zip(link_cols, caps, strict=True))
        ]
    ).select(_NODE, _GROUP)
    labels = nodes.with_columns(pl.col(_NODE).alias(_LABEL))
    if members.height == 0:
        return labels.get_column(_LABEL)
    # start: each node's label = the smallest node of any of its groups
    for _ in range(MAX_ITERATIONS):
        group_min = members.join(labels, on=_NODE).group_by(_GROUP).agg(pl.col(_LABEL).min())
        node_min = members.join(group_min, on=_GROUP).group_by(_NODE).agg(pl.col(_LABEL).min().alias("_new"))
        # pointer jumping: a label's own label (shortcuts long chains)
        node_min = node_min.join(labels.rename({_NODE: "_new", _LABEL: "_jump"}), on="_new").select(
            _NODE, pl.min_horizontal("_new", "_jump").alias("_new")
        )
        merged = labels.join(node_min, on=_NODE, how="left").with_columns(
            pl.min_horizontal(_LABEL, "_new").alias("_next")
        )
        changed = merged.select((pl.col("_next") != pl.col(_LABEL)).sum()).item()
        labels = merged.select(_NODE, pl.col("_next").alias(_LABEL)).sort(_NODE)
        if changed == 0:
            break
    return labels.get_column(_LABEL)


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
    f = frame.with_columns(comp.alias(_LABEL))
    size = pl.len().over(_LABEL)
    # consignee-side parties only: a big shipper or seller linked to one positive would taint the
    # whole group through its unrelated parcels
    prior_pos = pl.any_horizontal(pl.col(H.positives_col(e)) > 0 for e in ("cons_addr", "cons_name", "cons_phone"))
    # the 7-day parcels of each distinct consignee address of the group, counted once per address
    addr = key_col("cons_addr")
    first_of_addr = pl.col(addr).is_first_distinct().over(_LABEL) & pl.col(addr).is_not_null()
    prior7 = pl.when(first_of_addr).then(pl.col(H.parcels_col("cons_addr", 7))).otherwise(0).sum().over(_LABEL)
    f = f.with_columns(
        size.cast(pl.Int32).alias(NET_SIZE),
        pl.col(key_col("shipper")).n_unique().over(_LABEL).cast(pl.Int32).alias(NET_SHIPPERS),
        pl.col(addr).n_unique().over(_LABEL).cast(pl.Int32).alias(NET_CONSIGNEES),
        prior7.cast(pl.Int32).alias(NET_PRIOR_PARCELS_7D),
        prior_pos.any().over(_LABEL).cast(pl.Int8).alias(NET_TOUCHES_POSITIVE),
        pl.when(size > 1)
        .then(pl.concat_str(pl.lit("N-"), pl.col(S.SHIPMENT_ID).min().over(_LABEL)))
        .otherwise(None)
        .alias(S.NETWORK_ID),
    )
    return f.with_columns(
        (pl.col(NET_SIZE) / (1.0 + pl.col(NET_PRIOR_PARCELS_7D) / 7.0)).alias(NET_GROWTH_RATIO)
    ).drop(_LABEL)


def fires() -> pl.Expr:
    """A group whose consignee-side parties touch a past positive."""
    return pl.col(NET_TOUCHES_POSITIVE) == 1
