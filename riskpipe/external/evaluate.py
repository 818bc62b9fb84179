"""External benchmark evaluation: train on the training files, score the test file, report
ranking metrics on every test row and on the unseen ones (contract section 5)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from riskpipe.errors import RiskpipeError
from riskpipe.external.mapping import Mapping
from riskpipe.external.readers import (
    first_rows,
    group_keys,
    inverse_group_sizes,
    load_labelled_keys,
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


def _sd(reports: list[ViewReport]) -> dict[str, dict[str, float] | float | None]:
    """Standard deviation across seeds of the precision, recall and AUC figures of one view."""
    out: dict[str, dict[str, float] | float | None] = {}
    for key in ("precision_at", "recall_at"):
        out[key] = {k: float(np.std([r[key][k] for r in reports])) for k in reports[0][key]}
    for figure in ("pr_auc", "roc_auc"):
        vals = [r[figure] for r in reports]
        known = [v for v in vals if v is not None]
        out[figure] = None if len(known) < len(vals) else float(np.std(known))
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
    keyed = (*mapping.seen_columns, *mapping.one_row_per, *mapping.group_folds_by, *mapping.weight_per)
    key_columns = tuple(dict.fromkeys(keyed))
    X_train, y_train, keys_train = load_labelled_keys(list(train_paths), mapping, key_columns)
    seen_train = keys_train.select(mapping.seen_columns)
    rows_read = int(y_train.shape[0])
    if mapping.one_row_per:  # near-copies once; seen-ness still reads every training row
        keep = first_rows(keys_train.select(mapping.one_row_per))
        X_train, y_train, keys_train = X_train[keep], y_train[keep], keys_train[keep]
    if y_train.sum() == 0:
        raise RiskpipeError(
            f"label values {list(mapping.positive)} not found in column {mapping.label!r} of the training data"
        )
    if y_train.sum() == y_train.shape[0]:
        raise RiskpipeError(f"every training row is positive: check 'positive' in {mapping.source}")
    X_test, y_test, seen_test = load_labelled_keys([test_path], mapping)
    unseen = unseen_rows(seen_train, seen_test) if mapping.seen_columns else None
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
            if "sd" in v:
                view["sd"] = {
                    key: ({k: v["sd"][key][k] for k in keys} if isinstance(v["sd"][key], dict) else v["sd"][key])
                    for key in v["sd"]
                }
            out["views"][name] = view
    return out
