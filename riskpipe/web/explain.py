"""Why a target is on the list, in words, and its risk as a percentile of the day."""

from __future__ import annotations

import polars as pl

from riskpipe import schema as S

PCT_BELOW = "pct_below"  # % of the day's scored shipments with a lower risk score
WHY_KIND = "why_kind"  # risk | below cut-off | exploration (+ " · network" when listed with one)
WHY_TEXT = "why_text"  # the same in words


def explain_selection(targets: pl.DataFrame, day_scores_ascending: pl.Series) -> pl.DataFrame:
    """Per target: ``PCT_BELOW`` (% of the day's scores below its own), ``WHY_KIND`` and
    ``WHY_TEXT`` (why it is on the list, in words), from what ``rank_day`` did: risk picks go by
    score day-wide, each port stopping at its ceiling, so a pick below the day-wide cut (the
    score the same number of risk picks would need day-wide) is there because higher scores sat
    at ports whose ceiling was full; exploration picks are random (their chance is shown when
    the list has ``selection_probability``); a network's members are listed right after its
    best-ranked member.

    ``targets`` in rank order; ``day_scores_ascending``: the day's risk scores, sorted, no nulls.
    """
    n = day_scores_ascending.len()
    score = pl.col(S.RISK_SCORE)
    is_risk = pl.col(S.SELECTION) == "risk"
    n_risk = int(targets.filter(pl.col(S.SELECTION) == "risk").height)
    cut = float(day_scores_ascending[n - n_risk]) if 0 < n_risk <= n else None
    below = pl.Series(
        day_scores_ascending.search_sorted(targets.get_column(S.RISK_SCORE).fill_null(-1.0), side="left")
    ).cast(pl.Float64)
    port = pl.col(S.PORT_OF_ENTRY).cast(pl.String).fill_null("?")
    slot_no = pl.int_range(1, pl.len() + 1).over([S.PORT_OF_ENTRY, S.SELECTION], order_by=[S.RANK])
    slots = pl.len().over([S.PORT_OF_ENTRY, S.SELECTION])
    net = pl.col(S.NETWORK_ID).cast(pl.String)
    grouped = net.is_not_null() & (net.shift(1) == net)  # placed by its network, not by its score
    first_of_net = pl.col(S.RANK).min().over(net)
    f = targets.select(
        S.SHIPMENT_ID,
        S.RANK,
        S.PORT_OF_ENTRY,
        S.RISK_SCORE,
        pl.col(S.SELECTION).cast(pl.String),
        pl.col(S.NETWORK_ID).cast(pl.String),
        *([S.SELECTION_PROBABILITY] if S.SELECTION_PROBABILITY in targets.columns else []),
    )
    f = f.with_columns(
        pl.when(score.is_null()).then(None).otherwise(below * (100.0 / max(n, 1))).cast(pl.Float32).alias(PCT_BELOW),
        slot_no.alias("_slot"),
        slots.alias("_slots"),
        grouped.fill_null(False).alias("_grouped"),
        first_of_net.alias("_first"),
    )
    port_slot = is_risk & (score < cut) if cut is not None else pl.lit(False)
    kind = (
        pl.when(pl.col(S.SELECTION) == "exploration")
        .then(pl.lit("exploration"))
        .when(port_slot)
        .then(pl.lit("below cut-off"))
        .when(is_risk)
        .then(pl.lit("risk"))
        .otherwise(pl.col(S.SELECTION))
    )
    slot_words = pl.format("{} of {} risk picks at port {}", pl.col("_slot"), pl.col("_slots"), port)
    chance = (
        pl.format(", chance {}%", (pl.col(S.SELECTION_PROBABILITY) * 100).round(2))
        if S.SELECTION_PROBABILITY in targets.columns
        else pl.lit(None, pl.String)
    )
    cut_words = pl.lit(f"{cut:.3f}" if cut is not None else "")
    text = (
        pl.when(pl.col(S.SELECTION) == "exploration")
        .then(
            pl.format(
                "Exploration: drawn at random among the shipments of port {} not picked by risk{} (keeps the hit-rate estimate honest)",
                port,
                chance.fill_null(""),
            )
        )
        .when(port_slot)
        .then(
            pl.format(
                "Below cut-off: {}; below the day-wide cut-off of {} for {} risk picks: higher scores sat at ports whose ceiling was full",
                slot_words,
                cut_words,
                pl.lit(n_risk),
            )
        )
        .when(is_risk)
        .then(pl.format("Risk: {}; among the day's {} highest scores", slot_words, pl.lit(n_risk)))
        .otherwise(pl.col(S.SELECTION).fill_null(""))
    )
    net_words = pl.format(
        "; listed with network {} right after its best-ranked member (rank {})", net, pl.col("_first")
    )
    return f.select(
        S.SHIPMENT_ID,
        PCT_BELOW,
        pl.when(pl.col("_grouped")).then(kind + pl.lit(" · network")).otherwise(kind).alias(WHY_KIND),
        pl.when(pl.col("_grouped")).then(text + net_words).otherwise(text).alias(WHY_TEXT),
    )
