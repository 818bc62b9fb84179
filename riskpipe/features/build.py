"""One point-in-time feature path for nightly scoring and training.

``build_features(layout, day, labels)`` sees only: the raw manifests of arrival day ``day`` (known
at run time), entity history of arrival days strictly before ``day``, partner declarations
declared up to ``day``, and exam outcomes with ``exam_date < day``. Training calls it for past
days and gets exactly what the nightly run saw.
"""

from __future__ import annotations

import time
from datetime import date

import polars as pl

from riskpipe import schema as S
from riskpipe.features import commodity, crossborder, history, network, parties, value
from riskpipe.features.keys import ENTITY_KEYS, LINK_KEYS, with_keys
from riskpipe.store import Layout, scan_raw_shipments

FEATURE_COLUMNS: list[str] = (
    commodity.COLUMNS + value.COLUMNS + parties.COLUMNS + history.COLUMNS + network.COLUMNS + crossborder.COLUMNS
)
CATEGORICAL_FEATURES: list[str] = [
    commodity.HTS_CHAPTER, parties.TRUSTED_TRADER, crossborder.MODE, crossborder.ENTRY_TYPE, crossborder.ORIGIN_GROUP,
]
FEATURE_FAMILIES: dict[str, list[str]] = {
    "commodity": list(commodity.COLUMNS),
    "value": list(value.COLUMNS),
    "parties": list(parties.COLUMNS),
    "history": list(history.COLUMNS),
    "network": list(network.COLUMNS),
    "crossborder": list(crossborder.COLUMNS),
}
_FIRES = {
    "commodity": commodity.fires,
    "value": value.fires,
    "parties": parties.fires,
    "history": history.fires,
    "network": network.fires,
    "crossborder": crossborder.fires,
}

OUTPUT_COLUMNS = [S.SHIPMENT_ID, S.NETWORK_ID, *FEATURE_COLUMNS]
_KEYS = {**ENTITY_KEYS, **LINK_KEYS}


def family_fires(frame: pl.DataFrame) -> pl.DataFrame:
    """One boolean column per family: does this family flag the shipment (its strong flags)."""
    return frame.select(fire().fill_null(False).alias(name) for name, fire in _FIRES.items())


def _known_labels(labels: pl.DataFrame | None, day: date) -> pl.DataFrame | None:
    if labels is None:
        return None
    return labels.filter(pl.col(S.EXAM_DATE) < day).select(S.SHIPMENT_ID, S.EXAM_DATE, S.OUTCOME)


def _build(layout: Layout, day: date, labels: pl.DataFrame | None, timings: dict[str, float] | None) -> pl.DataFrame:
    """The feature path; with ``timings`` each family is collected on its own and timed."""
    clock = time.perf_counter
    known = _known_labels(labels, day)

    t0 = clock()
    days = history.ensure_history(layout, day)
    norms = history.heading_norms(layout, day, days)
    partner = crossborder.partner_for_day(layout, day)
    fingerprint = history.raw_fingerprint(layout, day)  # before reading: a later change is seen
    raw = scan_raw_shipments(layout, [day])
    if timings is not None:
        norms = norms.collect().lazy()
        partner = partner.collect().lazy()
        raw = raw.collect().lazy()
        timings["history_update_and_read_raw"] = clock() - t0

    stages = [
        ("keys", lambda f: with_keys(f, _KEYS)),
        ("commodity", lambda f: commodity.add_commodity(commodity.prepare(f))),
        ("value", lambda f: value.add_value(f, norms)),
        ("parties", lambda f: parties.add_parties(f, day)),
        ("crossborder", lambda f: crossborder.add_crossborder(f, partner)),
    ]
    lazy = raw
    for name, stage in stages:
        t = clock()
        lazy = stage(lazy)
        if timings is not None:
            lazy = lazy.collect().lazy()
            timings[name] = clock() - t
    keep = [S.SHIPMENT_ID, *commodity.COLUMNS, *value.COLUMNS, *parties.COLUMNS, *crossborder.COLUMNS,
            *(f"_key_{k}" for k in _KEYS), value.HEADING, value.LOG_VPK, value.LOG_VPP]
    t = clock()
    frame = lazy.select(keep).collect().sort(S.SHIPMENT_ID)
    if timings is not None:
        timings["collect"] = clock() - t
    if frame.height and not history.history_current(layout, day, fingerprint):
        # by-product: the aggregates of this day for the nights after it (saves re-reading raw)
        t = clock()
        history.write_day_history(layout, day, frame, fingerprint)
        if timings is not None:
            timings["history_write_day"] = clock() - t

    t = clock()
    frame = history.add_history(frame, layout, day, days, known)
    if timings is not None:
        timings["history"] = clock() - t
    t = clock()
    frame = network.add_network(frame.sort(S.SHIPMENT_ID))
    if timings is not None:
        timings["network"] = clock() - t
    return frame.select(OUTPUT_COLUMNS).sort(S.SHIPMENT_ID)


def build_features(layout: Layout, day: date, labels: pl.DataFrame | None = None) -> pl.DataFrame:
    """Features of every shipment arriving on ``day``: ``shipment_id``, ``network_id``, then
    ``FEATURE_COLUMNS`` in order, sorted by shipment id. ``labels``: exam outcomes (only those
    with ``exam_date < day`` are used)."""
    return _build(layout, day, labels, None)
