"""The targeting list of one arrival day: capacity, port ceilings, exploration, networks, plain words.

How the list is built (``rank_day``):

1. Budget and ceilings. A port's capacity (``settings.port_capacity[port]``, a port missing
   from the table ``settings.other_port_capacity``) is a ceiling: the most exams the port can
   do that day, never a quota it must fill. ``capacity`` (``--capacity``) is the total exams
   available that day; without it the total is the sum of the ceilings of the day's ports.
   Ceilings are not scaled down when ``capacity`` is below their sum: a smaller day-wide
   budget does not shrink what a port can physically examine, it only means fewer exams to
   spend, and they go where the risk is. When ``capacity`` exceeds the sum, the ceilings are
   scaled up in proportion (largest remainder, ties by port code) so they sum to ``capacity``:
   a planner who adds exams beyond the table expects the ports to absorb them (else they
   could not be spent). A ceiling is never more than the port's shipments. The day's total
   is ``min(capacity, sum of ceilings)``, exactly (``day_budget``).
2. Exploration. ``round_half_up(total * exploration_share)`` slots, shared among the ports in
   proportion to their ceilings (largest remainder, ties by port code), are reserved within
   each port's ceiling and drawn uniformly at random among the port's shipments not picked by
   risk (``selection = "exploration"``): random exams keep the labels honest and let the model
   see what it does not yet rank high. The draw is seeded by ``seed`` and the date and does
   not depend on row order. Each exploration pick records ``selection_probability`` =
   exploration slots at its port / the port's shipments not picked by risk (the chance that
   any one of them was drawn), so later estimators can weight by its inverse; risk picks
   carry 1.0 (chosen for sure given the scores).
3. Risk. The rest of the total goes by ``risk_score`` across all ports, highest first (ties:
   ``shipment_id`` ascending), a port's picks stopping at its ceiling less its exploration
   slots. Only shipments with ``risk_score > settings.min_target_risk`` (default 0: a score of
   0 is never a risk pick) are risk picks. Slots that no eligible shipment can take (every
   port with room has only shipments at or below the floor left) become exploration at the
   ports with room left (in proportion to that room), drawn and weighted as in 2: the exams
   are available and a random exam still teaches the model and the hit-rate estimate.
   Novelty-aware exploration (``novelty_share`` > 0 and a ``novelty`` column in the scores,
   ``riskpipe.model.novelty``): each port's exploration slots are drawn instead with unequal
   chances, ``pi_i = n * ((1 - s) / N + s * w_i / W)`` (n slots, N shipments not picked by
   risk, w their novelty, W its sum, s the share), capped at 1 with the excess spread over the
   others (``inclusion_probabilities``), by systematic sampling in the seeded random order
   (``systematic_sample``): exactly n picks, each shipment drawn with probability exactly
   ``pi_i``, recorded as its ``selection_probability``. A share s of the slots so follows the
   novelty, the rest stays uniform, and inverse-probability weights stay exact.
4. Order. Risk picks first by score, then exploration picks by score; then the members of one
   network are listed together, right after the network's best-ranked member. A "network" with
   more than ``max_network_size`` shipments in the day is not a case an officer can work as one
   (it is a hub: a marketplace, a forwarder); its members keep their own places (their
   ``network_id`` is still shown). ``rank`` is one sequence over all ports (an officer filters
   by ``port_of_entry``).

What the list could not examine (``top_risk_gaps``): of the day's top-N risk (N = the list's
size), the shipments not on the list, each with why: its port's ceiling was full, the
exploration slots took the budget, or its score is at or below ``min_target_risk``.

Measured on independent worlds, the old split of ``--capacity`` into fixed per-port quotas
cost 23 points of recall at a capacity near the prevalence (0.85 -> 0.62).

``rank_day`` has no side effects: it returns the frame, the caller publishes it.
:func:`rank_pieces` gives the same list from a day read in id ranges, never held whole (the
night's rank step: a day larger than one machine's memory ranks on a cluster worker).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import cast

import numpy as np
import polars as pl

from riskpipe import schema as S
from riskpipe.config import Settings
from riskpipe.features import graph
from riskpipe.model.novelty import NOVELTY
from riskpipe.rules import load_rules, rules_file
from riskpipe.score import MODEL_REASON_PREFIX

EXPLORATION_TEXT = "Chosen at random for an exploration exam (keeps the hit-rate estimate unbiased)"
MAX_REASON_TEXTS = 3
NO_REASON_TEXT = "High overall risk score (no single indicator stands out)"

_BASE_POS = "_base_pos"
_GROUP_POS = "_group_pos"
_RANDOM_KEY = "_random_key"
MAX_NETWORK_SIZE = 200


def port_slots(ports: dict[str, int], settings: Settings, capacity: int | None = None) -> dict[str, int]:
    """The configured capacities split proportionally to ``capacity`` (largest remainder), no
    port more than its shipments, for a day with ``ports`` (port -> shipments that day).

    Not how the list is built any more (ports have ceilings, not quotas: ``port_ceilings``);
    the sum is still the day's exam count used by the model evaluation (``riskpipe.model``),
    equal to ``day_budget`` unless a port has fewer shipments than its share.
    """
    base = {p: int(settings.port_capacity.get(p, settings.other_port_capacity)) for p in sorted(ports)}
    if capacity is not None:
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        base = _largest_remainder(capacity, base) if sum(base.values()) else {p: 0 for p in base}
    return {p: min(v, ports[p]) for p, v in base.items()}


def port_ceilings(ports: dict[str, int], settings: Settings, capacity: int | None = None) -> dict[str, int]:
    """The most exams each port can do on a day with ``ports`` (port -> shipments that day).

    The configured capacities, scaled up in proportion (largest remainder) only when
    ``capacity`` exceeds their sum (see the module docstring: why never down); never more than
    the port's shipments."""
    base = {p: int(settings.port_capacity.get(p, settings.other_port_capacity)) for p in sorted(ports)}
    if capacity is not None:
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        if capacity > sum(base.values()) > 0:
            base = port_slots({p: capacity for p in base}, settings, capacity)
    return {p: min(v, ports[p]) for p, v in base.items()}


