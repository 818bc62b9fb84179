"""How the commands print a night, a retrain decision and its evaluation views."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from rich.console import Console

from riskpipe.cli.base import console, err_console


def _print_decision(record: dict) -> None:
    verdict = "promoted" if record.get("promoted") else "kept the champion"
    from riskpipe.promotion import summary

    evidence = summary(record)
    console.print(
        f"retrain: {verdict} (challenger {record.get('challenger_version')}): {record.get('reason')}"
        + (f"; {evidence}" if evidence else "")
    )
    if record.get("views"):
        for view in record["views"]:
            _print_view(view)
        return
    rows = record.get("table") or []
    if not rows:
        return
    from rich.table import Table

    metrics = [
        ("precision_at_capacity", "P@capacity"),
        ("recall_at_capacity", "R@capacity"),
        ("precision_at_1pct", "P@1%"),
        ("recall_at_1pct", "R@1%"),
        ("precision_at_5pct", "P@5%"),
        ("recall_at_5pct", "R@5%"),
        ("recall_at_10pct", "R@10%"),
        ("pr_auc", "PR-AUC"),
    ]
    view = record.get("view") or "held-out"
    table = Table(title=f"evaluation on held-out later days ({view} view)")
    table.add_column("metric")
    for r in rows:
        table.add_column(str(r["model"]), justify="right")
    for key, label in metrics:
        if key in rows[0]:
            table.add_row(label, *[f"{r[key]:.3f}" if r.get(key) is not None else "" for r in rows])
    console.print(table)


_VIEW_TITLES = {"labelled": "labelled outcomes", "random_exams": "random exams", "truth": "ground truth"}


def _print_view(v: dict) -> None:
    """One evaluation view: its counts and prevalence first, then each scorer's precision and
    recall at 1x and 3x that prevalence with their counts (hits/selected, hits/positives), or
    "not enough evidence" when the view holds too few positives to judge anything."""
    from rich.table import Table

    days = v.get("days") or []
    span = f"{len(days)} days {days[0]}..{days[-1]}" if days else "no days"
    caps = ", ".join(f"{key} = {k:,} exams" for key, k in (v.get("k_at_prevalence") or {}).items())
    head = (
        f"{_VIEW_TITLES.get(v['view'], v['view'])} view, {span}: {v['rows']:,} rows, {v['positives']} positive"
        f"{'s' * (v['positives'] != 1)}; "
        f"prevalence {v['prevalence']:.4f} = {v['prevalence_basis']}; capacity {caps}"
    )
    wide = Console(width=max(console.width, 150))  # a log file must not cut the figures
    wide.print(head, highlight=False)
    if v.get("verdict"):
        wide.print(f"  {v['verdict']}: no figures shown for this view", highlight=False)
        return
    scorers = v["scorers"]
    table = Table()
    table.add_column("metric")
    for name in scorers:
        table.add_column(name, justify="right")
    pos = v["positives"]
    for key in v.get("k_at_prevalence") or {}:
        table.add_row(
            f"P@{key} prev",
            *[
                f"{m['precision_at_prevalence'][key]:.3f} ({m['hits_at_prevalence'][key]}/"
                f"{m['selected_at_prevalence'][key]})"
                for m in scorers.values()
            ],
        )
        table.add_row(
            f"R@{key} prev",
            *[f"{m['recall_at_prevalence'][key]:.3f} ({m['hits_at_prevalence'][key]}/{pos})" for m in scorers.values()],
        )
    table.add_row(
        "P@capacity",
        *[
            f"{m['precision_at_capacity']:.3f} ({m['hits_at_capacity']}/{m['selected_at_capacity']})"
            for m in scorers.values()
        ],
    )
    table.add_row(
        "R@capacity", *[f"{m['recall_at_capacity']:.3f} ({m['hits_at_capacity']}/{pos})" for m in scorers.values()]
    )
    for pct in ("1", "5"):
        table.add_row(f"R@{pct}%", *[f"{(m.get('recall_at') or {}).get(pct, 0.0):.3f}" for m in scorers.values()])
    table.add_row("PR-AUC", *[f"{m['pr_auc']:.3f}" for m in scorers.values()])
    wide.print(table)


def _print_night(home: Path, day: date, night: dict, n: int = 15) -> None:
    from rich.table import Table

    from riskpipe.nightly import top_targets_rows
    from riskpipe.store import Layout

    layout = Layout(home)
    summary = night["summary"]
    targets_dir = layout.day_dir(layout.targets, day)
    table = Table(title=f"top targets, arrival date {day} (model {summary['model_version']})")
    for col in ("rank", "shipment", "port", "score", "selection", "origin", "mode", "main reason (plain words)"):
        table.add_column(col, overflow="fold", no_wrap=col != "main reason (plain words)")
    for r in top_targets_rows(targets_dir / "targets.parquet", n):
        first = (r["reason_text"] or "").split(";")[0].strip()
        more = len(r["reasons"] or []) - 1
        table.add_row(
            str(r["rank"]),
            r["shipment_id"],
            r["port_of_entry"],
            f"{r['risk_score']:.3f}",
            r["selection"],
            r["country_of_origin"] or "",
            r["mode"] or "",
            first + (f" (+{more} more)" if more > 0 else ""),
        )
    Console(width=max(console.width, 150)).print(table)  # reasons stay readable in a log file
    console.print(
        f"{summary['shipments']:,} shipments scored, {summary['targets']:,} selected "
        f"({summary['exploration']:,} exploration)\n"
        f"report:  {layout.day_dir(layout.reports, day) / 'report.html'}\n"
        f"targets: {targets_dir / 'targets.csv'} (and targets.parquet)\n"
        f"scores:  {layout.day_dir(layout.scores, day) / 'scores.parquet'}"
    )


def _print_model_warnings(models_dir: Path, version: str | None) -> None:
    """One ``warning:`` line (stderr) per ``training_warnings`` of a saved model's metadata."""
    import json

    from riskpipe.model import training_warnings
    from riskpipe.registry import META_FILE

    path = models_dir / str(version) / META_FILE
    if version is None or not path.is_file():
        return
    for text in training_warnings(json.loads(path.read_text(encoding="utf-8"))):
        err_console.print(f"[yellow]warning:[/yellow] challenger {version} {text}", highlight=False, soft_wrap=True)
