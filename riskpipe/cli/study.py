"""Studies and measurements: ``evaluate`` (a foreign dataset), ``indicators``, ``adaptation``, ``bench``."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from riskpipe.cli.base import console, err_console, require_home, settings, state


class Period(StrEnum):
    """The calendar periods a backtest cuts the rows into (``--period``)."""

    MONTH = "month"
    QUARTER = "quarter"


def evaluate(
    mapping: Annotated[Path, typer.Option(help="TOML column mapping of the foreign dataset.")],
    train: Annotated[list[Path], typer.Option(help="Training file(s) (repeat the option).")],
    test: Annotated[Path | None, typer.Option(help="Test file (or --backtest instead).")] = None,
    seeds: Annotated[
        int, typer.Option(help="Fit this many times (random states 0..N-1) and report the mean.", min=1)
    ] = 1,
    backtest: Annotated[
        int | None,
        typer.Option(
            help="Instead of a test file: a rolling-origin backtest over the training files. Their rows "
            "are cut by the mapping's date into calendar periods (--period) and each of the last N "
            "periods is scored by models trained on every earlier row; prints each fold and the mean.",
            min=1,
            metavar="N",
        ),
    ] = None,
    period: Annotated[Period | None, typer.Option(help="Backtest period (with --backtest; default quarter).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only.")] = False,
) -> None:
    """Train the model machinery on a foreign labelled dataset and report precision and recall
    at 1, 2, 5 and 10 % of the test rows: of all rows and, when the mapping names
    \\[evaluation] seen_columns, of the rows whose values there occur in no training file. With
    --backtest N instead of --test: each of the last N periods of the training files is scored
    by a model trained on the rows before it, and the figures are the mean over the folds (± their
    sample standard deviation). Choose settings on a backtest, then run --test once."""
    import json

    from riskpipe.external import backtest as run_backtest
    from riskpipe.external import contract_json, load_mapping
    from riskpipe.external import evaluate as run_evaluation

    if (test is None) == (backtest is None):
        raise typer.BadParameter("give either --test FILE or --backtest N, not both or neither")
    if period is not None and backtest is None:
        raise typer.BadParameter("--period only applies with --backtest N", param_hint="--period")
    cut = str(period or Period.QUARTER)
    spec = load_mapping(mapping)

    def run(progress=None) -> dict:
        if backtest is not None:
            return run_backtest(spec, list(train), backtest, period=cut, seeds=seeds, progress=progress)
        assert test is not None
        return run_evaluation(spec, list(train), test, seeds=seeds)

    if as_json:
        report = run()
        out = contract_json(report)
        if backtest is not None:
            out.update(period=report["period"], seeds=report["seeds"], rows_undated=report["rows_undated"])
            out["folds"] = [
                dict(contract_json(f), period=f["period"], train_rows=f["train_rows"]) for f in report["folds"]
            ]
        sys.stdout.write(json.dumps(out) + "\n")
        return
    with console.status("training and scoring ...") as status:
        report = run(progress=lambda text: status.update(text))
    if backtest is not None:
        _print_folds(report)
    _print_views(report, test.name if test is not None else f"the {backtest} backtest {cut}s")
    fits = f"mean of {seeds} fits, " if seeds > 1 else ""
    if backtest is not None:
        console.print(
            f"precision, recall, lift, AUC: mean of the {backtest} folds ({fits}± = sample sd across folds; "
            f"rows summed), fit + score {report['seconds']:.1f} s"
            + (f"; {report['rows_undated']:,} rows without a date left out" if report["rows_undated"] else ""),
            highlight=False,
        )
        return
    console.print(
        f"trained on {report['train_rows']:,} rows ({report['train_positives']:,} positive), {fits}"
        f"{report['n_iter']} boosting iterations, fit + score {report['seconds']:.1f} s",
        highlight=False,
    )


def _print_folds(report: dict) -> None:
    """One line per backtest fold: its period, training rows, and P@5 % / P@10 % / ROC-AUC of each view."""
    from rich.table import Table

    table = Table(title="backtest folds (expanding window)")
    for column in ("scored", "train rows", "view", "rows", "prev.", "P@5%", "P@10%", "ROC-AUC"):
        table.add_column(column, justify="right")
    for fold in report["folds"]:
        span = fold["period"]["name"]
        for name, view in fold["views"].items():
            auc = view["roc_auc"]
            table.add_row(
                span if name == "all" else "",
                f"{fold['train_rows']:,}" if name == "all" else "",
                name,
                f"{view['n']:,}",
                f"{view['base_rate']:.3f}",
                f"{view['precision_at']['5']:.3f}",
                f"{view['precision_at']['10']:.3f}",
                "n/a" if auc is None else f"{auc:.3f}",
            )
    console.print(table)


def _print_views(report: dict, what_all: str) -> None:
    """Each view's precision / recall / lift table (mean ± sd when several fits or folds)."""
    from rich.table import Table

    def fig(view: dict, key: str, pct: str | None = None) -> str:
        value = view[key] if pct is None else view[key][pct]
        if value is None:
            return "n/a"
        sd = (view.get("fold_sd") or view.get("sd") or {}).get(key)
        sd = sd if pct is None or sd is None else sd[pct]
        return f"{value:.3f}" + (f" ± {sd:.3f}" if sd is not None else "")

    for name, view in report["views"].items():
        what = (
            f"all rows of {what_all}"
            if name == "all"
            else f"unseen rows ({', '.join(view['seen_columns'])} not in the training files)"
        )
        if "folds" in view:  # a backtest: the folds whose view holds rows
            what += f", {view['folds']} fold{'s' if view['folds'] != 1 else ''}"
        console.print(
            f"{what}: {view['n']:,} rows, {view['positives']:,} positive (prevalence {view['base_rate']:.3f})",
            highlight=False,
        )
        table = Table()
        for column in ("top", "rows", "precision", "recall", "lift"):
            table.add_column(column, justify="right")
        for key, k in view["k_at"].items():
            table.add_row(
                f"{key} %",
                f"{k:,}",
                fig(view, "precision_at", key),
                fig(view, "recall_at", key),
                f"{view['lift_at'][key]:.2f}",
            )
        console.print(table)
        console.print(f"{name}: PR-AUC {fig(view, 'pr_auc')}, ROC-AUC {fig(view, 'roc_auc')}", highlight=False)


