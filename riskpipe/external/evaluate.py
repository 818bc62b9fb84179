"""External benchmark evaluation: train on the training files, score the test file, report
ranking metrics on every test row and on the unseen ones (contract section 5)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from riskpipe.errors import RiskpipeError
from riskpipe.external.mapping import Mapping
from riskpipe.external.readers import (
    first_rows,
    group_keys,
    inverse_group_sizes,
    load_labelled_keys,
    novel_rows,
    unseen_rows,
)
from riskpipe.external.transform import build_model
from riskpipe.metrics import DEFAULT_FRACTIONS, RankingReport, ranking_report


def _roc_auc(y: np.ndarray, score: np.ndarray) -> float | None:
    """ROC-AUC (ties count half); None when the rows hold one class only."""
    if y.size == 0 or y.min() == y.max():
        return None
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score))


class ViewReport(RankingReport):
    """``ranking_report`` of one view's rows plus ``roc_auc`` (None with one class)."""

    roc_auc: float | None


def view_report(y: np.ndarray, score: np.ndarray, fractions: tuple[float, ...] = DEFAULT_FRACTIONS) -> ViewReport:
    """``ranking_report`` of some rows plus ``roc_auc`` (None with one class)."""
    return {
        **ranking_report(y, score, fractions=fractions),
        "roc_auc": _roc_auc(np.asarray(y), np.asarray(score, dtype=float)),
    }


def views_report(
    y: np.ndarray, score: np.ndarray, unseen: np.ndarray | None, fractions: tuple[float, ...] = DEFAULT_FRACTIONS
) -> dict[str, ViewReport]:
    """``{"all": ..., "unseen": ...}`` (``unseen`` only when a mask is given): the same scores
    read on every test row and on the rows whose seen-column values the training files lack."""
    views = {"all": view_report(y, score, fractions)}
    if unseen is not None:
        views["unseen"] = view_report(y[unseen], score[unseen], fractions)
    return views


def _mean(values: list[Any]) -> Any:
    """Leaf-wise mean of equally shaped reports (equal leaves, e.g. row counts, kept as they are)."""
    first = values[0]
    if isinstance(first, dict):
        return {k: _mean([v[k] for v in values]) for k in first}
    if all(v == first for v in values):
        return first
    if any(v is None for v in values):  # e.g. ROC-AUC undefined in one fit only: not averaged
        return None
    return float(np.mean(values))


def _sd(reports: list[ViewReport], ddof: int = 0) -> dict[str, dict[str, float] | float | None]:
    """Standard deviation (``ddof``: 0 across seeds, the spread of the fits themselves; 1 across
    backtest folds, a sample of periods) of the precision, recall and AUC figures of one view."""
    out: dict[str, dict[str, float] | float | None] = {}

    def sd(values: list[float]) -> float:
        return float(np.std(values, ddof=ddof)) if len(values) > ddof else 0.0

    for key in ("precision_at", "recall_at"):
        out[key] = {k: sd([r[key][k] for r in reports]) for k in reports[0][key]}
    for figure in ("pr_auc", "roc_auc"):
        vals = [r[figure] for r in reports]
        known = [v for v in vals if v is not None]
        out[figure] = None if len(known) < len(vals) else sd(known)
    return out


def evaluate(
    mapping: Mapping,
    train_paths: list[Path],
    test_path: Path,
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS,
    random_state: int = 0,
    seeds: int = 1,
) -> dict[str, Any]:
    """Train on the training file(s), score the test file, report ranking metrics.

    Returns ``ranking_report`` of all test rows plus ``roc_auc``, ``views`` (``all`` and, with
    ``seen_columns``, ``unseen``: the test rows whose seen values occur in no training file),
    ``train_rows``, ``train_positives``, ``seconds`` (wall time of fit and predict) and
    ``n_iter``. With ``seeds`` > 1 the model is fitted with random states ``random_state`` ..
    ``random_state + seeds - 1`` and every figure is the mean over the fits (each view gets an
    ``sd`` entry): on a thousand rows one fit's precision at 5 % varies by several points."""
    if not train_paths:
        raise RiskpipeError("evaluate: give at least one --train file")
    if seeds < 1:
        raise RiskpipeError(f"evaluate: seeds must be at least 1, got {seeds}")
    key_columns = _key_columns(mapping)
    X_train, y_train, keys_train = load_labelled_keys(list(train_paths), mapping, key_columns)
    X_test, y_test, seen_test = load_labelled_keys([test_path], mapping)
    return _fit_and_report(
        mapping, (X_train, y_train, keys_train), (X_test, y_test, seen_test), fractions, random_state, seeds
    )


def _key_columns(mapping: Mapping) -> tuple[str, ...]:
    keyed = (*mapping.seen_columns, *mapping.one_row_per, *mapping.group_folds_by, *mapping.weight_per)
    keyed += (*mapping.novel_rows_by, mapping.date) if mapping.novel_rows_by and mapping.date else ()
    return tuple(dict.fromkeys(keyed))