def day_budget(ceilings: dict[str, int], capacity: int | None = None) -> int:
    """The day's total exams: ``capacity`` if given, else the sum of the ceilings, and never
    more than the ceilings allow."""
    allowed = sum(ceilings.values())
    return allowed if capacity is None else min(int(capacity), allowed)


def exploration_slots(slots: int, share: float) -> int:
    """Random-exam slots out of ``slots``: ``round_half_up(slots * share)``."""
    return int(np.floor(slots * share + 0.5))


def _largest_remainder(total: int, weights: dict[str, int]) -> dict[str, int]:
    """``total`` split in proportion to ``weights`` (positive sum): each key gets the floor of
    its exact share, the units left go to the largest remainders, ties by key."""
    wsum = sum(weights.values())
    exact = {k: weights[k] * total / wsum for k in sorted(weights)}
    out = {k: int(np.floor(x)) for k, x in exact.items()}
    for k in sorted(exact, key=lambda k: (-(exact[k] - out[k]), k))[: total - sum(out.values())]:
        out[k] += 1
    return out


def apportion(total: int, weights: dict[str, int]) -> dict[str, int]:
    """``total`` split in proportion to ``weights`` (largest remainder, ties by key), never
    more than a key's weight."""
    wsum = sum(weights.values())
    if wsum == 0 or total <= 0:
        return {k: 0 for k in sorted(weights)}
    return _largest_remainder(min(total, wsum), weights)


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
    return load_reason_texts(dict(load_rules(rules_file(settings)).texts))


def reason_text_expr(texts: dict[str, str], reasons_col: str = S.REASONS) -> pl.Expr:
    """Plain words of the first reasons, joined with ``; `` (unknown codes read as words)."""
    codes = sorted(texts)
    fallback = pl.element().str.strip_prefix(MODEL_REASON_PREFIX).str.replace_all("_", " ").str.to_lowercase()
    mapped = (
        pl.col(reasons_col)
        .list.head(MAX_REASON_TEXTS)
        .list.eval(
            pl.when(pl.element().is_in(codes))
            .then(pl.element().replace_strict(codes, [texts[c] for c in codes], default=None, return_dtype=pl.String))
            .otherwise(fallback)
        )
    )
    return mapped.list.join("; ")


def dated_graph_reasons(
    targets: pl.DataFrame, seized: pl.DataFrame | None, day: date, texts: dict[str, str]
) -> pl.DataFrame:
    """``targets`` whose ``reason_text`` gives the graph reasons' kind and date: "shares an
    account IP with a parcel seized on 2026-05-12" instead of "... seized earlier", and the link
    score its links (``seized``: ``shipment_id`` and the day's ``graph_<kind>_seized_days``
    features, :func:`riskpipe.features.graph.seized_days_of`). The features are point in time,
    so a seizure recorded after the cut-off is never named; the identifier never is. Codes and
    the other words are unchanged (the texts ``rank_day`` wrote, with the same ``texts``)."""
    if seized is None or targets.is_empty():
        return targets
    frame = targets.join(seized, on=S.SHIPMENT_ID, how="left", maintain_order="left")
    text = pl.col(S.REASON_TEXT)
    for kind in graph.LINK_KINDS:
        col = graph.seized_days_col(kind)
        if col in seized.columns:
            words = _words(texts, f"{MODEL_REASON_PREFIX}{col}")
            dated = text.str.replace(words, graph.dated_words(words, kind, day), literal=True)
            text = pl.when(pl.col(col).is_not_null()).then(dated).otherwise(text)
    if all(graph.seized_days_col(k) in seized.columns for k in graph.LINK_KINDS):
        words = _words(texts, f"{MODEL_REASON_PREFIX}{graph.LINK_SCORE}")
        links = graph.link_reason_text(day, joiner=", ")
        text = (
            pl.when(links.is_not_null())
            .then(text.str.replace(words, pl.lit(words + " (") + links + ")", literal=True))
            .otherwise(text)
        )
    return frame.with_columns(text.alias(S.REASON_TEXT)).select(targets.columns)


