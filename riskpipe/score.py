"""Risk scores with reasons for every shipment of a day.

The score is the calibrated model probability ``p`` (trees + linear ensemble, Platt-calibrated
on later days: a probability of a fentanyl-related finding *if examined*, learned from examined
shipments) with a rule floor::

    risk_score = max(p, w * floor_score)          (w = ``RULE_WEIGHT``; no model: p = 0.001 x rule_score)

``floor_score`` is ``1 - prod(1 - weight)`` over the hits of rules marked ``floor = true`` in
the rules file (shipped: a named precursor or CAS number, a pill press), so a trusted-trader
credit may lower ``p`` but cannot hide a precursor; other rule hits only order a day that has no
model. The model already sees the rules' indicators as features, so the rules are
not added on top (that would count them twice and break calibration).

Reasons, strongest first: the rule codes that fired (strongest rule first), then the model's own
codes ``model:<feature>``. For the ``top_n`` highest-scored shipments the model codes are honest
attributions for trees, by occlusion: the drop in the model's probability when one feature is
reset to its usual training value (median / most frequent); features whose reset lowers the
probability the most come first. Other shipments get one cheap code: the most important feature
(by mean occlusion on training positives) whose value is unusual (above the training 90th
percentile, or not the most frequent category).

Scoring runs in batches of ``batch_rows`` to bound memory. A day of more than
``CASCADE_MIN_ROWS`` shipments is scored with a two-stage cascade, because the cost of boosted
trees is rows x trees: the first 15 trees (with their own probability calibration, fitted on
the same later days) score every row; the whole model re-scores the top 5 % of each batch and
every row with ``rule_score >= 0.3`` (one rule of weight 0.3 or more, or two weaker ones: a
single weak flag, worn by a fifth of some days, keeps the first stage's probability unless it
is in the top 5 %). The targeting list (well under 1 % of a day) is thus
ranked by the whole model; the long tail keeps a calibrated but coarser probability. ``score_day`` writes nothing; the
caller publishes. Its frame holds the ``S.SCORES_SCHEMA`` columns first, then ``network_id`` and
``model_score`` for ranking and reports: ``scores_file_frame`` keeps the contract columns only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import polars as pl

from riskpipe import registry
from riskpipe import schema as S
from riskpipe.config import Settings
from riskpipe.errors import RiskpipeError
from riskpipe.features import build_features
from riskpipe.features.build import clip_nonfinite
from riskpipe.model.explain import occlusion_drops
from riskpipe.registry import ChampionState, LoadedModel
from riskpipe.rules import MASK, MASK_RULES, RuleSet
from riskpipe.store import Layout, scan_raw_shipments

#: floor weight (see ``blend``): a hit of a ``floor = true`` rule (a named precursor, a pill
#: press: rules.toml) keeps ``risk >= RULE_WEIGHT * floor_score``, 0.03 for a precursor named
#: alone: a policy minimum of the order of the finding rate of such hits, far above a benign
#: shipment's. Keyed on the rules marked ``floor``, not on the rule score: a high score made of
#: softer flags (prior-positive parties, networks) crowded the list when it set a floor.
RULE_WEIGHT = 0.05
#: used only for rule objects that carry no floor marks: a rule score this strong sets the floor
STRONG_RULE_SCORE = 0.6
#: weaker rule scores keep only a token floor: they order a rules-only day, and stay far below
#: any probability that matters (the model already sees the same indicators as features)
WEAK_RULE_FLOOR = 1e-3
#: days larger than this are scored with the two-stage cascade (module doc)
CASCADE_MIN_ROWS = 500_000
CASCADE_SHARE = 0.05
CASCADE_RULE_SCORE = 0.3
TOP_N_ATTRIBUTION = 1000
#: occlusion tries the features with the highest training importance only (the others barely
#: move the model: resetting them cannot be a strong reason).
ATTRIBUTION_FEATURES = 20
BATCH_ROWS = 500_000
#: rows of the features file in memory at a time when a day is scored from its file (a multiple
#: of ``BATCH_ROWS``: ``score_features_file``)
CHUNK_ROWS = 1_000_000
#: rows per piece of the reasons column (``_with_reasons``)
REASON_PIECE = 131_072
MAX_REASONS = 5
MAX_MODEL_REASONS = 3
CHEAP_REASON_FEATURES = 8
NO_MODEL_VERSION = "rules-only"
RULE_REASONS = "rule_reasons"
#: reason codes of the model's own (``model:<feature>``); the rest are rule codes
MODEL_REASON_PREFIX = "model:"


def blend(p_model: Any, rule_score: Any, rule_weight: float = RULE_WEIGHT, floor_score: Any = None) -> np.ndarray:
    """``max(p, floor)``: the calibrated model probability, with a rule floor.

    The model already sees the rules' indicators (precursor names, CAS numbers, prior positives)
    as features, so adding the rules on top would count them twice and inflate the probability
    (the old ``1 - (1 - p)(1 - w r)`` put the mean score near 0.1 at a prevalence near 0.003).
    The floor guarantees that a hit of a ``floor = true`` rule cannot be hidden by the model,
    e.g. by a trusted-trader discount: ``risk >= w * floor_score``. Other rule hits do not move a
    model's probability (a token floor did: near the capacity cut, calibrated probabilities are
    of the order of 0.001 and a floor of 0.001 x rule score reordered them); without a model the
    caller passes ``p = WEAK_RULE_FLOOR * rule_score`` so the rules order the day.
    ``floor_score`` None (rule objects without floor marks): strong rule scores set the floor.
    """
    p = np.clip(np.asarray(p_model, dtype=float), 0.0, 1.0)
    r = np.clip(np.asarray(rule_score, dtype=float), 0.0, 1.0)
    if floor_score is None:
        f = np.where(r >= STRONG_RULE_SCORE, r, 0.0)
    else:
        f = np.clip(np.asarray(floor_score, dtype=float), 0.0, 1.0)
    return np.maximum(p, rule_weight * f)


def _predict_fn(model: Any):
    inner = model.model if hasattr(model, "model") else model
    if hasattr(inner, "predict_risk"):
        return inner.predict_risk
    return lambda X: inner.predict_proba(X)[:, 1]


def predict_batches(
    model: Any,
    frame: pl.DataFrame,
    batch_rows: int = BATCH_ROWS,
    cascade: bool = False,
    always: np.ndarray | None = None,
) -> np.ndarray:
    """Model probability of every row, ``batch_rows`` at a time (``cascade``: see module doc;
    ``always``: rows the whole model must score)."""
    inner = model.model if hasattr(model, "model") else model
    out = np.empty(frame.height, dtype=float)
    for start in range(0, frame.height, batch_rows):
        part = frame.slice(start, batch_rows)
        if cascade and hasattr(inner, "predict_risk_cascade"):
            extra = None if always is None else always[start : start + batch_rows]
            out[start : start + batch_rows] = inner.predict_risk_cascade(part, CASCADE_SHARE, extra)
        else:
            out[start : start + batch_rows] = _predict_fn(model)(part)
    return out


def _safe_baseline(frame: pl.DataFrame, baseline: dict[str, Any]) -> dict[str, Any]:
    """Baselines castable to today's dtypes (an Enum value no longer listed becomes null)."""
    out = {}
    for f, v in baseline.items():
        dt = frame.schema.get(f)
        if isinstance(dt, pl.Enum) and v is not None and v not in dt.categories.to_list():
            v = None
        out[f] = v
    return out