def _fit_and_report(
    mapping: Mapping,
    train: tuple[pl.DataFrame, np.ndarray, pl.DataFrame],
    test: tuple[pl.DataFrame, np.ndarray, pl.DataFrame],
    fractions: tuple[float, ...],
    random_state: int,
    seeds: int,
) -> dict[str, Any]:
    """Fit ``seeds`` models on ``train`` (features, labels, key columns as text) and report the
    views of ``test`` (features, labels, its seen-column values as text)."""
    X_train, y_train, keys_train = train
    X_test, y_test, seen_test = test
    seen_train = keys_train.select(mapping.seen_columns)
    rows_read = int(y_train.shape[0])
    if mapping.one_row_per:  # near-copies once; seen-ness still reads every training row
        keep = first_rows(keys_train.select(mapping.one_row_per))
        X_train, y_train, keys_train = X_train[keep], y_train[keep], keys_train[keep]
    if mapping.novel_rows_by and mapping.date:  # the rows that were new when they arrived
        day = keys_train.get_column(mapping.date).str.to_date("%Y-%m-%d", strict=False)
        novel = novel_rows(keys_train.select(mapping.novel_rows_by), day, mapping.novel_period)
        X_train, y_train, keys_train = X_train.filter(novel), y_train[novel], keys_train.filter(novel)
    if y_train.sum() == 0:
        raise RiskpipeError(
            f"label values {list(mapping.positive)} not found in column {mapping.label!r} of the training data"
        )
    if y_train.sum() == y_train.shape[0]:
        raise RiskpipeError(f"every training row is positive: check 'positive' in {mapping.source}")
    unseen = unseen_rows(seen_train, seen_test.select(mapping.seen_columns)) if mapping.seen_columns else None
    groups = group_keys(keys_train.select(mapping.group_folds_by)) if mapping.group_folds_by else None
    weights = inverse_group_sizes(keys_train.select(mapping.weight_per)) if mapping.weight_per else None
    runs, seconds, n_iter = [], 0.0, []
    for seed in range(random_state, random_state + seeds):
        model = build_model(mapping, random_state=seed)
        t0 = time.perf_counter()
        model.fit(X_train, y_train, sample_weight=weights, groups=groups)
        score = model.predict_proba(X_test)[:, 1]
        seconds += time.perf_counter() - t0
        runs.append(views_report(y_test, score, unseen, fractions))
        n_iter.append(int(model.n_iter_))
    views = {name: _mean([r[name] for r in runs]) for name in runs[0]}
    if seeds > 1:
        for name in views:
            views[name]["sd"] = _sd([r[name] for r in runs])
    if unseen is not None:
        views["unseen"]["seen_columns"] = list(mapping.seen_columns)
    report = {k: v for k, v in views["all"].items() if k != "sd"}
    report.update(
        views=views,
        seeds=seeds,
        train_rows=int(y_train.shape[0]),
        train_rows_read=rows_read,
        train_positives=int(y_train.sum()),
        seconds=round(seconds, 2),
        n_iter=int(round(float(np.mean(n_iter)))),
    )
    if not math.isfinite(report["pr_auc"]):  # pragma: no cover - defensive
        report["pr_auc"] = 0.0
    return report


PERIODS = ("month", "quarter")