def _words(texts: dict[str, str], code: str) -> str:
    """The words ``reason_text_expr`` writes for ``code``."""
    return texts.get(code) or code.removeprefix(MODEL_REASON_PREFIX).replace("_", " ").lower()


def _random_keys(shipment_ids: pl.Series, day: date, seed: int) -> pl.Series:
    """A uniform random key per shipment, fixed by (seed, day, shipment_id), not by row order."""
    order = shipment_ids.arg_sort()
    rng = np.random.default_rng([int(seed), day.toordinal()])
    keys = np.empty(len(shipment_ids), dtype=np.float64)
    keys[order.to_numpy()] = rng.random(len(shipment_ids))
    return pl.Series(_RANDOM_KEY, keys)


def inclusion_probabilities(size: np.ndarray, n: int) -> np.ndarray:
    """Chances proportional to ``size`` (non-negative, not all 0) summing to ``n``, none above 1:
    units whose share would exceed 1 get 1 and the rest of ``n`` is spread over the others."""
    size = np.asarray(size, dtype=float)
    pi = np.zeros(len(size))
    capped = np.zeros(len(size), dtype=bool)
    n = min(int(n), len(size))
    for _ in range(len(size) + 1):
        free = ~capped & (size > 0)
        left = n - capped.sum()
        if left <= 0 or not free.any():
            break
        pi[free] = left * size[free] / size[free].sum()
        over = free & (pi >= 1.0)
        if not over.any():
            break
        pi[over], capped[over] = 1.0, True
    pi[capped] = 1.0
    return pi


def systematic_sample(pi: np.ndarray, u: float) -> np.ndarray:
    """Systematic sampling in the given order with start ``u`` in [0, 1): unit i is picked when
    an integer k has ``c_(i-1) < u + k <= c_i`` (c the running sum of ``pi``). Each unit is
    picked with probability ``pi_i`` over u; ``sum(pi)`` (an integer) units are picked."""
    c = np.cumsum(np.asarray(pi, dtype=float))
    k = np.floor(c - u + 1e-9)
    prev = np.concatenate([[np.floor(-u + 1e-9)], k[:-1]])
    return k > prev


MAX_NOVELTY_SHARE = 0.99  # novelty share used at most: the uniform part stays > 0


def _novelty_draw(frame: pl.DataFrame, share: float, day: date, seed: int) -> pl.DataFrame:
    """``_is_explore`` and ``_pi`` of each row by novelty-aware systematic sampling per port.

    ``share`` is capped at ``MAX_NOVELTY_SHARE``: the uniform part keeps every row's chance > 0,
    else rows of novelty 0 could never be explored and the estimates would silently skip them."""
    share = min(float(share), MAX_NOVELTY_SHARE)
    frame = frame.with_columns(pl.int_range(pl.len()).alias("_row"))
    rest = frame.filter(~pl.col("_is_risk") & (pl.col("_explore_n") > 0)).sort(S.PORT_OF_ENTRY, _RANDOM_KEY)
    rng = np.random.default_rng([int(seed), day.toordinal(), 1])
    rows, pis, picks = [], [], []
    for part in rest.partition_by(S.PORT_OF_ENTRY, maintain_order=True):
        w = part[NOVELTY].fill_null(0.0).fill_nan(0.0).clip(0.0, None).to_numpy()
        big_n = part.height
        n = int(part["_explore_n"][0])
        total = float(w.sum())
        size = (1.0 - share) / big_n + (share * w / total if total > 0 else np.full(big_n, share / big_n))
        pi = inclusion_probabilities(size, n)
        rows.append(part["_row"].to_numpy())
        pis.append(pi)
        picks.append(systematic_sample(pi, float(rng.random())))
    drawn = pl.DataFrame(
        {
            "_row": np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64),
            "_pi": np.concatenate(pis) if pis else np.zeros(0),
            "_is_explore": np.concatenate(picks) if picks else np.zeros(0, dtype=bool),
        },
        schema={"_row": pl.Int64, "_pi": pl.Float64, "_is_explore": pl.Boolean},
    )
    return (
        frame.join(drawn, on="_row", how="left", maintain_order="left")
        .with_columns(pl.col("_is_explore").fill_null(False))
        .drop("_row")
    )