def model_reasons_top(
    model: Any, frame: pl.DataFrame, features: list[str], baseline: dict[str, Any], batch: int = 1000
) -> list[list[str]]:
    """Occlusion reasons for each row of ``frame`` (a few thousand rows at most)."""
    predict = _predict_fn(model)
    baseline = _safe_baseline(frame, baseline)
    out: list[list[str]] = []
    for start in range(0, frame.height, batch):
        part = frame.slice(start, batch)
        drops = occlusion_drops(predict, part, baseline, features)
        base = predict(part)
        for i in range(part.height):
            thresh = max(0.02 * base[i], 1e-9)
            order = np.argsort(-drops[i], kind="stable")
            out.append(
                [f"{MODEL_REASON_PREFIX}{features[j]}" for j in order[:MAX_MODEL_REASONS] if drops[i, j] > thresh]
            )
    return out


def attribution_features(model: Any, n: int = ATTRIBUTION_FEATURES) -> list[str]:
    """The ``n`` features with the largest positive training importance (all if none known)."""
    imp = model.importance
    ranked = sorted((f for f in model.feature_columns if imp.get(f, 0.0) > 0), key=lambda f: -imp[f])
    return ranked[:n] if ranked else list(model.feature_columns)[:n]


def cheap_reason_index(
    frame: pl.DataFrame, importance: dict[str, float], baseline: dict[str, Any], high: dict[str, float]
) -> tuple[pl.Expr, list[str]]:
    """One model code per row as a small integer: the index in the returned code list of the
    most important feature whose value is unusual, or ``len(codes)`` when none is."""
    ranked = sorted((f for f, v in importance.items() if v > 0 and f in frame.columns), key=lambda f: -importance[f])
    ranked = ranked[:CHEAP_REASON_FEATURES]
    branches: list[pl.Expr] = []
    codes: list[str] = []
    for f in ranked:
        dt = frame.schema[f]
        if dt.is_numeric() and f in high:
            flag = pl.col(f).cast(pl.Float64) > high[f]
        elif isinstance(dt, (pl.Enum, pl.Categorical)) or dt in (pl.String, pl.Boolean):
            if baseline.get(f) is None:
                continue
            flag = pl.col(f).cast(pl.String) != (str(baseline[f]).lower() if dt == pl.Boolean else str(baseline[f]))
        else:
            continue
        branches.append(pl.when(flag.fill_null(False)).then(pl.lit(len(codes), pl.UInt8)))
        codes.append(f"{MODEL_REASON_PREFIX}{f}")
    if not branches:
        return pl.lit(0, pl.UInt8), codes
    return pl.coalesce(branches).fill_null(len(codes)).cast(pl.UInt8), codes


