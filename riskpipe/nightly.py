"""The steps of a night, as library calls the nightly flow wraps one task each.

Each step reads its inputs from the data home and hands the next one a path: large frames
never travel through Prefect. Outputs of the night are staged and published atomically
(:mod:`riskpipe.publish`); the work files of a run live under ``work/D``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl

from riskpipe import schema as S
from riskpipe import score as scoring
from riskpipe.config import Settings
from riskpipe.csvsafe import csv_schema, formula_safe
from riskpipe.errors import RiskpipeError
from riskpipe.features import graph, history
from riskpipe.features.build import write_features, write_parquet_fast
from riskpipe.labels import LabelStore
from riskpipe.model.fit import training_warnings
from riskpipe.model.novelty import NOVELTY, day_novelty, novelty_inputs
from riskpipe.rank import (
    dated_graph_reasons,
    default_reason_texts,
    port_ceilings,
    rank_day,
    rank_pieces,
    top_risk_gaps,
)
from riskpipe.registry import ChampionState, load_model
from riskpipe.report import (
    DRIFT_TODAY_ROWS,
    DayFigures,
    drift_table,
    oea_claim_counts,
    render_report,
    sample_step,
)
from riskpipe.rules import load_rules, rules_file
from riskpipe.score import NO_MODEL_VERSION, champion_state, load_champion, scores_file_frame, scoring_columns
from riskpipe.search import watchlist_step
from riskpipe.shard import attribute_top, top_shipment_ids
from riskpipe.store import (
    PRIVATE_FILE,
    Layout,
    private_dir,
    scan_raw_shipments,
    write_parquet_atomic,
    write_text_atomic,
)

SCORED_FILE = "scored.parquet"
KEY_DRIFT_FEATURES = 12
#: a day with more rows than this is scored in batches (id ranges of about this size, one after
#: the other) so that the score step's memory stays about that of one batch
SCORE_BATCH_ROWS = 5_000_000


def work_dir(layout: Layout, day: date) -> Path:
    return layout.home / "work" / day.isoformat()


def features_path(layout: Layout, day: date) -> Path:
    return layout.day_dir(layout.features, day) / "features.parquet"


def load_labels(settings: Settings) -> pl.DataFrame:
    """Every recorded version of the outcomes: the features keep the ones known at D's cut-off."""
    return LabelStore(settings.db_url).versions()


def require_day(layout: Layout, day: date) -> None:
    if day not in set(layout.raw_days()):
        known = layout.raw_days()
        span = f"{known[0]}..{known[-1]}" if known else "none"
        raise RiskpipeError(f"no ingested manifests for arrival date {day} (raw store has: {span})")


def build_features_step(layout: Layout, settings: Settings, day: date) -> Path:
    """Features of ``day`` point in time (outcomes examined before ``day`` and recorded before its
    cut-off), written to disk."""
    require_day(layout, day)
    return write_features(
        layout,
        day,
        load_labels(settings),
        features_path(layout, day),
        partner_key_path=settings.partner_key_path,
        history_by_product=False,  # written after publishing: history_step
    )


def history_step(layout: Layout, day: date) -> bool:
    """The history tables of ``day`` (for the nights after it), written once the night is
    published: off the critical path from cut-off to published list (the features step no longer
    writes them as a by-product), and the window table of the next night
    (:func:`riskpipe.features.history.update_window`: that night reads one table instead of
    summing its lookback). Idempotent (True when the day's tables were written); if the night
    stops before it, the next night's features step writes the day's tables and sums the lookback."""
    written = history.update_history(layout, day)
    history.update_window(layout, day + timedelta(days=1))
    return written


