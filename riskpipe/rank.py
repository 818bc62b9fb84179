"""The targeting list of one arrival day: capacity per port, exploration, networks, plain words.

How the list is built (``rank_day``):

1. Capacity. Each port present in the day gets ``settings.port_capacity[port]`` exams, a port
   missing from the table ``settings.other_port_capacity``. ``capacity`` overrides the total: the
   port slots are scaled proportionally (largest remainder, ties by port code) so they sum to
   exactly ``capacity``. A port never gets more slots than it has shipments.
2. Exploration. ``round_half_up(total slots * exploration_share)`` slots, shared among the ports
   in proportion to their slots (largest remainder, ties by port code, so that ports with few
   slots still explore on some days... and the total is right), go to shipments drawn uniformly
   at random among each port's shipments not selected by risk (``selection = "exploration"``):
   random exams keep the labels honest (an unbiased hit rate) and let the model see what it does
   not yet rank high. The draw is seeded by ``seed`` and the date and does not depend on row order.
3. Risk. The rest of the slots go to the highest ``risk_score`` (ties: ``shipment_id`` ascending).
4. Order. Risk picks first by score, then exploration picks by score; then the members of one
   network are listed together, right after the network's best-ranked member. A "network" with
   more than ``max_network_size`` shipments in the day is not a case an officer can work as one
   (it is a hub: a marketplace, a forwarder); its members keep their own places (their
   ``network_id`` is still shown). ``rank`` is one sequence over all ports (an officer filters
   by ``port_of_entry``).

``rank_day`` has no side effects: it returns the frame, the caller publishes it.
"""

from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from riskpipe import schema as S
from riskpipe.config import Settings

MODEL_REASON_PREFIX = "model:"
EXPLORATION_TEXT = "Chosen at random for an exploration exam (keeps the hit-rate estimate unbiased)"
MAX_REASON_TEXTS = 3
NO_REASON_TEXT = "High overall risk score (no single indicator stands out)"

_BASE_POS = "_base_pos"
_GROUP_POS = "_group_pos"
_RANDOM_KEY = "_random_key"
MAX_NETWORK_SIZE = 200


def port_slots(ports: dict[str, int], settings: Settings, capacity: int | None = None) -> dict[str, int]:
    """Exam slots per port for a day with ``ports`` (port -> shipments that day).

    Default capacities come from settings; ``capacity`` rescales them to that total exactly
    (largest remainder), and no port gets more slots than shipments.
    """
    base = {p: int(settings.port_capacity.get(p, settings.other_port_capacity)) for p in sorted(ports)}
    if capacity is not None:
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        total = sum(base.values())
        if total == 0:
            base = {p: 0 for p in base}
        else:
            exact = {p: v * capacity / total for p, v in base.items()}
            slots = {p: int(np.floor(x)) for p, x in exact.items()}
            left = capacity - sum(slots.values())
            order = sorted(base, key=lambda p: (-(exact[p] - slots[p]), p))
            for p in order[:left]:
                slots[p] += 1
            base = slots
    return {p: min(v, ports[p]) for p, v in base.items()}


def exploration_slots(slots: int, share: float) -> int:
    """Random-exam slots out of ``slots``: ``round_half_up(slots * share)``."""
    return int(np.floor(slots * share + 0.5))


def apportion(total: int, weights: dict[str, int]) -> dict[str, int]:
    """``total`` split in proportion to ``weights`` (largest remainder, ties by key), never
    more than a key's weight."""
    keys = sorted(weights)
    wsum = sum(weights.values())
    if wsum == 0 or total <= 0:
        return {k: 0 for k in keys}
    total = min(total, wsum)
    exact = {k: weights[k] * total / wsum for k in keys}
    out = {k: int(np.floor(exact[k])) for k in keys}
    for k in sorted(keys, key=lambda k: (-(exact[k] - out[k]), k))[: total - sum(out.values())]:
        out[k] += 1
    return out


