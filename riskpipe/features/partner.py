"""Partner indicators: the day's identifiers matched against the findings a partner customs
service shared (keyed hashes, ``riskpipe.partner``), and ``mx_oea`` claims checked against the
partner's list of certified operators.

Point in time: only feeds and lists imported before D's cut-off (00:00 UTC of D), not expired at
it, and findings dated before D (:func:`riskpipe.partner.active_findings`). With none stored the
family costs nothing (constant columns, no key needed). With one, each distinct normalised
identifier of the day is keyed once (Python ``hmac``: about a microsecond per value) and the
matches are joined back to the rows by their normalised text.

An ``mx_oea`` claim whose exporter (the manifest's shipper, keyed as the features key it) is not
on the active OEA list loses its trusted-trader credit: :func:`verify_oea` clears the claim
before the parties family reads it, and ``xb_oea_unconfirmed`` flags it (rule
``OEA_CLAIM_NOT_CONFIRMED``). With no list imported claims are neither confirmed nor refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl

from riskpipe import partner as P
from riskpipe import schema as S
from riskpipe.features.family import DayContext, FamilyDay, NoWork
from riskpipe.features.keys import NORMALISED
from riskpipe.store import Layout

PARTNER_WATCH_HIT = "partner_watch_hit"
PARTNER_WATCH_KINDS = "partner_watch_kinds"
PARTNER_WATCH_DAYS = "partner_watch_days_since"
XB_OEA_CONFIRMED = "xb_oea_confirmed"
XB_OEA_UNCONFIRMED = "xb_oea_unconfirmed"

COLUMNS = [PARTNER_WATCH_HIT, PARTNER_WATCH_KINDS, PARTNER_WATCH_DAYS, XB_OEA_CONFIRMED, XB_OEA_UNCONFIRMED]

#: a matched identifier on more of the day's shipments than this is a hub (a forwarder's address,
#: an agent's phone, a carrier's IP) and flags nothing (as network.LINK_CAPS): on the synthetic
#: world with a partner side, 229 of 4,000 shipments a day were flagged (8 positives) before this
#: cap, most through 3 IPs and 4 agents' e-mails
WATCH_MAX_SHIPMENTS = 10
_V = "_pw_value"
_OEA_V = "_oea_value"
_OEA_OK = "_oea_ok"


def _date_col(kind: str) -> str:
    return f"_pw_{kind}_date"


def _finding_col(kind: str) -> str:
    return f"_pw_{kind}_finding"


def _by_col(kind: str) -> str:
    return f"_pw_{kind}_by"


@dataclass
class PartnerInputs:
    """What the family needs for one day: per identifier kind, the day's normalised values that
    match a shared finding (latest finding per value); the OEA verdict per claiming shipper."""

    matches: dict[str, pl.DataFrame] = field(default_factory=dict)
    oea: pl.DataFrame | None = None  # (_oea_value, _oea_ok) of the day's mx_oea claimants; None: no list
    oea_by: str = ""  # who shared the active OEA list


def inputs(
    layout: Layout, day: date, raw: pl.LazyFrame, key: bytes | None = None, key_path: Path | None = None
) -> PartnerInputs:
    """The day's matches and OEA verdicts (reads the key, from ``key_path`` or else the home's
    riskpipe.toml, only when a feed or list is active for ``day``)."""
    findings = P.active_findings(layout, day)
    oea = P.active_oea(layout, day)
    out = PartnerInputs()
    if findings.height == 0 and oea is None:
        return out
    key = key if key is not None else P.day_key(layout, key_path)
    if findings.height:
        kinds = [k for k in P.FEED_KINDS if P.KIND_CLASS[k] in set(findings["class"].to_list())]
        values = (
            P.normalised_frame(raw, kinds)
            .group_by("kind", "value")
            .agg(pl.len().alias("_n"))
            .filter(pl.col("_n") <= WATCH_MAX_SHIPMENTS)
            .select("kind", "value")
            .collect()
        )
        latest = findings.sort("finding_date", "finding").group_by("class", "hmac").agg(pl.all().last())
        for (kind,), g in values.sort("kind", "value").group_by("kind", maintain_order=True):
            kind = str(kind)
            hashed = g.with_columns(pl.Series("hmac", P.keyed_hashes(key, kind, g["value"].to_list()), dtype=pl.String))
            hit = hashed.join(latest.filter(pl.col("class") == P.KIND_CLASS[kind]), on="hmac", how="inner")
            if hit.height:
                out.matches[kind] = hit.select(
                    pl.col("value").alias(_V),
                    pl.col("finding_date").alias(_date_col(kind)),
                    pl.col("finding").alias(_finding_col(kind)),
                    pl.col("shared_by").alias(_by_col(kind)),
                )
    if oea is not None:
        claims = (
            raw.filter(pl.col(S.TRUSTED_TRADER).cast(pl.String) == "mx_oea")
            .select(NORMALISED["shipper"].alias(_OEA_V))
            .drop_nulls()
            .unique()
            .collect()
            .sort(_OEA_V)
        )
        claim_hashes = P.keyed_hashes(key, "shipper", claims[_OEA_V].to_list())
        out.oea_by = oea.shared_by
        out.oea = claims.with_columns(pl.Series(_OEA_OK, [h in oea.hmacs for h in claim_hashes], dtype=pl.Boolean))
    return out


def verify_oea(frame: pl.LazyFrame, inp: PartnerInputs) -> pl.LazyFrame:
    """``xb_oea_confirmed`` / ``xb_oea_unconfirmed``; an unconfirmed ``mx_oea`` claim is cleared
    from ``trusted_trader`` (no credit) before the parties family reads it."""
    if inp.oea is None:
        return frame.with_columns(
            pl.lit(0, pl.Int8).alias(XB_OEA_CONFIRMED), pl.lit(0, pl.Int8).alias(XB_OEA_UNCONFIRMED)
        )
    claim = (pl.col(S.TRUSTED_TRADER).cast(pl.String) == "mx_oea").fill_null(False)
    ok = pl.col(_OEA_OK).fill_null(False)
    return (
        frame.join(inp.oea.lazy(), left_on=NORMALISED["shipper"], right_on=_OEA_V, how="left")
        .with_columns(
            (claim & ok).cast(pl.Int8).alias(XB_OEA_CONFIRMED),
            (claim & ~ok).cast(pl.Int8).alias(XB_OEA_UNCONFIRMED),
            pl.when(claim & ~ok).then(pl.lit(None)).otherwise(pl.col(S.TRUSTED_TRADER)).alias(S.TRUSTED_TRADER),
        )
        .drop(_OEA_OK, _OEA_V, strict=False)
    )


def _with_matches(frame: pl.LazyFrame, inp: PartnerInputs) -> pl.LazyFrame:
    for kind, table in inp.matches.items():
        frame = frame.join(table.lazy(), left_on=NORMALISED[kind], right_on=_V, how="left").drop(_V, strict=False)
    return frame


def add_partner(frame: pl.LazyFrame, inp: PartnerInputs, day: date) -> pl.LazyFrame:
    """The watch-list columns (the OEA columns come from :func:`verify_oea`)."""
    if not inp.matches:
        return frame.with_columns(
            pl.lit(0, pl.Int8).alias(PARTNER_WATCH_HIT),
            pl.lit(0, pl.Int8).alias(PARTNER_WATCH_KINDS),
            pl.lit(None, pl.Int32).alias(PARTNER_WATCH_DAYS),
        )
    dates = [pl.col(_date_col(k)) for k in inp.matches]
    helpers = [c(k) for k in inp.matches for c in (_date_col, _finding_col, _by_col)]
    return (
        _with_matches(frame, inp)
        .with_columns(
            pl.any_horizontal(d.is_not_null() for d in dates).cast(pl.Int8).alias(PARTNER_WATCH_HIT),
            pl.sum_horizontal(d.is_not_null().cast(pl.Int8) for d in dates).cast(pl.Int8).alias(PARTNER_WATCH_KINDS),
            (pl.lit(day) - pl.max_horizontal(dates)).dt.total_days().cast(pl.Int32).alias(PARTNER_WATCH_DAYS),
        )
        .drop(helpers)
    )


OEA_UNCONFIRMED_TEXT = (
    "the exporter claims Mexico OEA certification but is not on the OEA list shared by {by}: no trusted-trader credit"
)


def reason_texts(frame: pl.LazyFrame, inp: PartnerInputs) -> pl.LazyFrame:
    """``shipment_id`` and ``partner_reason``: plain words for each match ("the consignee's phone
    matches a precursor finding shared by Mexico's customs service on 2026-05-12") and an
    unconfirmed OEA claim, ``; ``-joined (null when none)."""
    parts = [
        pl.when(pl.col(_date_col(k)).is_not_null()).then(
            pl.format(
                "{} matches a {} finding shared by {} on {}",
                pl.lit(P.KIND_WORDS[k]),
                pl.col(_finding_col(k)).str.replace("_", " "),
                pl.col(_by_col(k)),
                pl.col(_date_col(k)).cast(pl.String),
            )
        )
        for k in inp.matches
    ]
    if inp.oea is not None:
        text = OEA_UNCONFIRMED_TEXT.format(by=inp.oea_by)
        parts.append(pl.when(pl.col(XB_OEA_UNCONFIRMED) == 1).then(pl.lit(text)))
    f = _with_matches(verify_oea(frame, inp), inp)
    if not parts:
        return f.select(S.SHIPMENT_ID, pl.lit(None, pl.String).alias("partner_reason"))
    joined = pl.concat_list(parts).list.drop_nulls().list.join("; ")
    return f.select(S.SHIPMENT_ID, pl.when(joined != "").then(joined).alias("partner_reason"))


def fires() -> pl.Expr:
    return (pl.col(PARTNER_WATCH_HIT) == 1) | (pl.col(XB_OEA_UNCONFIRMED) == 1)


class _Work(NoWork):
    def __init__(self, inp: PartnerInputs, day: date) -> None:
        self.inp, self.day = inp, day

    def adjust_raw(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        # an unconfirmed mx_oea claim is cleared before the parties family reads it
        return verify_oea(frame, self.inp)

    def rows(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        return add_partner(frame, self.inp, self.day)


class PartnerFamily:
    """Row-level: the day's identifiers against the partner's shared findings and OEA list."""

    name = "partner"
    columns = COLUMNS
    categorical: list[str] = []
    day_columns: list[str] = []
    reasons = {
        PARTNER_WATCH_HIT: "an identifier matches a finding shared by the partner customs service",
        XB_OEA_UNCONFIRMED: "an mx_oea claim not on the partner's OEA list",
    }

    def fires(self) -> pl.Expr:
        return fires()

    def open(self, ctx: DayContext) -> FamilyDay:
        return _Work(inputs(ctx.layout, ctx.day, ctx.raw, key_path=ctx.partner_key_path), ctx.day)


FAMILY = PartnerFamily()