def _score_order(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort([S.RISK_SCORE, S.SHIPMENT_ID], descending=[True, False], nulls_last=True)


def _risk_picks(frame: pl.DataFrame, slots: int, floor: float, first_rows: int | None = None) -> pl.DataFrame:
    """``frame`` with ``_is_risk``: day-wide by score (ties by shipment id; nulls and scores at
    or below ``floor`` never), each port stopping at ``_room``, at most ``slots`` in all.

    The picks are decided by a prefix of the day in score order: only the rows scoring at least
    a threshold are sorted (the whole day was sorted before; a 4 M-row day's sort for a few
    hundred picks), the threshold lowered until the prefix holds ``slots`` picks or every
    eligible row. The returned frame is that prefix in score order, then the other rows in their
    order; when two random keys are equal (exploration breaks their tie by row order) the other
    rows are sorted too, so the frame is in the full score order as before."""
    eligible = pl.col(S.RISK_SCORE).fill_null(float("-inf")) > floor
    candidate = eligible & (pl.int_range(pl.len()).over(S.PORT_OF_ENTRY) < pl.col("_room"))
    score = frame.get_column(S.RISK_SCORE)
    valid = score.drop_nulls()
    m = max(4 * slots, 1024) if first_rows is None else max(int(first_rows), 1)
    nan = valid.dtype.is_float() and bool(valid.is_nan().any())
    while True:
        if nan or m >= valid.len():
            head, rest, cut = _score_order(frame), frame.clear(), None
        else:
            cut = cast(float, valid.top_k(m).min())  # a numeric score column: a number
            top = (pl.col(S.RISK_SCORE) >= cut).fill_null(False)
            head, rest = _score_order(frame.filter(top)), frame.filter(~top)
        head = head.with_columns(candidate.alias("_cand")).with_columns(
            (pl.col("_cand") & (pl.col("_cand").cast(pl.Int64).cum_sum() <= slots)).alias("_is_risk")
        )
        # enough when the picks are all taken or no row below the prefix is eligible
        if cut is None or int(head["_is_risk"].sum()) >= slots or float(cut) <= floor:
            break
        m *= 4
    if rest.height and frame.get_column(_RANDOM_KEY).n_unique() < frame.height:
        rest = _score_order(rest)
    rest = rest.with_columns(pl.lit(False).alias("_cand"), pl.lit(False).alias("_is_risk"))
    return pl.concat([head, rest], how="vertical")


@dataclass(frozen=True)
class RankPlan:
    """What the day's list may hold, from the day's shipments per port (``counts``): each port's
    ceiling, the day's budget, its exploration slots and their share per port (module docstring,
    steps 1-2). ``day`` keys the random draw."""

    day: date
    counts: dict[str, int]
    ceilings: dict[str, int]
    budget: int
    n_explore: int
    explore: dict[str, int]

    @property
    def slots(self) -> int:
        """Risk picks at most (the budget less the exploration slots)."""
        return self.budget - self.n_explore

    def room(self) -> dict[str, int]:
        """Risk picks at most per port (its ceiling less its exploration slots)."""
        return {p: self.ceilings[p] - self.explore[p] for p in self.ceilings}

    def quota(self) -> pl.DataFrame:
        room = self.room()
        return pl.DataFrame(
            {S.PORT_OF_ENTRY: list(room), "_room": list(room.values())},
            schema={S.PORT_OF_ENTRY: pl.String, "_room": pl.Int64},
        )

    def draws(self, risk_n: dict[str, int]) -> dict[str, int]:
        """Exploration picks per port once the risk picks are known: the reserved slots plus the
        slots no eligible shipment could take, where the ceilings leave room (step 3)."""
        spare = apportion(
            self.slots - sum(risk_n.values()),
            {p: self.ceilings[p] - self.explore[p] - int(risk_n.get(p, 0)) for p in self.ceilings},
        )
        return {p: self.explore[p] + spare[p] for p in self.ceilings}


def rank_plan(counts: dict[str, int], day: date, settings: Settings, capacity: int | None = None) -> RankPlan:
    """The :class:`RankPlan` of a day with ``counts`` (port -> shipments)."""
    ceilings = port_ceilings(counts, settings, capacity)
    budget = day_budget(ceilings, capacity)
    n_explore = exploration_slots(budget, settings.exploration_share)
    return RankPlan(day, dict(counts), ceilings, budget, n_explore, apportion(n_explore, ceilings))


def _first_day(dates: pl.Series) -> date:
    day = dates.drop_nulls().min()
    return day if isinstance(day, date) else date(1970, 1, 1)


def _uniform_draw(frame: pl.DataFrame, explore_n: dict[str, int], rest_n: dict[str, int]) -> pl.DataFrame:
    """``frame`` with ``_is_explore`` and ``_pi``: each port's ``explore_n`` rows not picked by
    risk with the smallest random keys (ties by the score order), each of the port's ``rest_n``
    such rows having had the same chance, ``explore_n / rest_n``.

    Only the rows whose key ranks (ties sharing the lowest rank) within the port's first
    ``explore_n`` are sorted; the tie-break is explicit, so a subset holding each port's first
    rows in that order (the merged candidates of :func:`rank_pieces`) picks the same rows."""
    ports = list(explore_n)
    n_of = pl.col(S.PORT_OF_ENTRY).replace_strict(
        ports, [explore_n[p] for p in ports], default=0, return_dtype=pl.Int64
    )
    rest_of = pl.col(S.PORT_OF_ENTRY).replace_strict(
        ports, [rest_n.get(p, 0) for p in ports], default=0, return_dtype=pl.Int64
    )
    frame = frame.with_columns(pl.int_range(pl.len()).alias("_row"))
    near = frame.filter(
        ~pl.col("_is_risk") & (pl.col(_RANDOM_KEY).rank("min").over([S.PORT_OF_ENTRY, "_is_risk"]) <= n_of)
    )
    drawn = (
        near.sort([_RANDOM_KEY, S.RISK_SCORE, S.SHIPMENT_ID], descending=[False, True, False], nulls_last=True)
        .filter(pl.int_range(pl.len()).over(S.PORT_OF_ENTRY) < n_of)
        .select("_row", pl.lit(True).alias("_is_explore"))
    )
    return (
        frame.join(drawn, on="_row", how="left", maintain_order="left")
        .with_columns(pl.col("_is_explore").fill_null(False), (n_of / rest_of).alias("_pi"))
        .drop("_row")
    )


def _risk_counts(frame: pl.DataFrame) -> dict[str, int]:
    return dict(frame.filter(pl.col("_is_risk")).group_by(S.PORT_OF_ENTRY).len().iter_rows())


def _picked(frame: pl.DataFrame) -> pl.DataFrame:
    """The risk and exploration picks of ``frame`` with their selection and its probability."""
    return frame.filter(pl.col("_is_risk") | pl.col("_is_explore")).with_columns(
        pl.when(pl.col("_is_risk")).then(pl.lit("risk")).otherwise(pl.lit("exploration")).alias(S.SELECTION),
        pl.when(pl.col("_is_risk")).then(pl.lit(1.0)).otherwise(pl.col("_pi")).alias(S.SELECTION_PROBABILITY),
    )


def _assemble(
    picked: pl.DataFrame,
    extra: pl.DataFrame,
    sizes: pl.DataFrame,
    max_network_size: int,
    texts: dict[str, str],
) -> pl.DataFrame:
    """The list from the picks (step 4): ``extra`` (``shipment_id`` and the carried score
    columns of the picks), ``sizes`` (``network_id``, ``_size``: the day's shipments of each
    picked network), in order, ranked, in plain words."""
    picked = picked.join(extra, on=S.SHIPMENT_ID, how="left").join(sizes, on=S.NETWORK_ID, how="left")
    picked = picked.with_columns(
        (pl.col("_size").fill_null(0) <= max_network_size).and_(pl.col(S.NETWORK_ID).is_not_null()).alias("_grouped")
    )
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
    missing = [pl.lit(None, dtype=t).alias(c) for c, t in S.TARGETS_SCHEMA.items() if c not in picked.columns]
    return picked.with_columns(missing).select([pl.col(c).cast(t) for c, t in S.TARGETS_SCHEMA.items()])


def _network_sizes(frame: pl.DataFrame, picked: pl.DataFrame) -> pl.DataFrame:
    """``network_id``, ``_size`` of the picked rows' networks counted over ``frame``."""
    ids = picked.get_column(S.NETWORK_ID).drop_nulls().unique()
    return (
        frame.filter(pl.col(S.NETWORK_ID).is_in(ids.implode()))
        .group_by(S.NETWORK_ID)
        .agg(pl.len().cast(pl.Int64).alias("_size"))
    )


def _columns(
    scores_columns: list[str], raw_day: pl.DataFrame, by_novelty: bool
) -> tuple[list[str], list[str], list[str]]:
    """(narrow score columns, raw columns, carried score columns) of a ranking: selection works
    on the narrow columns; the others (reasons lists above all) are joined to the picked rows
    only (joining and sorting them for a 16 M-row day copied gigabytes)."""
    analyst_cols = [
        c
        for c in S.TARGETS_SCHEMA
        if c not in (S.RANK, S.SELECTION, S.SELECTION_PROBABILITY, S.REASON_TEXT) and c not in scores_columns
    ]
    analyst_cols = [c for c in analyst_cols if c != S.NETWORK_ID or c in raw_day.columns]
    raw_cols = [S.SHIPMENT_ID] + [c for c in analyst_cols if c != S.SHIPMENT_ID]
    narrow = [
        S.SHIPMENT_ID,
        S.RISK_SCORE,
        *([S.NETWORK_ID] if S.NETWORK_ID in scores_columns else []),
        *([NOVELTY] if by_novelty else []),
    ]
    carried = [c for c in scores_columns if c not in narrow and c not in raw_cols]
    return narrow, raw_cols, carried


def _narrow_frame(scores: pl.DataFrame, raw_day: pl.DataFrame, narrow: list[str], raw_cols: list[str]) -> pl.DataFrame:
    """The rows to rank: the narrow score columns joined to the raw columns (missing ones null)."""
    missing = [c for c in raw_cols if c not in raw_day.columns]
    raw = raw_day.with_columns([pl.lit(None, dtype=S.TARGETS_SCHEMA[c]).alias(c) for c in missing]).select(raw_cols)
    frame = scores.select(narrow).join(raw, on=S.SHIPMENT_ID, how="inner")
    if S.NETWORK_ID not in frame.columns:
        frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(S.NETWORK_ID))
    return frame