def load_reason_texts(rules_texts: dict[str, str] | None = None, path: Path | None = None) -> dict[str, str]:
    """Plain-language text per reason code: model codes from ``reasons.toml``, then rule texts."""
    if path is None:
        path = Path(__file__).parent / "reference" / "reasons.toml"
    raw = Path(path).read_text(encoding="utf-8")
    data = tomllib.loads(raw)
    texts = {f"{MODEL_REASON_PREFIX}{k}": str(v) for k, v in data.get("model", {}).items()}
    texts.update({str(k): str(v) for k, v in data.get("codes", {}).items()})
    texts.update(rules_texts or {})
    return texts


def default_reason_texts(settings: Settings) -> dict[str, str]:
    """Texts of the model reasons plus those of the configured analyst rules (if loadable)."""
    rule_texts: dict[str, str] = {}
    try:
        from riskpipe.rules import load_rules, rules_file

        rule_texts = dict(load_rules(rules_file(settings)).texts)
    except ImportError:  # rules module not present: model texts only
        pass
    return load_reason_texts(rule_texts)


def reason_text_expr(texts: dict[str, str], reasons_col: str = S.REASONS) -> pl.Expr:
    """Plain words of the first reasons, joined with ``; `` (unknown codes read as words)."""
    codes = sorted(texts)
    fallback = (
        pl.element()
        .str.strip_prefix(MODEL_REASON_PREFIX)
        .str.replace_all("_", " ")
        .str.to_lowercase()
    )
    mapped = pl.col(reasons_col).list.head(MAX_REASON_TEXTS).list.eval(
        pl.when(pl.element().is_in(codes))
        .then(pl.element().replace_strict(codes, [texts[c] for c in codes], default=None, return_dtype=pl.String))
        .otherwise(fallback)
    )
    return mapped.list.join("; ")


def _random_keys(shipment_ids: pl.Series, day: date, seed: int) -> pl.Series:
    """A uniform random key per shipment, fixed by (seed, day, shipment_id), not by row order."""
    order = shipment_ids.arg_sort()
    rng = np.random.default_rng([int(seed), day.toordinal()])
    keys = np.empty(len(shipment_ids), dtype=np.float64)
    keys[order.to_numpy()] = rng.random(len(shipment_ids))
    return pl.Series(_RANDOM_KEY, keys)


