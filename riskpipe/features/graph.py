"""Risk that travels along the party graph: earlier exam outcomes carried to today's shipments
through the identifiers they share (issue 14, point 4).

Two kinds of columns, both point in time (only the outcomes D's run knew: recorded before D's
cut-off, exam dates strictly before D, as :class:`~riskpipe.features.family.DayContext` passes them),
so a shipment never sees its own outcome and a handful of findings already moves the next night:

* **target statistics** of a party (seller, shipper, account IP, consignee address): its positive
  rate among its examined parcels, smoothed towards the rate of all examined parcels (m-estimate,
  ``TE_STRENGTH`` pseudo-exams), as a ratio to that rate (1 = no evidence either way). Examined
  negatives count: a seller examined 20 times clean scores below 1.
* **propagation**: hop 1, per identifier kind, the days since the latest positive exam of a
  parcel sharing that identifier (null: none); ``graph_link_score`` combines the kinds with a decay
  of ``DECAY_DAYS`` (noisy-or of ``LINK_WEIGHT * exp(-days / DECAY_DAYS)``); hop 2,
  ``graph_hop2_score``, is ``HOP2_WEIGHT`` times the link scores of the *other* shipments of the
  day that share a consignee-side identifier or account IP with the shipment (``HOP2_KINDS``).

Work is bounded: an identifier shared by more of the day's shipments than its kind's cap
(``LINK_CAPS``: a forwarder's address, a marketplace's IP, a big seller) carries nothing; only
identifiers of past positives (few) and of today's linked shipments are looked up, never a
window over every key of the day. The hashed keys of labelled shipments are cached in
``history/labelled_links.parquet`` (like the history family's prior exams).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

from riskpipe import schema as S
from riskpipe.features import history as H
from riskpipe.features.family import DayContext, FamilyDay, NoWork
from riskpipe.features.keys import ENTITY_KEYS, LINK_KEYS, key_col
from riskpipe.store import Layout

#: identifier kind -> the largest number of the day's shipments it may link (above: a hub)
LINK_CAPS: dict[str, int] = {
    "account_ip": 10,
    "cons_email": 10,
    "cons_phone": 10,
    "cons_addr": 10,
    "cons_name": 10,
    "seller": 100,
    "shipper": 100,
    "shipper_phone": 100,
    "shipper_email": 100,
}
#: identifier kind -> the words of a reason ("shares <words> with a parcel seized on ...")
KIND_WORDS: dict[str, str] = {
    "account_ip": "an account IP",
    "cons_email": "a consignee e-mail",
    "cons_phone": "a consignee phone",
    "cons_addr": "a consignee address",
    "cons_name": "a consignee name",
    "seller": "a seller account",
    "shipper": "a shipper",
    "shipper_phone": "a shipper phone",
    "shipper_email": "a shipper e-mail",
}
LINK_KINDS = list(LINK_CAPS)
#: the kinds hop 2 travels along today: the consignee side only. Through a seller or shipper (cap
#: 100) it reached 20 % of a day's negatives and 8 % of its positives on the synthetic world
#: (anti-informative); hop 1 through them stays (1.5 % of negatives, 13 % of positives linked)
HOP2_KINDS = ["account_ip", "cons_email", "cons_phone", "cons_addr", "cons_name"]
#: parties with point-in-time target statistics
TE_ENTITIES = ("seller", "shipper", "account_ip", "cons_addr")
TE_STRENGTH = 10.0
DECAY_DAYS = 30.0
LINK_WEIGHT = 0.5
HOP2_WEIGHT = 0.5
#: a link to a positive at most this many days old flags the shipment (``fires``)
FIRES_DAYS = 30

LINK_SCORE = "graph_link_score"
HOP2_SCORE = "graph_hop2_score"
_CACHE = "labelled_links.parquet"
_KEYS = {**ENTITY_KEYS, **LINK_KEYS}


def seized_days_col(kind: str) -> str:
    return f"graph_{kind}_seized_days"


def te_col(entity: str) -> str:
    return f"te_{entity}"


COLUMNS = [te_col(e) for e in TE_ENTITIES] + [seized_days_col(k) for k in LINK_KINDS] + [LINK_SCORE, HOP2_SCORE]


def _known(layout: Layout, labels: pl.DataFrame | None, day: date) -> pl.DataFrame | None:
    """The latest known outcome per shipment (exam date before ``day``) with the hashed keys of
    every link kind (null when the shipment was not found in the raw partitions)."""
    known = H.latest_outcomes_before(labels, day)
    if known is None:
        return None
    keys = {k: _KEYS[k] for k in LINK_KINDS}
    parties = H.labelled_parties(layout, known, keys, _CACHE)
    return known.join(parties, on=S.SHIPMENT_ID, how="inner")


def _target_stats(frame: pl.DataFrame, known: pl.DataFrame | None) -> dict[str, pl.Series]:
    """``te_<entity>``: smoothed positive rate of the party's examined parcels / the global rate."""
    out: dict[str, pl.Series] = {}
    n_all = 0 if known is None else known.height
    k_all = 0 if known is None else int(known.get_column(S.IS_POSITIVE).sum())
    prior = (k_all + 1.0) / (n_all + 2.0)  # the examined rows' rate (Laplace: never 0 or 1)
    for e in TE_ENTITIES:
        k = key_col(e)
        if known is None:
            out[te_col(e)] = pl.Series(te_col(e), [1.0] * frame.height, dtype=pl.Float32)
            continue
        stats = (
            known.filter(pl.col(k).is_not_null())
            .group_by(k)
            .agg(pl.len().alias("_n"), pl.col(S.IS_POSITIVE).sum().alias("_k"))
        )
        te = ((pl.col("_k").fill_null(0) + TE_STRENGTH * prior) / (pl.col("_n").fill_null(0) + TE_STRENGTH)) / prior
        looked = frame.select(k).join(stats, on=k, how="left", maintain_order="left")
        out[te_col(e)] = looked.select(te.cast(pl.Float32).alias(te_col(e))).to_series()
    return out