def rank_day(
    scores: pl.DataFrame,
    raw_day: pl.DataFrame,
    settings: Settings,
    capacity: int | None = None,
    seed: int | None = None,
    texts: dict[str, str] | None = None,
    max_network_size: int = MAX_NETWORK_SIZE,
    novelty_share: float | None = None,
    first_rows: int | None = None,
) -> pl.DataFrame:
    """The targeting list (``S.TARGETS_SCHEMA`` columns, in order) of one arrival day.

    ``novelty_share`` (default: the setting ``exploration_novelty_share`` if any, else 0): the
    share of exploration drawn by novelty when ``scores`` has a ``novelty`` column.

    ``scores``: ``shipment_id``, ``risk_score``, ``reasons``, ``model_version`` and optionally
    ``network_id``; ``raw_day``: the day's normalised manifests. ``texts``: reason code -> plain
    words (default: ``reasons.toml`` and the configured rules). ``first_rows``: how many of the
    day's best-scored rows are sorted first to find the risk picks (tests; the list is the same
    whatever it is). :func:`rank_pieces` gives the same list from a day read in pieces.
    """
    seed = settings.seed if seed is None else seed
    texts = default_reason_texts(settings) if texts is None else texts
    if novelty_share is None:
        novelty_share = settings.exploration_novelty_share
    by_novelty = novelty_share > 0 and NOVELTY in scores.columns
    narrow, raw_cols, carried = _columns(scores.columns, raw_day, by_novelty)
    frame = _narrow_frame(scores, raw_day, narrow, raw_cols)
    if frame.is_empty():
        return pl.DataFrame(schema=S.TARGETS_SCHEMA)
    day = _first_day(frame[S.ARRIVAL_DATE])
    frame = frame.with_columns(_random_keys(frame[S.SHIPMENT_ID], day, seed))  # by id: any row order
    plan = rank_plan(dict(frame.group_by(S.PORT_OF_ENTRY).len().iter_rows()), day, settings, capacity)
    frame = frame.join(plan.quota(), on=S.PORT_OF_ENTRY, how="left", maintain_order="left")
    frame = _risk_picks(frame, plan.slots, float(settings.min_target_risk), first_rows)
    risk_n = _risk_counts(frame)
    explore_n = plan.draws(risk_n)
    if by_novelty:
        frame = frame.join(
            pl.DataFrame(
                {S.PORT_OF_ENTRY: list(explore_n), "_explore_n": list(explore_n.values())},
                schema={S.PORT_OF_ENTRY: pl.String, "_explore_n": pl.Int64},
            ),
            on=S.PORT_OF_ENTRY,
            how="left",
            maintain_order="left",
        )
        frame = _novelty_draw(frame, novelty_share, day, seed)
    else:
        rest_n = {p: plan.counts[p] - int(risk_n.get(p, 0)) for p in plan.counts}
        frame = _uniform_draw(frame, explore_n, rest_n)
    picked = _picked(frame)
    extra = scores.filter(pl.col(S.SHIPMENT_ID).is_in(picked.get_column(S.SHIPMENT_ID).implode())).select(
        S.SHIPMENT_ID, *carried
    )
    return _assemble(picked, extra, _network_sizes(frame, picked), max_network_size, texts)