def indicators(
    days: Annotated[int, typer.Option(help="The last N days that have ground truth.")] = 7,
    out: Annotated[Path | None, typer.Option(help="Also write the table as Markdown to this file.")] = None,
) -> None:
    """For each indicator family, how often it fires on fentanyl-related shipments vs the others
    (a synthetic world's home only: needs its ground truth in truth/)."""
    from riskpipe.evaluation.indicators import indicator_table, table_markdown, truth_days
    from riskpipe.labels import LabelStore
    from riskpipe.store import Layout

    cfg = settings()
    layout = Layout(state.home)
    chosen = truth_days(layout)[-days:] if days > 0 else []
    labels = LabelStore(cfg.db_url).current()  # exam outcomes known so far (prior-exam features)
    text = table_markdown(indicator_table(layout, chosen, labels), chosen)
    console.print(text, highlight=False, markup=False)
    if out is not None:
        from riskpipe.store import write_text_atomic

        write_text_atomic(text, out)
        console.print(f"written to {out}")


COMPARISONS = ("policies", "exploration", "weighting", "cadence")


def _adaptation_arms(compare: str, share: float, novelty: float, cap: float | None) -> list:
    """The arms of each comparison (``riskpipe.evaluation.adaptation.Arm``)."""
    from riskpipe.evaluation.adaptation import Arm

    if compare == "exploration":
        return [
            Arm("weekly", 0.0),
            Arm("weekly", share),
            Arm("weekly", share, novelty),
            Arm("weekly", share, novelty, weighted=True, weight_cap=cap),
        ]
    if compare == "cadence":
        return [Arm(policy, s) for s in (0.0, share) for policy in ("weekly", "daily")]
    if compare == "weighting":
        return [
            Arm("weekly", share),
            Arm("weekly", share, weighted=True),
            *([Arm("weekly", share, weighted=True, weight_cap=cap)] if cap is not None else []),
        ]
    return [Arm(policy, s) for s in (0.0, share) for policy in ("static", "weekly")]