def rank_day(
    scores: pl.DataFrame,
    raw_day: pl.DataFrame,
    settings: Settings,
    capacity: int | None = None,
    seed: int | None = None,
    texts: dict[str, str] | None = None,
    max_network_size: int = MAX_NETWORK_SIZE,
) -> pl.DataFrame:
    """The targeting list (``S.TARGETS_SCHEMA`` columns, in order) of one arrival day.

    ``scores``: ``shipment_id``, ``risk_score``, ``reasons``, ``model_version`` and optionally
    ``network_id``; ``raw_day``: the day's normalised manifests. ``texts``: reason code -> plain
    words (default: ``reasons.toml`` and the configured rules).
    """
    seed = settings.seed if seed is None else seed
    texts = default_reason_texts(settings) if texts is None else texts
    analyst_cols = [c for c in S.TARGETS_SCHEMA if c not in (S.RANK, S.SELECTION, S.REASON_TEXT) and c not in scores.columns]
    analyst_cols = [c for c in analyst_cols if c != S.NETWORK_ID or c in raw_day.columns]
    raw_cols = [S.SHIPMENT_ID] + [c for c in analyst_cols if c != S.SHIPMENT_ID]
    missing = [c for c in raw_cols if c not in raw_day.columns]
    raw = raw_day.with_columns([pl.lit(None, dtype=S.TARGETS_SCHEMA[c]).alias(c) for c in missing]).select(raw_cols)
    # selection works on the narrow columns; the others (reasons lists above all) are joined to the
    # picked rows only (joining and sorting them for a 16 M-row day copied gigabytes)
    narrow = [S.SHIPMENT_ID, S.RISK_SCORE, *([S.NETWORK_ID] if S.NETWORK_ID in scores.columns else [])]
    carried = [c for c in scores.columns if c not in narrow and c not in raw_cols]
    frame = scores.select(narrow).join(raw, on=S.SHIPMENT_ID, how="inner")
    if S.NETWORK_ID not in frame.columns:
        frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(S.NETWORK_ID))
    frame = frame.with_columns(
        (pl.len().over(S.NETWORK_ID) <= max_network_size).and_(pl.col(S.NETWORK_ID).is_not_null()).alias("_grouped")
    )
    if frame.is_empty():
        return pl.DataFrame(schema=S.TARGETS_SCHEMA)
    day = frame[S.ARRIVAL_DATE].drop_nulls().min()
    day = day if isinstance(day, date) else date(1970, 1, 1)

    frame = frame.sort([S.RISK_SCORE, S.SHIPMENT_ID], descending=[True, False], nulls_last=True)
    frame = frame.with_columns(_random_keys(frame[S.SHIPMENT_ID], day, seed))
    counts = dict(frame.group_by(S.PORT_OF_ENTRY).len().iter_rows())
    slots = port_slots(counts, settings, capacity)
    explore = apportion(exploration_slots(sum(slots.values()), settings.exploration_share), slots)
    quota = pl.DataFrame(
        {
            S.PORT_OF_ENTRY: list(slots),
            "_risk_n": [slots[p] - explore[p] for p in slots],
            "_explore_n": [explore[p] for p in slots],
        },
        schema={S.PORT_OF_ENTRY: pl.String, "_risk_n": pl.Int64, "_explore_n": pl.Int64},
    )
    frame = frame.join(quota, on=S.PORT_OF_ENTRY, how="left", maintain_order="left")
    # risk: the best of each port (frame is already in score order)
    frame = frame.with_columns(
        (pl.int_range(pl.len()).over(S.PORT_OF_ENTRY) < pl.col("_risk_n")).alias("_is_risk")
    )
    # exploration: the smallest random keys among the rest of each port
    rest_order = pl.col(_RANDOM_KEY).rank("ordinal").over([S.PORT_OF_ENTRY, "_is_risk"])
    frame = frame.with_columns(
        (~pl.col("_is_risk") & (rest_order <= pl.col("_explore_n"))).alias("_is_explore")
    )
    picked = frame.filter(pl.col("_is_risk") | pl.col("_is_explore")).with_columns(
        pl.when(pl.col("_is_risk")).then(pl.lit("risk")).otherwise(pl.lit("exploration")).alias(S.SELECTION)
    )
    extra = scores.filter(pl.col(S.SHIPMENT_ID).is_in(picked.get_column(S.SHIPMENT_ID).implode())).select(
        S.SHIPMENT_ID, *carried
    )
    picked = picked.join(extra, on=S.SHIPMENT_ID, how="left")
    picked = picked.sort(
        [pl.col("_is_risk"), S.RISK_SCORE, S.SHIPMENT_ID], descending=[True, True, False], nulls_last=True
    ).with_columns(pl.int_range(pl.len()).alias(_BASE_POS))
    group_key = pl.when(pl.col("_grouped")).then(pl.col(S.NETWORK_ID)).otherwise(pl.lit("\x00") + pl.col(S.SHIPMENT_ID))
    picked = picked.with_columns(pl.col(_BASE_POS).min().over(group_key).alias(_GROUP_POS)).sort(
        [_GROUP_POS, _BASE_POS]
    )
    reason_words = reason_text_expr(texts)
    picked = picked.with_columns(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias(S.RANK),
        pl.when(pl.col(S.SELECTION) == "exploration")
        .then(
            pl.when(pl.col(S.REASONS).list.len() > 0)
            .then(pl.lit(EXPLORATION_TEXT + "; ") + reason_words)
            .otherwise(pl.lit(EXPLORATION_TEXT))
        )
        .when(pl.col(S.REASONS).list.len() > 0)
        .then(reason_words)
        .otherwise(pl.lit(NO_REASON_TEXT))
        .alias(S.REASON_TEXT),
    )
    return picked.select([pl.col(c).cast(t) for c, t in S.TARGETS_SCHEMA.items()])