def _first_per_port(frame: pl.DataFrame, column: str, n: pl.Expr, descending: bool) -> pl.DataFrame:
    """Each port's first ``n`` rows (``n`` an expression of the port) ordered by ``column`` then
    the score order (score descending, nulls last, then ``shipment_id``), as a full sort would
    give them; only the rows whose ``column`` ranks (ties sharing the best rank) within ``n`` are
    sorted. Rows with a null ``column`` come last (a null score is never a pick); NaN scores:
    the full sort."""
    values = frame.get_column(column)
    if values.dtype.is_float() and bool(values.is_nan().any()):
        near = frame
    else:
        near = frame.filter(pl.col(column).rank("min", descending=descending).over(S.PORT_OF_ENTRY) <= n)
    key = [column, S.RISK_SCORE, S.SHIPMENT_ID] if column != S.RISK_SCORE else [S.RISK_SCORE, S.SHIPMENT_ID]
    desc = [descending, True, False] if column != S.RISK_SCORE else [True, False]
    return near.sort(key, descending=desc, nulls_last=True).filter(pl.int_range(pl.len()).over(S.PORT_OF_ENTRY) < n)


def _random_keys_from(first: int, shipment_ids: pl.Series, day: date, seed: int) -> pl.Series:
    """The :func:`_random_keys` of the day's ids at places ``first, first + 1, ...`` in the
    order of all the day's ids (``shipment_ids`` ascending): the same draws, without the day."""
    bits = np.random.PCG64(np.random.SeedSequence([int(seed), day.toordinal()]))
    bits.advance(int(first))
    return pl.Series(_RANDOM_KEY, np.random.Generator(bits).random(len(shipment_ids)))


@dataclass(frozen=True)
class RankedPieces:
    """The list of a day ranked in pieces, with what the report needs of the day: ``plan`` (its
    counts per port) and ``top`` (``shipment_id``, ``risk_score``, ``port_of_entry`` of at least
    the day's ``plan.budget`` best scores: :func:`top_risk_gaps` with ``port_counts``)."""

    targets: pl.DataFrame
    plan: RankPlan | None
    top: pl.DataFrame