def _degree_ok(frame: pl.DataFrame, k: str, keys: pl.Series, cap: int) -> pl.DataFrame:
    """Of ``keys``, those shared by at most ``cap`` of the day's shipments (``frame``)."""
    return (
        frame.lazy()
        .select(k)
        .filter(pl.col(k).is_in(keys.implode()))
        .group_by(k)
        .agg(pl.len().alias("_deg"))
        .filter(pl.col("_deg") <= cap)
        .select(k)
        .collect()
    )


def _links(frame: pl.DataFrame, known: pl.DataFrame | None, day: date) -> dict[str, pl.Series]:
    """Hop 1 (days since the latest positive sharing each kind of identifier), its score, hop 2."""
    out: dict[str, pl.Series] = {}
    pos = None if known is None else known.filter(pl.col(S.IS_POSITIVE) == 1)
    for kind in LINK_KINDS:
        k, name = key_col(kind), seized_days_col(kind)
        if pos is None or pos.height == 0:
            out[name] = pl.Series(name, [None] * frame.height, dtype=pl.Int32)
            continue
        latest = pos.filter(pl.col(k).is_not_null()).group_by(k).agg(pl.col(S.EXAM_DATE).max())
        latest = latest.join(_degree_ok(frame, k, latest.get_column(k), LINK_CAPS[kind]), on=k, how="semi")
        looked = frame.select(k).join(latest, on=k, how="left", maintain_order="left")
        days = (pl.lit(day) - pl.col(S.EXAM_DATE)).dt.total_days().cast(pl.Int32)
        out[name] = looked.select(days.alias(name)).to_series()
    parts = [
        pl.lit(LINK_WEIGHT) * (-pl.col(seized_days_col(kind)).cast(pl.Float64) / DECAY_DAYS).exp()
        for kind in LINK_KINDS
    ]
    miss = pl.lit(1.0)
    for p in parts:
        miss = miss * (1.0 - p.fill_null(0.0))
    score = pl.DataFrame(list(out.values())).select((1.0 - miss).alias(LINK_SCORE)).to_series()
    out[LINK_SCORE] = score.cast(pl.Float32)
    out[HOP2_SCORE] = _hop2(frame, score)
    return out


def _hop2(frame: pl.DataFrame, score: pl.Series) -> pl.Series:
    """``HOP2_WEIGHT`` x the largest (over kinds) sum of the link scores of the *other* shipments of
    the day sharing an identifier with the row (capped at 1; hubs link nothing)."""
    seeds = frame.select([key_col(k) for k in HOP2_KINDS]).with_columns(score.alias("_s"))
    seeds_only = seeds.filter(pl.col("_s") > 0)
    best = pl.Series("_h", [0.0] * frame.height, dtype=pl.Float64)
    if seeds_only.height == 0:
        return best.cast(pl.Float32).alias(HOP2_SCORE)
    for kind in HOP2_KINDS:
        k = key_col(kind)
        sums = seeds_only.filter(pl.col(k).is_not_null()).group_by(k).agg(pl.col("_s").sum().alias("_sum"))
        if sums.height == 0:
            continue
        sums = sums.join(_degree_ok(frame, k, sums.get_column(k), LINK_CAPS[kind]), on=k, how="semi")
        got = (
            seeds.select(k, "_s")
            .join(sums, on=k, how="left", maintain_order="left")
            .select((pl.col("_sum") - pl.col("_s")).fill_null(0.0).clip(0.0, 1.0))
            .to_series()
        )
        best = pl.DataFrame([best, got.alias("_g")]).select(pl.max_horizontal("_h", "_g").alias("_h")).to_series()
    return (best * HOP2_WEIGHT).cast(pl.Float32).alias(HOP2_SCORE)