def cheap_reason_expr(
    frame: pl.DataFrame, importance: dict[str, float], baseline: dict[str, Any], high: dict[str, float]
) -> pl.Expr:
    """One model code per row: the most important feature whose value is unusual (or null)."""
    index, codes = cheap_reason_index(frame, importance, baseline, high)
    if not codes:
        return pl.lit(None, dtype=pl.String)
    return index.replace_strict(list(range(len(codes) + 1)), [*codes, None], return_dtype=pl.String)


def _rule_parts(
    joined: pl.DataFrame, rules: Any | None
) -> tuple[np.ndarray, np.ndarray, list[list[str]], np.ndarray | None]:
    """(rule_score per row, index of each row's rule reasons, the distinct rule reason lists,
    floor score per row or None when the rules carry no floor marks).

    A ``RuleSet`` is scored once per distinct combination of hits (``hit_mask``); other rule
    objects through their ``apply`` (one list per row)."""
    n = joined.height
    if rules is None or not n:
        return np.zeros(n), np.zeros(n, dtype=np.int64), [[]], None
    if hasattr(rules, "hit_mask") and len(rules.rules) <= MASK_RULES:
        mask = rules.hit_mask(joined)
        table = rules.mask_table(mask)
        ids = mask.replace_strict(
            table[MASK], pl.Series(np.arange(table.height, dtype=np.int64)), return_dtype=pl.Int64
        )
        idx = ids.to_numpy()
        scores = table[S.RULE_SCORE].cast(pl.Float64).fill_null(0.0).clip(0.0, 1.0).to_numpy()
        floors = table[S.RULE_FLOOR_SCORE].cast(pl.Float64).fill_null(0.0).to_numpy()
        return scores[idx], idx, table[S.RULE_REASONS].to_list(), floors[idx]
    hits = joined.select(S.SHIPMENT_ID).join(rules.apply(joined), on=S.SHIPMENT_ID, how="left", maintain_order="left")
    score = hits[S.RULE_SCORE].cast(pl.Float64).fill_null(0.0).clip(0.0, 1.0).to_numpy()
    reasons = [list(r or []) for r in hits[S.RULE_REASONS].to_list()]
    floor = (
        hits[S.RULE_FLOOR_SCORE].cast(pl.Float64).fill_null(0.0).to_numpy()
        if S.RULE_FLOOR_SCORE in hits.columns
        else None
    )
    return score, np.arange(n, dtype=np.int64), reasons, floor