def rank_pieces(
    pieces: Sequence[Callable[[], pl.DataFrame]],
    carried: Callable[[pl.Series], pl.DataFrame],
    settings: Settings,
    capacity: int | None = None,
    seed: int | None = None,
    texts: dict[str, str] | None = None,
    max_network_size: int = MAX_NETWORK_SIZE,
) -> RankedPieces:
    """:func:`rank_day`'s list (uniform exploration) of a day read in pieces, holding one piece
    and a few rows per exam slot, never the day: a day larger than one machine's memory.

    ``pieces``: each call returns one id range of the day's rows to rank (``shipment_id``
    ascending, ranges in order; the columns :func:`rank_day` joins: ``risk_score``,
    ``network_id``, ``port_of_entry``, ``arrival_date``, ...); each is read three times.
    ``carried(ids)``: ``shipment_id`` and the other score columns (reasons, model version, ...)
    of those ids. Why the merge is exact: a port's risk picks are among its ``room`` best rows,
    its exploration picks among its ``ceiling`` smallest random keys, and the day's top-N among
    the top ``budget`` of each piece; the best rows of the day in each order are the best of
    their piece, so the merged candidates hold every row either order reaches (tests compare
    with :func:`rank_day`)."""
    seed = settings.seed if seed is None else seed
    texts = default_reason_texts(settings) if texts is None else texts
    counts: dict[str, int] = {}
    heights, days = [], []
    last: str | None = None
    for read in pieces:  # pass 1: the day's counts and first date
        piece = read()
        ids = piece.get_column(S.SHIPMENT_ID)
        if ids.len() and (not ids.is_sorted() or (last is not None and ids[0] <= last)):
            raise ValueError("rank_pieces: pieces must be id ranges in ascending order")
        last = ids[-1] if ids.len() else last
        heights.append(piece.height)
        days.append(piece.get_column(S.ARRIVAL_DATE).drop_nulls().min())
        for port, n in piece.group_by(S.PORT_OF_ENTRY).len().iter_rows():
            counts[port] = counts.get(port, 0) + int(n)
    if not sum(heights):
        top = pl.DataFrame(schema={S.SHIPMENT_ID: pl.String, S.RISK_SCORE: pl.Float64, S.PORT_OF_ENTRY: pl.String})
        return RankedPieces(pl.DataFrame(schema=S.TARGETS_SCHEMA), None, top)
    day = _first_day(pl.Series([d for d in days if d is not None], dtype=pl.Date))
    plan = rank_plan(counts, day, settings, capacity)
    room, quota = plan.room(), plan.quota()
    by_port = pl.col(S.PORT_OF_ENTRY)
    ceiling_of = by_port.replace_strict(list(plan.ceilings), list(plan.ceilings.values()), default=0)
    room_of = by_port.replace_strict(list(room), list(room.values()), default=0)
    parts, first = [], 0
    for read, height in zip(pieces, heights, strict=True):  # pass 2: each piece's candidates
        piece = read()
        piece = piece.with_columns(_random_keys_from(first, piece.get_column(S.SHIPMENT_ID), day, seed))
        first += height
        parts.append(
            pl.concat(
                [
                    _first_per_port(piece, S.RISK_SCORE, room_of, descending=True),
                    top_by_score(piece, plan.budget),
                    _first_per_port(piece, _RANDOM_KEY, ceiling_of, descending=False),
                ]
            ).unique(S.SHIPMENT_ID, keep="first")
        )
    cands = pl.concat(parts).sort(S.SHIPMENT_ID)
    frame = cands.join(quota, on=S.PORT_OF_ENTRY, how="left", maintain_order="left")
    frame = _risk_picks(frame, plan.slots, float(settings.min_target_risk), first_rows=frame.height)
    risk_n = _risk_counts(frame)
    rest_n = {p: plan.counts[p] - int(risk_n.get(p, 0)) for p in plan.counts}
    picked = _picked(_uniform_draw(frame, plan.draws(risk_n), rest_n))
    networks = picked.get_column(S.NETWORK_ID).drop_nulls().unique()
    sizes = pl.concat(  # pass 3: the picked networks' shipments in the whole day
        [read().filter(pl.col(S.NETWORK_ID).is_in(networks.implode())).group_by(S.NETWORK_ID).len() for read in pieces]
    )
    sizes = sizes.group_by(S.NETWORK_ID).agg(pl.col("len").sum().cast(pl.Int64).alias("_size"))
    extra = carried(picked.get_column(S.SHIPMENT_ID))
    targets = _assemble(picked, extra, sizes, max_network_size, texts)
    return RankedPieces(targets, plan, cands.select(S.SHIPMENT_ID, S.RISK_SCORE, S.PORT_OF_ENTRY))


#: why a shipment of the day's top-N risk is not on the list (``top_risk_gaps``)
GAP_REASONS = {
    "port_ceiling": "their port's ceiling was full of higher-risk picks",
    "exploration": "exploration slots took their exams",
    "below_min_target_risk": "their score is at or below min_target_risk",
}