def adaptation(
    warmup_days: Annotated[
        int, typer.Option("--warmup-days", help="Days of the world's own outcomes to train the first model.")
    ] = 14,
    retrain_every: Annotated[
        int, typer.Option("--retrain-every", help="Days between retrains of the weekly policy.")
    ] = 7,
    capacity: Annotated[int | None, typer.Option(help="Exams a day (default: the port table).", min=1)] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the weekly table as CSV.")] = None,
    compare: Annotated[
        str,
        typer.Option(
            help="policies: never vs weekly retrained, 0 vs --exploration; exploration: weekly with none, "
            "uniform and novelty-aware exploration (unweighted and weighted training); weighting: weekly with uniform exploration, exploration "
            "exams unweighted vs weighted by 1 / selection probability in training (plus a three-view table); "
            "cadence: retrained weekly vs daily, 0 vs --exploration."
        ),
    ] = "policies",
    exploration: Annotated[float, typer.Option(help="Exploration share of the exploring arms.", min=0, max=1)] = 0.1,
    novelty_share: Annotated[
        float, typer.Option("--novelty-share", help="Share of the exploration drawn by novelty.", min=0, max=1)
    ] = 0.5,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG of recall per week by policy to this file.")] = None,
    weight_cap: Annotated[
        float | None,
        typer.Option("--weight-cap", help="Clip of the training weights of the capped weighted arm.", min=1),
    ] = 10.0,
    ceiling: Annotated[
        bool,
        typer.Option(
            "--ceiling",
            help="Also train on the ground truth of every earlier shipment and print the recall of its top "
            "rows over the last 14 days at 1x, 2x, 3x the prevalence and at --capacity: what the features "
            "can rank with full supervision.",
        ),
    ] = False,
) -> None:
    """Closed-loop study on a synthetic home (needs truth/): recall at capacity per week when the
    list feeds its own labels back, never retrained vs retrained weekly, with 0 % and 10 %
    exploration. Shows how the smugglers' adaptation erodes a static model. --compare
    exploration: none vs uniform vs novelty-aware exploration; --compare weighting: training
    with exploration exams weighted by 1 / selection probability or not. Also: when each arm
    first found the scheme new after the warm-up."""
    import polars as pl
    from rich.table import Table

    from riskpipe.charts import recall_by_week_png
    from riskpipe.evaluation.adaptation import (
        adaptation_study,
        adaptation_summary,
        learnability_ceiling,
        scheme_discovery,
    )
    from riskpipe.labels import LabelStore
    from riskpipe.store import Layout

    if compare not in COMPARISONS:
        raise typer.BadParameter(f"--compare must be one of {', '.join(COMPARISONS)}, got {compare!r}")
    cfg = settings()
    layout, labels = Layout(state.home), LabelStore(cfg.db_url).current()
    if compare == "weighting":
        from riskpipe.evaluation.weighting import weighting_comparison

        with console.status("training unweighted and weighted on the home's labels ..."):
            views, info = weighting_comparison(layout, cfg, labels, capacity=capacity)
        weights = info["sample_weights"] or {}
        console.print(
            f"three views, evaluation days {info['eval_days'][0]}..{info['eval_days'][1]}; training "
            f"{info['train_days'][0]}..{info['train_days'][1]} holds {info['random_rows']} random exams "
            f"({info['random_positives']} positive), weight up to {weights.get('max', 1.0):.0f}",
            highlight=False,
        )
        vt = Table(title="unweighted vs weighted training (the random-exam view has few positives: noise)")
        for col in ("view", "model", "rows", "positives", "hits", "selected", "precision", "recall", "PR-AUC"):
            vt.add_column(col, justify="left" if col in ("view", "model") else "right")
        for r in views.iter_rows(named=True):
            vt.add_row(
                r["view"],
                r["model"],
                f"{r['rows']:,}",
                str(r["positives"]),
                str(r["hits_at_capacity"]),
                str(r["selected_at_capacity"]),
                f"{r['precision_at_capacity']:.3f}",
                f"{r['recall_at_capacity']:.3f}",
                f"{r['pr_auc']:.3f}",
            )
        console.print(vt)
    study = adaptation_study(
        layout,
        cfg,
        labels,
        warmup_days=warmup_days,
        retrain_every=retrain_every,
        capacity=capacity,
        arms=_adaptation_arms(compare, exploration, novelty_share, weight_cap),
    )
    summary = adaptation_summary(study, weeks=7)
    one = study.filter(pl.col("arm") == study["arm"][0])
    shipments, positives, days = int(one["shipments"].sum()), int(one["positives"].sum()), one.height
    prevalence = positives / shipments if shipments else 0.0
    per_day = float(one["selected"].sum()) / days if days else 0.0
    multiple = per_day / (prevalence * shipments / days) if positives else float("nan")
    console.print(
        f"ground truth view: {days} simulated days, {shipments:,} shipments, {positives} positives, prevalence "
        f"{prevalence:.4f}; capacity {per_day:.0f} exams a day = {multiple:.1f}x the prevalence",
        highlight=False,
    )
    table = Table(title="recall at capacity by week of the simulation (found / truth positives)")
    for col in ("arm", "week", "found", "positives", "recall", "new scheme", "selected", "precision"):
        table.add_column(col, justify="left" if col == "arm" else "right")
    for r in summary.iter_rows(named=True):
        table.add_row(
            r["arm"],
            str(r["week"]),
            str(r["found"]),
            str(r["positives"]),
            f"{r['recall_at_capacity']:.3f}",
            f"{r['new_scheme_found']}/{r['new_scheme_positives']}",
            str(r["selected"]),
            f"{r['found'] / r['selected']:.3f}" if r["selected"] else "",
        )
    console.print(table)
    found = scheme_discovery(study)
    st = Table(title="the new scheme (no positive in the warm-up days) and cumulative recall")
    for col in (
        "arm",
        "appeared",
        "first found",
        "days",
        "new scheme found",
        "recall",
        "recall last 14 days",
        "top of the scores, last 14 days",
    ):
        st.add_column(col, justify="left" if col == "arm" else "right")
    for r in found.iter_rows(named=True):
        st.add_row(
            r["arm"],
            str(r["new_scheme_appeared"] or "none"),
            str(r["new_scheme_first_found"] or "never"),
            "" if r["days_to_find"] is None else str(r["days_to_find"]),
            f"{r['new_scheme_found']}/{r['new_scheme_positives']}",
            f"{r['cumulative_recall']:.3f}",
            f"{r['recall_last_days']:.3f}",
            f"{r['top_recall_last_days']:.3f}",
        )
    console.print(st)
    if ceiling:
        last = sorted(one["day"].to_list())[-14:]
        tail = one.filter(pl.col("day").is_in(last))
        per_day_pos = float(tail["positives"].sum()) / len(last)
        caps = sorted({max(1, round(k * per_day_pos)) for k in (1, 2, 3)} | {int(per_day)})
        with console.status("training on the ground truth of every earlier shipment ..."):
            top = learnability_ceiling(layout, cfg, labels, caps, last_days=len(last), retrain_every=retrain_every)
        ct = Table(
            title=f"learnability ceiling: a model trained on the ground truth of every earlier shipment, "
            f"last {len(last)} days ({per_day_pos:.1f} positives a day)"
        )
        for col in ("exams a day", "x prevalence", "found", "positives", "recall"):
            ct.add_column(col, justify="right")
        for r in top.iter_rows(named=True):
            ct.add_row(
                str(r["capacity"]),
                f"{r['capacity'] / per_day_pos:.1f}" if per_day_pos else "",
                str(r["found"]),
                str(r["positives"]),
                f"{r['recall']:.3f}",
            )
        console.print(ct)
    if out is not None:
        summary.write_csv(out)
        console.print(f"written to {out}")
    if plot is not None:
        weeks = sorted(summary["week"].unique().to_list())
        series: dict[str, Sequence[float | None]] = {
            str(arm): [dict(zip(part["week"], part["recall_at_capacity"], strict=True)).get(w) for w in weeks]
            for (arm,), part in summary.group_by("arm", maintain_order=True)
        }
        recall_by_week_png(
            series,
            weeks,
            plot,
            f"Recall per week (ground truth; prevalence {prevalence:.4f}; "
            f"{per_day:.0f} exams/day = {multiple:.1f}x prevalence)",
        )
        console.print(f"plot written to {plot}")