def top_rows(risk: np.ndarray, ids: pl.Series, k: int) -> np.ndarray:
    """Positions of the ``k`` highest ``risk`` rows, ties by ``ids`` ascending (no full sort)."""
    n = len(risk)
    if k <= 0 or not n:
        return np.zeros(0, dtype=np.int64)
    cand = np.arange(n) if k >= n else np.flatnonzero(risk >= np.partition(risk, n - k)[n - k])
    part = pl.DataFrame({"_row": cand, "_risk": risk[cand], "_id": ids.gather(cand)})
    return part.sort(["_risk", "_id"], descending=[True, False]).head(k)["_row"].to_numpy()


def _merge_reasons(rule_codes: list[str], model_codes: list[str]) -> list[str]:
    return list(dict.fromkeys([*rule_codes, *model_codes]))[:MAX_REASONS]


def score_frame(
    joined: pl.DataFrame,
    model: Any | None,
    rules: Any | None,
    *,
    rule_weight: float = RULE_WEIGHT,
    top_n: int = TOP_N_ATTRIBUTION,
    batch_rows: int = BATCH_ROWS,
    cascade_min_rows: int = CASCADE_MIN_ROWS,
    cascade: bool | None = None,
) -> pl.DataFrame:
    """Scores and reasons of ``joined`` (raw columns of the day + its features); no I/O.

    ``model`` is a ``registry.LoadedModel`` (or None: rules only), ``rules`` a ``RuleSet`` (or
    None: model only). Reasons are built per distinct (rule hits, cheap model code) pair and
    gathered to the rows, so a 4 M-row day builds a few hundred lists, not millions.
    ``cascade`` (default: more than ``cascade_min_rows`` rows): a chunk of a larger day
    (:func:`score_features_file`) is scored as the whole day would be.
    """
    rows = _score_rows(
        joined,
        model,
        rules,
        rule_weight=rule_weight,
        top_n=top_n,
        batch_rows=batch_rows,
        cascade=joined.height > cascade_min_rows if cascade is None else cascade,
    )
    return _with_reasons(rows.frame, rows.key, rows.lists)


@dataclass
class _Rows:
    """Scores of some rows without their reasons column: each row's index ``key`` into the
    reason ``lists``; ``top``: the ``keep_top`` highest rows (selected joined columns) and
    ``top_rules`` their rule reasons, for a day's top rows chosen over several chunks."""

    frame: pl.DataFrame
    key: np.ndarray
    lists: list[list[str]]
    top: pl.DataFrame | None = None
    top_rules: list[list[str]] | None = None


def _with_reasons(frame: pl.DataFrame, key: np.ndarray, lists: list[list[str]]) -> pl.DataFrame:
    """``frame`` with the reasons column (``lists[key]``) fourth, gathered in pieces of
    ``REASON_PIECE`` rows: Polars 2.1 writes a list column held in one chunk of millions of rows
    several times slower (the 4 M-row scored file: 3.1 against 0.9 CPU-s)."""
    table = pl.Series(S.REASONS, lists, dtype=pl.List(pl.String))
    pieces = [table.gather(key[i : i + REASON_PIECE]) for i in range(0, len(key), REASON_PIECE)]
    reasons = pl.concat(pieces, rechunk=False) if pieces else table.gather(key)
    return frame.insert_column(3, reasons)