def top_by_score(frame: pl.DataFrame, n: int) -> pl.DataFrame:
    """The first ``n`` rows of ``frame`` by ``risk_score`` (descending, nulls last), ties by
    ``shipment_id``: the rows a full sort would give, in its order, but only the rows scoring at
    least the n-th best score are sorted (a whole 4 M-row day was sorted to take a few hundred)."""
    key = [S.RISK_SCORE, S.SHIPMENT_ID]
    scores = frame.get_column(S.RISK_SCORE)
    valid = scores.drop_nulls()
    # NaN (sorted above every number) or too few scores: the full sort, as before
    if 0 < n < valid.len() and not (valid.dtype.is_float() and valid.is_nan().any()):
        frame = frame.filter(pl.col(S.RISK_SCORE) >= valid.top_k(n).min())
    return frame.sort(key, descending=[True, False], nulls_last=True).head(max(n, 0))


def top_risk_gaps(
    scores: pl.DataFrame,
    ports: pl.DataFrame,
    targets: pl.DataFrame,
    settings: Settings,
    capacity: int | None = None,
    port_counts: dict[str, int] | None = None,
) -> dict:
    """How much of the day's top risk the list could not examine, and why.

    Of the day's top N by ``risk_score`` (N = the list's size, ties by ``shipment_id``), the
    shipments not on the list, counted and summed (``risk_mass``: the sum of their calibrated
    scores, i.e. the positives they are expected to hold) by reason (``GAP_REASONS``): a
    shipment at or below ``min_target_risk``; else, at a port whose ceiling was reached, the
    port's best missed shipments, as many as it had exploration picks, lost their exam to
    exploration and the others to the ceiling (full of risk picks scoring at least as high);
    at a port with room left, exploration took the exams (the day's risk budget ran out, and
    every risk pick scores at least as high).
    ``scores``: ``shipment_id``, ``risk_score`` of the whole day; ``ports``: ``shipment_id``,
    ``port_of_entry``; ``targets``: the list (``rank_day``). ``port_counts`` (port -> the day's
    shipments): when ``scores`` holds only the day's best rows (at least the list's size:
    :class:`RankedPieces`), the counts that set the ports' ceilings."""
    n = targets.height
    day = scores.select(S.SHIPMENT_ID, S.RISK_SCORE).join(
        ports.select(S.SHIPMENT_ID, pl.col(S.PORT_OF_ENTRY).cast(pl.String)), on=S.SHIPMENT_ID, how="inner"
    )
    counts = dict(day.group_by(S.PORT_OF_ENTRY).len().iter_rows()) if port_counts is None else port_counts
    ceilings = port_ceilings(counts, settings, capacity) or {"": 0}
    used = targets.group_by(pl.col(S.PORT_OF_ENTRY).cast(pl.String)).agg(
        pl.len().alias("_used"), (pl.col(S.SELECTION) == "exploration").sum().cast(pl.Int64).alias("_explored")
    )
    top = top_by_score(day, n)
    missed = (
        top.join(targets.select(S.SHIPMENT_ID), on=S.SHIPMENT_ID, how="anti")
        .join(used, on=S.PORT_OF_ENTRY, how="left")
        .sort([S.RISK_SCORE, S.SHIPMENT_ID], descending=[True, False], nulls_last=True)  # for the count per port
        .with_columns(
            pl.col(S.PORT_OF_ENTRY)
            .replace_strict(list(ceilings), list(ceilings.values()), default=0, return_dtype=pl.Int64)
            .alias("_ceiling")
        )
        .with_columns(
            pl.when(pl.col(S.RISK_SCORE).fill_null(float("-inf")) <= float(settings.min_target_risk))
            .then(pl.lit("below_min_target_risk"))
            .when(
                (pl.col("_used").fill_null(0) >= pl.col("_ceiling"))
                & (pl.int_range(1, pl.len() + 1).over(S.PORT_OF_ENTRY) > pl.col("_explored").fill_null(0))
            )
            .then(pl.lit("port_ceiling"))
            .otherwise(pl.lit("exploration"))
            .alias("_why")
        )
    )
    by = {
        why: (int(k), float(m or 0.0))
        for why, k, m in missed.group_by("_why").agg(pl.len(), pl.col(S.RISK_SCORE).sum()).iter_rows()
    }
    return {
        "top_n": n,
        "top_risk_mass": float(top[S.RISK_SCORE].sum() or 0.0),
        "not_examined": missed.height,
        "not_examined_risk_mass": float(missed[S.RISK_SCORE].sum() or 0.0),
        "reasons": {
            why: {"shipments": by.get(why, (0, 0.0))[0], "risk_mass": by.get(why, (0, 0.0))[1], "words": words}
            for why, words in GAP_REASONS.items()
        },
    }


def gaps_sentence(gaps: dict) -> str:
    """The gaps in one line: "of the day's top-N risk, k were not examined: j because ..."."""
    parts = [f"{r['shipments']} because {r['words']}" for r in gaps["reasons"].values() if r["shipments"]]
    head = (
        f"of the day's top-{gaps['top_n']} risk (risk mass {gaps['top_risk_mass']:.2f}), "
        f"{gaps['not_examined']} were not examined (risk mass {gaps['not_examined_risk_mass']:.2f})"
    )
    return head + (": " + "; ".join(parts) if parts else "")