def add_graph(frame: pl.DataFrame, layout: Layout, day: date, labels: pl.DataFrame | None) -> pl.DataFrame:
    """Add the graph family to today's frame (eager; needs the ``_key_*`` columns of every kind)."""
    known = _known(layout, labels, day)
    cols = {**_target_stats(frame, known), **_links(frame, known, day)}
    return frame.with_columns(cols[c] for c in COLUMNS)


def seized_on(kind: str, day: date) -> pl.Expr:
    """The exam date (``YYYY-MM-DD``) of the latest positive sharing an identifier of ``kind``,
    from the frame's ``graph_<kind>_seized_days`` of ``day`` (null: no link)."""
    d = pl.col(seized_days_col(kind))
    return (pl.lit(day) - pl.duration(days=d)).cast(pl.Date).cast(pl.String)


def link_reason_text(day: date, joiner: str = "; ") -> pl.Expr:
    """Plain words for a feature frame of ``day``: "shares an account IP with a parcel seized on
    2026-05-12; ..." (``joiner``-joined, most recent first; null when no link). Names the kind of
    the link and the date of the finding, never the identifier itself."""
    parts = []
    for k in LINK_KINDS:
        d = pl.col(seized_days_col(k))
        seized = seized_on(k, day)
        # "<days, zero-padded>|words": sorting the texts puts the most recent finding first
        text = pl.format(
            "{}|shares {} with a parcel seized on {}", d.cast(pl.String).str.zfill(6), pl.lit(KIND_WORDS[k]), seized
        )
        parts.append(pl.when(d.is_not_null()).then(text))
    joined = (
        pl.concat_list(parts)
        .list.drop_nulls()
        .list.sort()
        .list.eval(pl.element().str.replace(r"^\d+\|", ""))
        .list.join(joiner)
    )
    return pl.when(joined != "").then(joined).alias("graph_reason")


def dated_words(words: str, kind: str, day: date) -> pl.Expr:
    """The words of a ``graph_<kind>_seized_days`` reason with the seizure's date: "... seized
    earlier" becomes "... seized on 2026-05-12" (other wordings get " (seized on ...)")."""
    if words.endswith(" earlier"):
        return pl.lit(words.removesuffix("earlier") + "on ") + seized_on(kind, day)
    return pl.lit(words + " (seized on ") + seized_on(kind, day) + pl.lit(")")


def seized_days_of(features_file: Path, ids: pl.Series) -> pl.DataFrame | None:
    """``shipment_id`` and the ``graph_<kind>_seized_days`` columns of ``ids`` from a day's
    features file (None: no file, or one written before the graph family)."""
    if not features_file.is_file():
        return None
    have = pl.read_parquet_schema(features_file)
    cols = [seized_days_col(k) for k in LINK_KINDS if seized_days_col(k) in have]
    if not cols:
        return None
    return (
        pl.scan_parquet(features_file)
        .select(S.SHIPMENT_ID, *cols)
        .filter(pl.col(S.SHIPMENT_ID).is_in(ids.implode()))
        .collect()
    )


def dated_pairs(pairs: list[tuple[str, str]], reason_text: str | None) -> list[tuple[str, str]]:
    """(code, words) of a list row with the dated words its ``reason_text`` gives a graph reason
    (the workbench shows each code's words; the list's text carries the dates)."""
    if not reason_text:
        return pairs
    parts = reason_text.split("; ")
    out = []
    for code, words in pairs:
        if code.endswith(tuple(seized_days_col(k) for k in LINK_KINDS)):
            stem = words.removesuffix("earlier") if words.endswith(" earlier") else words + " (seized on "
        elif code.endswith(LINK_SCORE):
            stem = words + " ("
        else:
            out.append((code, words))
            continue
        out.append((code, next((p for p in parts if p.startswith(stem) and p != words), words)))
    return out


def fires() -> pl.Expr:
    """A shipment shares a non-hub identifier with a parcel seized in the last ``FIRES_DAYS``."""
    return pl.any_horizontal(pl.col(seized_days_col(k)) <= FIRES_DAYS for k in LINK_KINDS)


class _Lookups(NoWork):
    def __init__(self, ctx: DayContext) -> None:
        self.ctx = ctx

    def day_frame(self, frame: pl.DataFrame) -> pl.DataFrame:
        return add_graph(frame, self.ctx.layout, self.ctx.day, self.ctx.known_labels)


class GraphFamily:
    """Whole-day: earlier outcomes carried along shared identifiers, and the parties' own record."""

    name = "graph"
    columns = COLUMNS
    categorical: list[str] = []
    day_columns = COLUMNS
    reasons = {seized_days_col(k): f"shares {KIND_WORDS[k]} with a parcel seized earlier" for k in LINK_KINDS}

    def fires(self) -> pl.Expr:
        return fires()

    def open(self, ctx: DayContext) -> FamilyDay:
        return _Lookups(ctx)


FAMILY = GraphFamily()