def _score_rows(
    joined: pl.DataFrame,
    model: Any | None,
    rules: Any | None,
    *,
    rule_weight: float,
    top_n: int,
    batch_rows: int,
    cascade: bool,
    keep_top: int = 0,
) -> _Rows:
    """:func:`score_frame` without gathering the reasons (``keep_top``: see ``_Rows``)."""
    n = joined.height
    features = []
    if model is not None:
        features = (
            list(model.feature_columns)
            if getattr(model, "feature_columns", None)
            else list(model.model.feature_columns_)
        )
    needed = {S.SHIPMENT_ID, S.NETWORK_ID, *features, *(getattr(rules, "fields", None) or joined.columns)}
    joined = joined.select([c for c in joined.columns if c in needed])  # less memory on big days
    # a non-finite feature (from a store older than ingest's limits) must not stop the night
    joined = clip_nonfinite(joined, [c for c in features if c in joined.columns])
    rule_score, rule_idx, rule_lists, floor_score = _rule_parts(joined, rules)
    if model is not None:
        missing = [c for c in features if c not in joined.columns]
        if missing:
            raise RiskpipeError(f"model {model.version} needs features missing from the day: {', '.join(missing[:8])}")
        always = rule_score >= CASCADE_RULE_SCORE if cascade else None
        p_model = predict_batches(model, joined.select(features), batch_rows, cascade=cascade, always=always)
        version = model.version
    else:
        p_model, version = WEAK_RULE_FLOOR * rule_score, NO_MODEL_VERSION
    risk = blend(p_model, rule_score, rule_weight, floor_score)

    # reasons: one list per distinct (rule reasons, cheap code), the top rows their own lists
    cheap_codes: list[str] = []
    cheap = np.zeros(n, dtype=np.int64)
    top_idx = np.zeros(0, dtype=np.int64)
    top_codes: list[list[str]] = []
    if model is not None and n:
        index, cheap_codes = cheap_reason_index(
            joined, model.importance, model.baseline, model.meta.get("high_value", {})
        )
        cheap = joined.select(index.alias("_cheap"))["_cheap"].cast(pl.Int64).to_numpy()
        top_idx = top_rows(risk, joined[S.SHIPMENT_ID], top_n)
        top = joined[top_idx]
        top_codes = model_reasons_top(model, top, attribution_features(model), model.baseline)
    width = len(cheap_codes) + 1
    combo = pl.Series(rule_idx * width + cheap)
    uniq = combo.unique()
    key = (
        combo.replace_strict(uniq, pl.Series(np.arange(len(uniq), dtype=np.int64)), return_dtype=pl.Int64)
        .to_numpy()
        .copy()
    )
    lists = []
    for c in uniq.to_list():
        r, m = divmod(c, width)
        lists.append(_merge_reasons(rule_lists[r], cheap_codes[m : m + 1]))
    key[top_idx] = len(lists) + np.arange(len(top_idx))
    lists += [_merge_reasons(rule_lists[rule_idx[i]], codes) for i, codes in zip(top_idx, top_codes, strict=False)]
    network = pl.col(S.NETWORK_ID).cast(pl.String) if S.NETWORK_ID in joined.columns else pl.lit(None, dtype=pl.String)
    frame = joined.select(
        pl.col(S.SHIPMENT_ID).cast(pl.String),
        pl.Series(S.RISK_SCORE, risk, dtype=pl.Float64),
        pl.Series(S.RULE_SCORE, rule_score, dtype=pl.Float64),
        pl.lit(version, dtype=pl.String).alias(S.MODEL_VERSION),
        network.alias(S.NETWORK_ID),
        pl.Series(S.MODEL_SCORE, p_model, dtype=pl.Float64),
    )
    out = _Rows(frame, key, lists)
    if keep_top > 0 and model is not None and n:
        kept = top_rows(risk, joined[S.SHIPMENT_ID], keep_top)
        out.top, out.top_rules = joined[kept], [rule_lists[rule_idx[i]] for i in kept]
    return out