def bench(
    rows: Annotated[int, typer.Option(help="Shipments in the day benchmarked (targets are for 4 M).")] = 4_000_000,
    history_days: Annotated[int, typer.Option(help="Days of history before it, at the same size.")] = 30,
    repeat: Annotated[int, typer.Option(help="Runs per stage; the median is shown.")] = 1,
    stages: Annotated[
        str,
        typer.Option(
            help="all, or a comma list of: generate, ingest, spread (the landing files ingested in 12 "
            "chunks, as riskpipe watch does), features, score, rank (= publish), nightly, floor, prefect, "
            "served (riskpipe schedule serving, the nightly deployment triggered: trigger -> published), "
            "web; critical = features,score,rank,floor (the critical path from an ingested day, the floor "
            "and their ratio)."
        ),
    ] = "all",
    workdir: Annotated[
        Path | None, typer.Option(help="Cache of the benchmark worlds (default <home>/.bench).", show_default=False)
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic world.")] = 7,
    scaling: Annotated[bool, typer.Option("--scaling", help="Also features at 1 M, 2 M and 4 M rows.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    results_dir: Annotated[Path, typer.Option(help="Where the results file is written.")] = Path("bench-results"),
) -> None:
    """The performance benchmark: per stage wall time, CPU time, rows/s and peak memory; the critical
    path (features + score + rank and publish on an already ingested day), the floor and their ratio."""
    import json

    from riskpipe.bench import parse_stages, render_table, run_bench, summary_lines, write_results

    chosen = parse_stages(stages)
    if workdir is None:
        require_home()
    say = (
        (lambda m: err_console.print(m, highlight=False)) if as_json else (lambda m: console.print(m, highlight=False))
    )
    result = run_bench(
        workdir or state.home / ".bench",
        rows=rows,
        history_days=history_days,
        repeat=repeat,
        stages=chosen,
        seed=seed,
        scaling=scaling,
        log=say,
    )
    result["command"] = "riskpipe " + " ".join(sys.argv[1:])
    path = write_results(result, results_dir)
    if as_json:
        print(json.dumps(result, indent=1, default=str))
        return
    wide = console if console.is_terminal else Console(width=120)  # a log file must not truncate it
    for table in render_table(result):
        wide.print(table)
    for line in summary_lines(result):
        console.print(line, highlight=False)
    console.print(f"results written to {path}")