@dataclass(frozen=True)
class NightSummary:
    """What a night did: the flow's log and Prefect artifacts, the CLI and the bench read it;
    ``reports/D/summary.json``, the run record and the flow's result hold ``as_dict()``."""

    day: str
    shipments: int
    targets: int
    exploration: int
    #: of the day's top-N risk (N = the list's size): what the list could not examine, and why
    top_risk_gaps: dict[str, Any]
    networks_in_targets: int
    model_version: str
    score_mean: float
    score_p99: float
    drift_major: list[str]
    #: why no model ranked tonight (None when the champion did); registered False: fresh home
    champion_problem: str | None = None
    champion_registered: bool = True

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (field order kept): summary.json, run records, flow results."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NightSummary:
        """From ``as_dict()`` output (a flow's result, a run record); unknown keys are ignored."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


class RulesOnlyNight(RiskpipeError):
    """The night was ranked by the rules alone because no champion model was usable; raised by
    the nightly flow after publishing, unless rules-only nights are allowed. ``result`` is what
    the flow would have returned (None if it was lost on the way)."""

    def __init__(self, message: str, result: dict | None = None) -> None:
        super().__init__(message)
        self.result = result


def scoring_champion(settings: Settings, scores: pl.DataFrame):
    """The model that scored ``scores`` (its ``model_version``), not the champion of this instant:
    a promotion or rollback between the score and rank steps must not make the report, summary
    and evaluation describe another model than the one that ranked the night."""
    used = scores.get_column(S.MODEL_VERSION).unique().to_list() if scores.height else []
    if not used or used == [NO_MODEL_VERSION]:
        state = champion_state(settings)
        problem = state.problem or "the night was scored by the rules alone (no usable champion when it was scored)"
        return ChampionState(None, state.registered, problem)
    if len(used) > 1:
        raise RiskpipeError(f"scores of one night come from several models {sorted(map(str, used))}: rerun the night")
    try:
        model = load_model(Path(settings.models_dir), str(used[0]), key_path=settings.registry_key_path)
    except RiskpipeError as exc:
        return ChampionState(None, True, f"model {used[0]} scored the night but cannot be loaded now: {exc}")
    return ChampionState(model, True)


def score_step(
    layout: Layout, settings: Settings, day: date, features_file: Path, batch_rows: int | None = None
) -> Path:
    """Scores with reasons for every shipment of ``day`` -> ``work/D/scored.parquet``.

    Reads only the columns the champion and the rules use (:func:`scoring_columns`), a chunk of
    rows at a time (:func:`riskpipe.score.score_features_file`: same scores as the whole day at
    once, a third of the memory). A day of more than ``batch_rows`` rows is scored in batches
    (:func:`_score_in_batches`), the day's top rows attributed at the end (as a Dask run does)."""
    batch_rows = SCORE_BATCH_ROWS if batch_rows is None else batch_rows
    model, rules = load_champion(settings), load_rules(rules_file(settings))
    feature_columns, raw_columns = scoring_columns(model, rules, pl.read_parquet_schema(features_file))
    rows = pl.scan_parquet(features_file).select(pl.len()).collect().item()
    if rows > batch_rows:
        scored = _score_in_batches(
            layout, day, features_file, model, rules, feature_columns, raw_columns, rows, -(-rows // batch_rows)
        )
        scored = watchlist_step(layout, settings, day, scored)
        return write_parquet_fast(scored, work_dir(layout, day) / SCORED_FILE)
    # a large day is read a chunk of rows at a time (same scores: score_features_file)
    raw = scan_raw_shipments(layout, [day]).select(raw_columns)
    chunked = scoring.score_features_file(features_file, raw, model, rules, feature_columns)
    if chunked is None:  # a small day, or a features file that cannot be cut by id ranges
        features = pl.read_parquet(features_file, columns=feature_columns)
        raw_day = raw.collect()
        scored = scoring.score_day(layout, day, model, rules, pl.DataFrame(), features=features, raw_day=raw_day)
    else:
        scored = chunked
    scored = watchlist_step(layout, settings, day, scored)  # WATCHLIST reasons (riskpipe.search)
    return write_parquet_fast(scored, work_dir(layout, day) / SCORED_FILE)  # a work file, read whole


def _score_in_batches(
    layout: Layout,
    day: date,
    features_file: Path,
    model,
    rules,
    feature_columns: list[str],
    raw_columns: list[str],
    rows: int,
    n: int,
) -> pl.DataFrame:
    """Score ``n`` contiguous row ranges of the features file (``rows`` rows) one after the other
    (cheap reasons), then give the day's top rows their occlusion reasons, as ``score_frame``
    does for a whole day.

    The features file is sorted by shipment id, so a range is a range of ids: its raw columns are
    read by an id filter, and the batches concatenated in order are the single-process frame
    (no shard files, no sort, no join of the whole day)."""
    starts = [i * rows // n for i in range(n)] + [rows]
    raw = scan_raw_shipments(layout, [day])
    parts = []
    for a, b in zip(starts, starts[1:], strict=False):
        feats = pl.scan_parquet(features_file).select(feature_columns).slice(a, b - a).collect()
        ids = feats.get_column(S.SHIPMENT_ID)
        raw_part = (
            raw.select(raw_columns)
            .filter(pl.col(S.SHIPMENT_ID).is_between(pl.lit(ids.min()), pl.lit(ids.max())))
            .collect()
        )
        parts.append(
            scoring.score_day(layout, day, model, rules, pl.DataFrame(), features=feats, raw_day=raw_part, top_n=0)
        )
        del feats, raw_part
    scored = pl.concat(parts, rechunk=False)
    if model is None or scoring.TOP_N_ATTRIBUTION <= 0:
        return scored
    # a filter on the ids, not a semi join: the join read the whole raw day and features file
    top = pl.col(S.SHIPMENT_ID).is_in(top_shipment_ids(scored, scoring.TOP_N_ATTRIBUTION)[S.SHIPMENT_ID].implode())
    raw_top = raw.filter(top).collect()
    feats_top = pl.scan_parquet(features_file).filter(top).collect()
    return attribute_top(scored, scoring.join_raw_features(raw_top, feats_top), model, scoring.TOP_N_ATTRIBUTION)


def with_novelty(
    layout: Layout, day: date, scored: pl.DataFrame, model: Any, batch_rows: int | None = None
) -> pl.DataFrame:
    """``scored`` with the ``novelty`` column of the model that scored the night
    (:func:`riskpipe.model.novelty.day_novelty`), so that novelty-aware exploration
    (``exploration_novelty_share``) draws with unequal, recorded chances in production too.

    Only when the setting is on (it costs one more pass of the trees and the linear partner over
    the day's feature rows, read in id ranges of ``batch_rows`` as the score step reads them).
    A rules-only night or a day without its features file gets no column: ``rank_day`` then
    explores uniformly."""
    feats_file = features_path(layout, day)
    if model is None or not feats_file.exists():
        return scored
    batch_rows = SCORE_BATCH_ROWS if batch_rows is None else batch_rows
    cols = [S.SHIPMENT_ID, *novelty_inputs(model.model, list(pl.read_parquet_schema(feats_file)))]
    rows = pl.scan_parquet(feats_file).select(pl.len()).collect().item()
    starts = list(range(0, rows, max(1, batch_rows))) + [rows]
    batches = (
        pl.scan_parquet(feats_file).select(cols).slice(a, b - a).collect()
        for a, b in zip(starts, starts[1:], strict=False)
    )
    return scored.drop(NOVELTY, strict=False).join(day_novelty(model.model, batches), on=S.SHIPMENT_ID, how="left")


def rank_and_stage_step(
    layout: Layout,
    settings: Settings,
    day: date,
    scored_file: Path,
    staged: dict[str, str],
    capacity: int | None,
    quarantine_by_reason: dict[str, int],
    piece_rows: int | None = None,
) -> NightSummary:
    """Targeting list, scores file and report written into the staging directories.

    Holds the list's rows, a range of ``piece_rows`` scored rows (default ``RANK_PIECE_ROWS``)
    and samples, never the scored day: the list is ranked range by range
    (:func:`riskpipe.rank.rank_pieces`), the scores file is streamed, the report's figures are
    streaming aggregates and drift compares samples (:func:`riskpipe.report.drift_table`). So a
    worker ranks a day larger than its memory (the night on a cluster). Novelty-aware exploration
    (``exploration_novelty_share`` > 0, off by default) ranks the day's disagreement over the whole
    day and still holds the day's scores (:func:`rank_day`)."""
    piece_rows = RANK_PIECE_ROWS if piece_rows is None else max(1, int(piece_rows))
    used = pl.scan_parquet(scored_file).select(pl.col(S.MODEL_VERSION).unique()).collect()
    champion = scoring_champion(settings, used)
    texts = default_reason_texts(settings)
    raw = scan_raw_shipments(layout, [day])
    if settings.exploration_novelty_share > 0:
        scored = with_novelty(layout, day, pl.read_parquet(scored_file), champion.model)
        narrow = raw.select(RANK_COLUMNS).collect()
        targets = rank_day(scored, narrow, settings, capacity=capacity, texts=texts)
        top, counts = scored.select(S.SHIPMENT_ID, S.RISK_SCORE), narrow.select(S.SHIPMENT_ID, S.PORT_OF_ENTRY)
        port_counts = None
        del scored
    else:
        with _rank_pieces_of(layout, day, scored_file, piece_rows) as (pieces, carried):
            ranked = rank_pieces(pieces, carried, settings, capacity=capacity, texts=texts)
        targets, top, counts = ranked.targets, ranked.top, ranked.top
        port_counts = ranked.plan.counts if ranked.plan is not None else {}
    targets = with_analyst_fields(layout, day, targets)
    seized = graph.seized_days_of(features_path(layout, day), targets.get_column(S.SHIPMENT_ID))
    targets = dated_graph_reasons(targets, seized, day, texts)  # "... seized on 2026-05-12"
    gaps = top_risk_gaps(top, counts, targets, settings, capacity, port_counts=port_counts)
    del top, counts

    scores_file_frame(pl.scan_parquet(scored_file), day).sink_parquet(
        Path(staged["scores"]) / "scores.parquet", engine="streaming"
    )
    targets.write_parquet(Path(staged["targets"]) / "targets.parquet")
    write_targets_csv(targets, Path(staged["targets"]))

    figures = DayFigures.of(pl.scan_parquet(scored_file), raw)
    model = champion.model
    feats_file = features_path(layout, day)
    drift_cols = _key_features(model, pl.read_parquet_schema(feats_file) if feats_file.exists() else None)
    step = sample_step(figures.shipments, DRIFT_TODAY_ROWS)
    sample = pl.scan_parquet(scored_file).select(S.RISK_SCORE).gather_every(step).collect(engine="streaming")
    features = (
        pl.scan_parquet(feats_file).select(drift_cols).gather_every(step).collect(engine="streaming")
        if feats_file.exists() and drift_cols
        else None
    )
    drift = drift_table(layout, day, sample, features, drift_cols)
    del sample, features
    evaluation = evaluation_rows(model.meta) if model is not None else None
    feats_scan = pl.scan_parquet(feats_file) if feats_file.exists() else None
    html = render_report(
        day,
        figures,
        targets,
        None,
        quarantine_by_reason,
        model.version if model is not None else None,
        evaluation,
        drift,
        datetime.now(UTC).isoformat(timespec="seconds"),
        champion_problem=champion.problem,
        model_warnings=training_warnings(model.meta) if model is not None else (),
        port_slots=port_ceilings(dict(figures.by_port), settings, capacity),
        gaps=gaps,
        oea_claims=oea_claim_counts(raw.select(S.TRUSTED_TRADER), feats_scan),
    )
    (Path(staged["reports"]) / "report.html").write_text(html, encoding="utf-8")
    summary = NightSummary(
        day=day.isoformat(),
        shipments=figures.shipments,
        targets=targets.height,
        exploration=targets.filter(pl.col(S.SELECTION) == "exploration").height,
        top_risk_gaps=gaps,
        networks_in_targets=targets[S.NETWORK_ID].drop_nulls().n_unique(),
        model_version=model.version if model is not None else "rules-only",
        score_mean=figures.score_mean,
        score_p99=figures.score_p99,
        drift_major=[d["name"] for d in drift if d["level"] == "major"],
        champion_problem=champion.problem,
        champion_registered=champion.registered,
    )
    (Path(staged["reports"]) / "summary.json").write_text(json.dumps(summary.as_dict(), indent=1), encoding="utf-8")
    return summary


def _held(frame: pl.DataFrame) -> Callable[[], pl.DataFrame]:
    return lambda: frame


#: the rank step reads the scored day in id ranges of this many rows (one at a time)
RANK_PIECE_ROWS = 2_000_000
_RANK_NARROW = [S.SHIPMENT_ID, S.RISK_SCORE, S.NETWORK_ID]


@contextmanager
def _rank_pieces_of(
    layout: Layout, day: date, scored_file: Path, piece_rows: int
) -> Iterator[tuple[list[Callable[[], pl.DataFrame]], Callable[[pl.Series], pl.DataFrame]]]:
    """The scored day as :func:`riskpipe.rank.rank_pieces` reads it: id ranges of ``piece_rows``
    rows of the (id-sorted) scores joined to the raw rows' ranking columns, and the carried score
    columns of given ids. One range is held in memory; several are written once to a private
    folder of the day's work directory (removed on exit) and read back on each pass."""
    schema = pl.read_parquet_schema(scored_file)
    narrow = [pl.col(c) if c in schema else pl.lit(None, dtype=pl.String).alias(c) for c in _RANK_NARROW]
    other = [c for c in schema if c not in _RANK_NARROW]
    rows = pl.scan_parquet(scored_file).select(pl.len()).collect().item()
    raw = scan_raw_shipments(layout, [day]).select(RANK_COLUMNS)

    def joined(first: int) -> pl.DataFrame:
        part = pl.scan_parquet(scored_file).slice(first, piece_rows).select(narrow).collect()
        ids = part.get_column(S.SHIPMENT_ID)
        lo, hi = ids.min(), ids.max()
        rows_of = raw.filter(pl.col(S.SHIPMENT_ID).is_between(pl.lit(lo), pl.lit(hi))).collect(engine="streaming")
        return part.join(rows_of, on=S.SHIPMENT_ID, how="inner", maintain_order="left")

    def carried(ids: pl.Series) -> pl.DataFrame:
        picked = pl.scan_parquet(scored_file).filter(pl.col(S.SHIPMENT_ID).is_in(ids.implode()))
        return picked.select(S.SHIPMENT_ID, *other).collect(engine="streaming")

    starts = list(range(0, rows, piece_rows))
    if len(starts) <= 1:
        yield ([_held(joined(0))] if rows else []), carried
        return
    folder = private_dir(work_dir(layout, day) / "rank-pieces", under=layout.home)
    try:
        files = []
        for i, first in enumerate(starts):
            files.append(write_parquet_atomic(joined(first), folder / f"piece-{i:04d}.parquet", PRIVATE_FILE))
        yield [partial(pl.read_parquet, f) for f in files], carried
    finally:
        shutil.rmtree(folder, ignore_errors=True)


RANK_COLUMNS = [S.SHIPMENT_ID, S.PORT_OF_ENTRY, S.ARRIVAL_DATE, S.MODE]


def write_targets_csv(targets: pl.DataFrame, folder: Path) -> None:
    """``targets.csv`` and, beside it, ``schema.json`` (its columns' types: codes are text).

    The CSV is for people with spreadsheets: manifest text that starts a formula is written as
    text; ``reasons`` is one cell, the codes joined with ``S.REASONS_SEPARATOR``."""
    frame = targets.with_columns(pl.col(S.REASONS).list.join(S.REASONS_SEPARATOR))
    formula_safe(frame).write_csv(folder / "targets.csv")
    schema = csv_schema(targets, "targets.csv")
    (folder / "schema.json").write_text(json.dumps(schema, indent=1) + "\n", encoding="utf-8")


def with_analyst_fields(layout: Layout, day: date, targets: pl.DataFrame) -> pl.DataFrame:
    """Fill the targets' analyst fields (names, address, description, ...) from the raw store,
    reading only the selected shipments."""
    raw = scan_raw_shipments(layout, [day])
    fields = [c for c in S.TARGETS_SCHEMA if c in raw.collect_schema() and c not in RANK_COLUMNS]
    ids = targets[S.SHIPMENT_ID]
    details = raw.filter(pl.col(S.SHIPMENT_ID).is_in(ids.implode())).select([S.SHIPMENT_ID, *fields]).collect()
    out = targets.drop(fields).join(details, on=S.SHIPMENT_ID, how="left", maintain_order="left")
    return out.select([pl.col(c).cast(t) for c, t in S.TARGETS_SCHEMA.items()])


def evaluation_rows(meta: dict) -> list[dict] | None:
    """The champion's held-out evaluation as report rows (model vs baselines, preferred view)."""
    metrics = meta.get("metrics") or {}
    view_name = metrics.get("preferred_view")
    view = (metrics.get("views") or {}).get(view_name) if view_name else None
    if not view:
        return None
    rows = []
    for name, m in view.items():
        row = {"scorer": name, "view": view_name}
        for k in m.get("precision_at_prevalence") or {}:
            row[f"P@{k} prev"] = m["precision_at_prevalence"][k]
            row[f"R@{k} prev"] = m["recall_at_prevalence"][k]
        row |= {"P@capacity": m.get("precision_at_capacity"), "R@capacity": m.get("recall_at_capacity")}
        for k in ("1", "2", "5", "10"):
            row[f"P@{k}%"] = (m.get("precision_at") or {}).get(k)
            row[f"R@{k}%"] = (m.get("recall_at") or {}).get(k)
        row["PR-AUC"] = m.get("pr_auc")
        rows.append(row)
    return rows


def _key_features(model, schema) -> list[str]:
    if schema is None:
        return []
    numeric = [c for c, t in schema.items() if t.is_numeric()]
    if model is not None and model.importance:
        ranked = sorted(model.importance.items(), key=lambda kv: -kv[1])
        return [k for k, _ in ranked if k in numeric][:KEY_DRIFT_FEATURES]
    return [c for c in numeric if c != S.SHIPMENT_ID][:KEY_DRIFT_FEATURES]


def top_targets_rows(targets_file: Path, n: int = 15) -> list[dict]:
    """The first ``n`` targets without personal data (for logs and Prefect artifacts)."""
    cols = [
        S.RANK,
        S.SHIPMENT_ID,
        S.PORT_OF_ENTRY,
        S.RISK_SCORE,
        S.SELECTION,
        S.REASONS,
        S.REASON_TEXT,
        S.NETWORK_ID,
        S.COUNTRY_OF_ORIGIN,
        S.MODE,
        S.HTS_CODE,
    ]
    frame = pl.read_parquet(targets_file, columns=cols).sort(S.RANK).head(n)
    return frame.with_columns(pl.col(S.RISK_SCORE).round(4)).to_dicts()


def write_run_record(layout: Layout, day: date, record: dict) -> Path:
    return write_text_atomic(json.dumps(record, indent=1, default=str), work_dir(layout, day) / "run.json")