_Frame = TypeVar("_Frame", pl.DataFrame, pl.LazyFrame)


def scores_file_frame(scores: _Frame, day: date) -> _Frame:
    """Exactly the contract's ``scores.parquet`` columns (``S.SCORES_FILE_SCHEMA``), in order;
    ``arrival_date`` is ``day`` (the night scores one arrival date). A frame or a scan (the night
    streams the file)."""
    scores = scores.with_columns(pl.lit(day, pl.Date).alias(S.ARRIVAL_DATE))
    return scores.select([pl.col(c).cast(t) for c, t in S.SCORES_FILE_SCHEMA.items()])


def join_raw_features(raw_day: pl.DataFrame, features: pl.DataFrame) -> pl.DataFrame:
    """Raw columns of the day with its features (feature columns win on a name clash), in the
    features' row order (shipments without features are left out).

    The features of a day are sorted by shipment id (``build_features``): the raw columns are
    sorted the same way and set beside them when the ids then match one to one. A hash join
    gathering 80 feature columns of 4 M rows took 4.4 s, the sort 0.9 s."""
    raw = raw_day.drop([c for c in raw_day.columns if c in features.columns and c != S.SHIPMENT_ID])
    extra = [c for c in raw.columns if c != S.SHIPMENT_ID]
    if raw.height == features.height:
        ordered = raw.sort(S.SHIPMENT_ID)
        if ordered.get_column(S.SHIPMENT_ID).equals(features.get_column(S.SHIPMENT_ID)):
            return ordered.hstack(features.drop(S.SHIPMENT_ID))
    joined = features.join(raw, on=S.SHIPMENT_ID, how="inner", maintain_order="left")
    return joined.select(S.SHIPMENT_ID, *extra, *[c for c in features.columns if c != S.SHIPMENT_ID])


def score_day(
    layout: Layout,
    day: date,
    model: Any | None,
    rules: Any | None,
    labels: pl.DataFrame,
    *,
    features: pl.DataFrame | None = None,
    raw_day: pl.DataFrame | None = None,
    rule_weight: float = RULE_WEIGHT,
    top_n: int = TOP_N_ATTRIBUTION,
    batch_rows: int = BATCH_ROWS,
) -> pl.DataFrame:
    """Scores of every shipment arriving on ``day`` (features built point-in-time unless given).

    Side-effect free: reads the raw store (and features' inputs), writes nothing.
    """
    if features is None:
        features = build_features(layout, day, labels)
    if raw_day is None:
        raw_day = scan_raw_shipments(layout, [day]).collect()
    return score_frame(
        join_raw_features(raw_day, features), model, rules, rule_weight=rule_weight, top_n=top_n, batch_rows=batch_rows
    )