def _period_start(day: date, period: str) -> date:
    month = day.month if period == "month" else 3 * ((day.month - 1) // 3) + 1
    return date(day.year, month, 1)


def period_name(start: date, period: str) -> str:
    """``2021Q2`` for a quarter, ``2021-04`` for a month."""
    return f"{start.year}Q{(start.month - 1) // 3 + 1}" if period == "quarter" else f"{start:%Y-%m}"


def backtest_periods(days: list[date], folds: int, period: str) -> list[date]:
    """The first days of the calendar periods (``month`` or ``quarter``) that hold rows, oldest
    first, keeping the last ``folds`` + 1: the first of them only trains."""
    if period not in PERIODS:
        raise RiskpipeError(f"backtest: period must be one of {', '.join(PERIODS)}, got {period!r}")
    if folds < 1:
        raise RiskpipeError(f"backtest: folds must be at least 1, got {folds}")
    starts = sorted({_period_start(d, period) for d in days})
    if len(starts) < folds + 1:
        raise RiskpipeError(
            f"backtest: {folds} fold(s) need {folds + 1} {period}s with rows; the training files "
            f"hold {len(starts)} ({', '.join(s.isoformat() for s in starts) or 'none'})"
        )
    return starts[-(folds + 1) :]


def backtest(
    mapping: Mapping,
    paths: list[Path],
    folds: int,
    period: str = "quarter",
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS,
    random_state: int = 0,
    seeds: int = 1,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """A rolling-origin backtest over labelled files: the rows are cut by the mapping's date into
    calendar periods, and each of the last ``folds`` periods is scored by models trained on every
    row dated before it (an expanding window). Each fold is reported as ``evaluate`` reports a
    test file (views ``all`` and ``unseen``, the latter against that fold's training rows). In
    the top-level figures and ``views`` precision, recall, lift and the AUCs are the unweighted
    mean over the folds whose view holds rows (``folds`` says how many), with ``fold_sd`` (the
    sample standard deviation across them); rows, positives and rows at k are summed over those
    folds and the prevalence pooled. Rows without a date are left out (``rows_undated``). Per-file
    derivations (``frequency``) are refused: they would count later periods' rows.

    One period's top 5 % is a few dozen rows: a choice made on several periods is less at the
    mercy of one period's draw than a choice made on one validation file."""
    if not paths:
        raise RiskpipeError("backtest: give at least one --train file")
    if seeds < 1:
        raise RiskpipeError(f"backtest: seeds must be at least 1, got {seeds}")
    if not mapping.date:
        raise RiskpipeError(f"backtest: {mapping.source} names no [dataset].date to cut periods by")
    per_file = [d.name for d in mapping.derive if d.op == "frequency"]
    if per_file:  # a share of the whole file's rows: a fold's rows would count later periods' rows
        raise RiskpipeError(
            f"backtest: derivation(s) {', '.join(map(repr, per_file))} of {mapping.source} count every row of a "
            "file, later periods included; split the files by period and use --test, or leave them out"
        )
    key_columns = _key_columns(mapping)
    X, y, keys = load_labelled_keys(list(paths), mapping, tuple(dict.fromkeys((*key_columns, mapping.date))))
    day = keys.get_column(mapping.date).str.to_date("%Y-%m-%d", strict=False)
    dated = day.is_not_null().to_numpy()
    undated = int((~dated).sum())
    X, y, keys, day = X.filter(dated), y[dated], keys.filter(dated), day.filter(dated)
    starts = backtest_periods(day.unique().to_list(), folds, period)
    keys = keys.select(key_columns)
    stamps = day.to_numpy()
    out_folds = []
    for i, start in enumerate(starts[1:], 1):
        end = starts[i + 1] if i + 1 < len(starts) else None
        before = stamps < np.datetime64(start)
        inside = ~before if end is None else ~before & (stamps < np.datetime64(end))
        if progress is not None:
            progress(f"fold {i}/{folds}: train before {start}, test {start} .. {end or 'end'}")
        report = _fit_and_report(
            mapping,
            (X.filter(before), y[before], keys.filter(before)),
            (X.filter(inside), y[inside], keys.filter(inside).select(mapping.seen_columns)),
            fractions,
            random_state,
            seeds,
        )
        report["period"] = {
            "name": period_name(start, period),
            "start": start.isoformat(),
            "end": end.isoformat() if end else None,
        }
        out_folds.append(report)
    views: dict[str, Any] = {}
    for name in out_folds[0]["views"]:
        # a fold whose view holds no row (e.g. every price seen before) has no precision to average
        per_fold = [f["views"][name] for f in out_folds if f["views"][name]["n"]]
        if not per_fold:
            continue
        view = _mean([{k: v for k, v in f.items() if k not in ("sd", "seen_columns")} for f in per_fold])
        for count in ("n", "positives"):
            view[count] = int(sum(f[count] for f in per_fold))
        view["k_at"] = {k: int(sum(f["k_at"][k] for f in per_fold)) for k in per_fold[0]["k_at"]}
        view["base_rate"] = view["positives"] / view["n"]
        view["folds"] = len(per_fold)
        view["fold_sd"] = _sd(per_fold, ddof=1)
        if "seen_columns" in per_fold[0]:
            view["seen_columns"] = per_fold[0]["seen_columns"]
        views[name] = view
    report = {k: v for k, v in views["all"].items() if k != "fold_sd"}
    report.update(
        views=views,
        folds=out_folds,
        period=period,
        seeds=seeds,
        rows_undated=undated,
        seconds=round(sum(f["seconds"] for f in out_folds), 2),
    )
    return report


def contract_json(report: dict[str, Any]) -> dict[str, Any]:
    """The ``--json`` shape: contract section 5's precision and recall at 1/2/5/10 % of all test
    rows, widened with ``views`` (each: rows, positives, prevalence, precision and recall at
    1/2/5/10 %, PR-AUC, ROC-AUC; ``unseen`` also names its seen columns)."""
    keys = ("1", "2", "5", "10")
    out: dict[str, Any] = {
        "precision_at": {k: report["precision_at"][k] for k in keys},
        "recall_at": {k: report["recall_at"][k] for k in keys},
    }
    views = report.get("views")
    if views:
        out["views"] = {}
        for name, v in views.items():
            view = {
                "rows": v["n"],
                "positives": v["positives"],
                "prevalence": v["base_rate"],
                "precision_at": {k: v["precision_at"][k] for k in keys},
                "recall_at": {k: v["recall_at"][k] for k in keys},
                "pr_auc": v["pr_auc"],
                "roc_auc": v["roc_auc"],
            }
            if "seen_columns" in v:
                view["seen_columns"] = v["seen_columns"]
            if "folds" in v:  # a backtest: the number of folds averaged
                view["folds"] = v["folds"]
            for spread in ("sd", "fold_sd"):  # across fits; across backtest folds
                if spread in v:
                    view[spread] = {
                        key: (
                            {k: v[spread][key][k] for k in keys} if isinstance(v[spread][key], dict) else v[spread][key]
                        )
                        for key in v[spread]
                    }
            out["views"][name] = view
    return out
