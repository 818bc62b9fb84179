"""Held-out evaluation of scorers on whole days, read three ways (the metrics, not the data).

Evaluation scores every shipment of each held-out day (not only the examined ones), selects the
top ``ceil(m x prevalence x shipments)`` per day for m = 1 and 3 (the headline: at 1x a perfect
list finds every positive; the prevalence is the view's own, ``PREVALENCE_BASIS``), and also the
top ``capacity`` (the ports' exam slots) and top 1/2/5/10 % per day, and reads the result three
ways:

- ``labelled``: precision = positives among the selected shipments that were examined, recall =
  share of the day's known positives selected. Biased: examined shipments were chosen by the old
  targeting, so a model resembling it looks better than it is.
- ``random_exams``: the same restricted to random compliance exams (``exam_reason = random``):
  an unbiased hit rate and an unbiased (noisy) recall estimate. About 1 % of parcels get one, so
  at a prevalence of 3 in 1,000 a week holds a handful of positives: retraining evaluates this
  view on its calibration days too, and a view with fewer than ``MIN_EVIDENCE_POSITIVES``
  positives is printed as "not enough evidence", not as figures.
- ``truth`` (synthetic worlds only): against ground truth for every shipment. Only this module's
  evaluation code reads ``truth/``; training and scoring never do.

Rows always reported: ``model`` (the production score: calibrated model blended with the rules,
see ``riskpipe.score``), ``model_alone``, ``rules``, ``random``, ``linear`` (+ ``champion`` in
retraining).

This module computes the views from the columns it is given (a ``true_positive`` column adds the
truth view); it reads no files. Ground truth is read only by ``riskpipe.evaluation``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import polars as pl

from riskpipe import metrics as M
from riskpipe import schema as S

FRACTIONS: tuple[float, ...] = M.DEFAULT_FRACTIONS
TRUE_POSITIVE = "true_positive"
SLICE_COLUMNS = (S.MODE, S.PORT_OF_ENTRY, S.COUNTRY_OF_ORIGIN)
BASELINE_ROWS = ("model", "rules", "random", "linear")


def _score_col(name: str) -> str:
    return f"score__{name}"


#: headline capacities: multiples of the prevalence of the evaluated days in each view
PREVALENCE_MULTIPLES: tuple[float, ...] = (1, 3)
#: a view with fewer positives than this is printed as "not enough evidence", not as metrics
MIN_EVIDENCE_POSITIVES = 5
#: what "prevalence" means in each view (the capacity of 1x is that rate x the day's shipments)
PREVALENCE_BASIS = {
    "labelled": "known positives / all shipments of the days (a lower bound: only examined parcels are known)",
    "random_exams": "positives / random compliance exams (an unbiased but noisy estimate)",
    "truth": "true positives / all shipments of the days",
}
#: views whose rows are a sample of the day (prevalence = positives / rows of the view)
_SAMPLE_VIEWS = ("random_exams", "truth")


def _mult(multiple: float) -> str:
    """1 -> "1x", 0.5 -> "0.5x": the key of a prevalence multiple in reports and JSON."""
    return f"{multiple:g}x"


def evaluate_scored(
    scored: pl.DataFrame,
    names: Sequence[str],
    capacity_by_day: dict[date, int],
    fractions: Sequence[float] = FRACTIONS,
    *,
    view_days: Mapping[str, Sequence[date]] | None = None,
    multiples: Sequence[float] = PREVALENCE_MULTIPLES,
) -> dict[str, Any]:
    """Metrics of each score column ``score__<name>`` in ``scored`` (one row per shipment of the
    evaluation days, with ``arrival_date``, ``is_positive``/``exam_reason`` (null when not
    examined) and optionally ``true_positive``). See the module docstring for the three views.

    Headline: precision and recall when each day's top ``ceil(m x prevalence x shipments)`` are
    selected, for each multiple ``m`` (1x, 3x), the prevalence being that of the view over its
    days (``PREVALENCE_BASIS``). ``view_days`` restricts a view to some days (random exams are
    few, so their view may cover more days than the others); by default every view covers every
    day of ``scored``."""
    frame = scored.sort(S.ARRIVAL_DATE, S.SHIPMENT_ID)
    if TRUE_POSITIVE not in frame.columns:
        frame = frame.with_columns(pl.lit(None, dtype=pl.Int8).alias(TRUE_POSITIVE))
    cap = pl.DataFrame(
        {S.ARRIVAL_DATE: list(capacity_by_day), "_k_cap": list(capacity_by_day.values())},
        schema={S.ARRIVAL_DATE: pl.Date, "_k_cap": pl.Int64},
    )
    frame = frame.join(cap, on=S.ARRIVAL_DATE, how="left", maintain_order="left").with_columns(
        pl.col("_k_cap").fill_null(0), pl.len().over(S.ARRIVAL_DATE).alias("_n_day")
    )
    n_day = pl.col("_n_day")
    k_cols = {"capacity": "_k_cap"}
    for f in fractions:
        k_cols[M.pct_key(f)] = f"_k_{M.pct_key(f)}"
        frame = frame.with_columns(
            pl.min_horizontal(pl.max_horizontal((n_day * f).round(9).ceil().cast(pl.Int64), pl.lit(1)), n_day).alias(
                k_cols[M.pct_key(f)]
            )
        )
    tops = []
    for name in names:
        r = pl.col(_score_col(name)).fill_nan(None).rank("ordinal", descending=True).over(S.ARRIVAL_DATE)
        tops.append(r.alias(f"_rank__{name}"))
        for key, kc in k_cols.items():
            tops.append((r <= pl.col(kc)).fill_null(False).alias(f"_top__{name}__{key}"))
    frame = frame.with_columns(tops)

    views: dict[str, tuple[pl.Expr, pl.Expr]] = {
        "labelled": (pl.col(S.IS_POSITIVE).is_not_null(), pl.col(S.IS_POSITIVE)),
        "random_exams": (
            pl.col(S.IS_POSITIVE).is_not_null() & (pl.col(S.EXAM_REASON).cast(pl.String) == "random"),
            pl.col(S.IS_POSITIVE),
        ),
    }
    if frame[TRUE_POSITIVE].null_count() < frame.height:
        views["truth"] = (pl.col(TRUE_POSITIVE).is_not_null(), pl.col(TRUE_POSITIVE))
    all_days = sorted(frame[S.ARRIVAL_DATE].unique().to_list())
    days_of = {v: sorted(set((view_days or {}).get(v, all_days)) & set(all_days)) for v in views}
    views = {v: (eligible & pl.col(S.ARRIVAL_DATE).is_in(days_of[v]), y) for v, (eligible, y) in views.items()}
    main_days = days_of["labelled"]

    report: dict[str, Any] = {
        "eval_days": [d.isoformat() for d in main_days],
        "n_shipments": frame.filter(pl.col(S.ARRIVAL_DATE).is_in(main_days)).height,
        "capacity_per_day": {d.isoformat(): k for d, k in sorted(capacity_by_day.items()) if d in main_days},
        "views": {},
        "base_rates": {},
        "view_days": {v: [d.isoformat() for d in days] for v, days in days_of.items()},
        "prevalence_multiples": [_mult(m) for m in multiples],
    }
    day_sizes = frame.group_by(S.ARRIVAL_DATE).agg(pl.len().alias("n")).sort(S.ARRIVAL_DATE)
    for view, (eligible, y) in views.items():
        sub = frame.filter(eligible)
        n = sub.height
        pos = int(sub.select(y.cast(pl.Int64).sum()).item() or 0)
        base = pos / n if n else 0.0
        sizes = day_sizes.filter(pl.col(S.ARRIVAL_DATE).is_in(days_of[view]))
        shipments = int(sizes["n"].sum())
        prevalence = base if view in _SAMPLE_VIEWS else (pos / shipments if shipments else 0.0)
        k_day = {
            _mult(mult): {d: M.k_for_prevalence(int(c), prevalence, mult) for d, c in sizes.iter_rows()}
            for mult in multiples
        }
        report["base_rates"][view] = {
            "n": n,
            "positives": pos,
            "rate": base,
            "days": [d.isoformat() for d in days_of[view]],
            "shipments": shipments,
            "prevalence": prevalence,
            "prevalence_basis": PREVALENCE_BASIS.get(view, ""),
            "k_at_prevalence": {key: int(sum(ks.values())) for key, ks in k_day.items()},
            "k_per_day_at_prevalence": {key: {d.isoformat(): k for d, k in ks.items()} for key, ks in k_day.items()},
        }
        k_prev = {}
        for key, ks in k_day.items():
            k_prev[key] = (
                pl.col(S.ARRIVAL_DATE).replace_strict(list(ks), list(ks.values()), default=0, return_dtype=pl.Int64)
                if ks
                else pl.lit(0, dtype=pl.Int64)
            )
        top_of: dict[tuple[str, str], pl.Expr] = {}
        for name in names:
            for key in k_cols:
                top_of[(name, key)] = pl.col(f"_top__{name}__{key}")
            for key, kexpr in k_prev.items():
                top_of[(name, "prev_" + key)] = (pl.col(f"_rank__{name}") <= kexpr).fill_null(False)
        per_model: dict[str, Any] = {}
        sums = (
            sub.select(
                [top.sum().alias(f"sel__{name}__{key}") for (name, key), top in top_of.items()]
                + [(top & (y == 1)).sum().alias(f"tp__{name}__{key}") for (name, key), top in top_of.items()]
            ).row(0, named=True)
            if n
            else {}
        )
        for name in names:
            m: dict[str, Any] = {
                "precision_at_prevalence": {},
                "recall_at_prevalence": {},
                "lift_at_prevalence": {},
                "selected_at_prevalence": {},
                "hits_at_prevalence": {},
                "precision_at": {},
                "recall_at": {},
                "lift_at": {},
                "selected_at": {},
            }
            for key in [*k_cols, *("prev_" + k for k in k_prev)]:
                sel = int(sums.get(f"sel__{name}__{key}", 0) or 0)
                tp = int(sums.get(f"tp__{name}__{key}", 0) or 0)
                prec, rec, lift = M.rates_at_k(tp, sel, pos, base)
                if key == "capacity":
                    m.update(
                        precision_at_capacity=prec,
                        recall_at_capacity=rec,
                        lift_at_capacity=lift,
                        selected_at_capacity=sel,
                        hits_at_capacity=tp,
                    )
                elif key.startswith("prev_"):
                    mk = key[len("prev_") :]
                    m["precision_at_prevalence"][mk], m["recall_at_prevalence"][mk] = prec, rec
                    m["lift_at_prevalence"][mk] = lift
                    m["selected_at_prevalence"][mk], m["hits_at_prevalence"][mk] = sel, tp
                else:
                    m["precision_at"][key], m["recall_at"][key], m["lift_at"][key] = prec, rec, lift
                    m["selected_at"][key] = sel
            m["pr_auc"] = (
                M.pr_auc(sub.select(y.cast(pl.Int64)).to_series().to_numpy(), sub[_score_col(name)].to_numpy())
                if n
                else 0.0
            )
            per_model[name] = m
        report["views"][view] = per_model
    report["preferred_view"] = "truth" if "truth" in views else "labelled"
    report["slices"] = _slices(frame, names[0] if names else None, views[report["preferred_view"]])
    return report


def view_summaries(report: dict[str, Any], min_positives: int = MIN_EVIDENCE_POSITIVES) -> list[dict[str, Any]]:
    """Per view, what a reader needs beside its figures: days, rows, positives, prevalence and its
    basis, the 1x/3x capacities in exams, each scorer's metrics with hit and selection counts, and
    ``verdict`` = "not enough evidence (N positives)" when the view holds fewer than
    ``min_positives`` positives (its figures would be noise). JSON-clean (a flow's return value)."""
    out = []
    for view in ("labelled", "random_exams", "truth"):
        if view not in report.get("views", {}):
            continue
        b = report["base_rates"][view]
        enough = b["positives"] >= min_positives
        keep = (
            "precision_at_prevalence",
            "recall_at_prevalence",
            "hits_at_prevalence",
            "selected_at_prevalence",
            "precision_at_capacity",
            "recall_at_capacity",
            "hits_at_capacity",
            "selected_at_capacity",
            "recall_at",
            "pr_auc",
        )
        models = report["views"][view]
        order = [m for m in BASELINE_ROWS if m in models] + [m for m in models if m not in BASELINE_ROWS]
        out.append(
            {
                "view": view,
                "days": b.get("days", report.get("eval_days", [])),
                "rows": b["n"],
                "positives": b["positives"],
                "shipments": b.get("shipments"),
                "prevalence": b.get("prevalence"),
                "prevalence_basis": b.get("prevalence_basis", ""),
                "k_at_prevalence": b.get("k_at_prevalence", {}),
                "enough_evidence": enough,
                "verdict": None
                if enough
                else f"not enough evidence ({b['positives']} positive{'s' * (b['positives'] != 1)})",
                "scorers": {name: {k: models[name][k] for k in keep if k in models[name]} for name in order},
            }
        )
    return out


def _slices(
    frame: pl.DataFrame, name: str | None, view: tuple[pl.Expr, pl.Expr], top: int = 10
) -> dict[str, list[dict]]:
    """Per mode / port / origin: rows, positives, and the first model's precision and recall at
    capacity within the slice (the day's global selection)."""
    if name is None:
        return {}
    eligible, y = view
    top_col = pl.col(f"_top__{name}__capacity")
    out: dict[str, list[dict]] = {}
    for dim in SLICE_COLUMNS:
        if dim not in frame.columns:
            continue
        g = (
            frame.filter(eligible)
            .group_by(pl.col(dim).cast(pl.String).alias("value"))
            .agg(
                pl.len().alias("n"),
                (y == 1).sum().alias("positives"),
                top_col.sum().alias("selected"),
                (top_col & (y == 1)).sum().alias("hits"),
            )
            .sort(["n", "value"], descending=[True, False])
            .head(top)
            .with_columns(
                pl.when(pl.col("selected") > 0)
                .then(pl.col("hits") / pl.col("selected"))
                .otherwise(0.0)
                .alias("precision_at_capacity"),
                pl.when(pl.col("positives") > 0)
                .then(pl.col("hits") / pl.col("positives"))
                .otherwise(0.0)
                .alias("recall_at_capacity"),
            )
        )
        out[dim] = g.to_dicts()
    return out


def evaluation_table(report: dict[str, Any], view: str | None = None) -> pl.DataFrame:
    """One row per scorer (model, rules, random, linear first), columns precision / recall at 1x
    and 3x the view's prevalence (the headline), precision / recall / lift at capacity and at
    1/2/5/10 % of a day's shipments, and PR-AUC."""
    view = view or report.get("preferred_view", "labelled")
    models = report["views"].get(view, {})
    order = [m for m in BASELINE_ROWS if m in models] + [m for m in models if m not in BASELINE_ROWS]
    rows = []
    for name in order:
        m = models[name]
        row: dict[str, Any] = {"model": name}
        for key in m.get("precision_at_prevalence", {}):
            for what in ("precision", "recall"):
                row[f"{what}_at_{key}_prevalence"] = m[f"{what}_at_prevalence"][key]
        for what in ("precision", "recall", "lift"):
            row[f"{what}_at_capacity"] = m[f"{what}_at_capacity"]
        for key in m["precision_at"]:
            for what in ("precision", "recall", "lift"):
                row[f"{what}_at_{key}pct"] = m[f"{what}_at"][key]
        row["pr_auc"] = m["pr_auc"]
        rows.append(row)
    return pl.DataFrame(rows)


def bias_table(report: dict[str, Any], name: str = "model") -> pl.DataFrame:
    """How the labelled view differs from the random-exam estimate and from the truth."""
    rows = []
    for view in ("labelled", "random_exams", "truth"):
        if view not in report["views"] or name not in report["views"][view]:
            continue
        m = report["views"][view][name]
        b = report["base_rates"][view]
        rows.append(
            {
                "view": view,
                "rows": b["n"],
                "positives": b["positives"],
                "hit_rate": b["rate"],
                "precision_at_capacity": m["precision_at_capacity"],
                "recall_at_capacity": m["recall_at_capacity"],
                "pr_auc": m["pr_auc"],
            }
        )
    return pl.DataFrame(rows)