def score_features_file(
    features_file: Path,
    raw: pl.LazyFrame,
    model: Any | None,
    rules: Any | None,
    feature_columns: list[str],
    *,
    rule_weight: float = RULE_WEIGHT,
    chunk_rows: int = CHUNK_ROWS,
    top_n: int = TOP_N_ATTRIBUTION,
) -> pl.DataFrame | None:
    """``score_day`` of the whole day in the id-sorted ``features_file`` (its ``feature_columns``)
    and its ``raw`` columns, equal to it, with only
    ``chunk_rows`` feature rows in memory at a time (the whole 4 M-row day's features and the
    raw columns beside them peaked at 3.0 GB): each chunk is a range of ids, scored with the
    day's cascade setting and whole cascade batches (``chunk_rows`` is a multiple of
    ``BATCH_ROWS``, so a batch's candidates are the same rows), then the day's top ``top_n``
    rows (found among each chunk's top rows) get their occlusion reasons.

    None when the day cannot be cut so (features not sorted by id, or a features row without
    its raw row): the caller scores the whole day at once."""
    chunk_rows = max(BATCH_ROWS, chunk_rows // BATCH_ROWS * BATCH_ROWS)
    ids = pl.read_parquet(features_file, columns=[S.SHIPMENT_ID]).get_column(S.SHIPMENT_ID)
    rows = ids.len()
    if rows <= chunk_rows or ids.null_count() or not ids.is_sorted():
        return None
    del ids
    raw_day = raw.collect().sort(S.SHIPMENT_ID)  # the raw columns are narrow: read once
    raw_ids = raw_day.get_column(S.SHIPMENT_ID)
    cascade = rows > CASCADE_MIN_ROWS
    scan = pl.scan_parquet(features_file).select(feature_columns)
    frames, keys, lists, tops, top_rules, offset = [], [], [], [], [], 0
    for start in range(0, rows, chunk_rows):
        feats = scan.slice(start, chunk_rows).collect()
        ends = feats.get_column(S.SHIPMENT_ID).gather([0, feats.height - 1])  # the chunk's id range
        a = int(raw_ids.search_sorted(ends.head(1), side="left")[0])
        b = int(raw_ids.search_sorted(ends.tail(1), side="right")[0])
        joined = join_raw_features(raw_day.slice(a, b - a), feats)
        if joined.height != feats.height:
            return None
        del feats
        part = _score_rows(
            joined,
            model,
            rules,
            rule_weight=rule_weight,
            top_n=0,
            batch_rows=BATCH_ROWS,
            cascade=cascade,
            keep_top=top_n,
        )
        del joined
        frames.append(part.frame)
        keys.append(part.key + offset)
        offset += len(part.lists)
        lists += part.lists
        if part.top is not None and part.top_rules is not None:
            tops.append(part.top)
            top_rules += part.top_rules
    del raw_day, raw_ids
    frame = pl.concat(frames, rechunk=False)
    del frames
    key = np.concatenate(keys)
    if tops and model is not None:  # the day's top rows are among the chunks' top rows
        risk, ids = frame.get_column(S.RISK_SCORE).to_numpy(), frame.get_column(S.SHIPMENT_ID)
        top_idx = top_rows(risk, ids, top_n)
        cand = pl.concat(tops)
        where = dict(zip(cand.get_column(S.SHIPMENT_ID).cast(pl.String).to_list(), range(cand.height), strict=True))
        pick = [where[i] for i in ids.gather(top_idx).to_list()]
        codes = model_reasons_top(model, cand[pick], attribution_features(model), model.baseline)
        key[top_idx] = len(lists) + np.arange(len(top_idx))
        lists += [_merge_reasons(top_rules[j], c) for j, c in zip(pick, codes, strict=True)]
    return _with_reasons(frame, key, lists)


def champion_state(settings: Settings) -> ChampionState:
    """The champion (``riskpipe.registry.ChampionState``): the model, or why there is none (a
    fresh home, or a pointer or model that cannot be used)."""
    return registry.champion_state(Path(settings.models_dir), settings.registry_key_path)


def load_champion(settings: Settings) -> LoadedModel | None:
    """The champion model, or None when there is no usable one: the rules alone rank, and the
    night says so (report banner, summary ``champion_problem``, flow warning and exit status)."""
    return champion_state(settings).model


def scoring_columns(
    model: LoadedModel | None, rules: RuleSet, feature_schema: Mapping[str, pl.DataType]
) -> tuple[list[str], list[str]]:
    """The feature columns and the raw columns that scoring reads: what the champion and the rules
    use. A 4 M-row day's full raw and feature frames joined would take several gigabytes (a
    shard of a 16 M-row day read whole peaked at 9.9 GB)."""
    needed = {S.SHIPMENT_ID, S.NETWORK_ID, *rules.fields}
    if model is not None:
        needed |= set(model.feature_columns)
    features = [c for c in feature_schema if c in needed]
    raw = [S.SHIPMENT_ID, *sorted(c for c in rules.fields if c not in feature_schema)]
    return features, raw
