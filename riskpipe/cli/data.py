"""Getting data in: ``ingest`` (manifests, partner exports) and ``labels import`` (exam outcomes)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from riskpipe.cli.base import console, settings
from riskpipe.errors import RiskpipeError


def ingest(
    paths: Annotated[list[Path] | None, typer.Argument(help="Files or folders (default: the landing folder).")] = None,
) -> None:
    """Ingest manifest and partner-export files: validate, normalise, amend, quarantine."""
    from rich.table import Table

    from riskpipe.ingest import ingest_paths
    from riskpipe.progress import progress_bar
    from riskpipe.store import Layout

    for p in paths or []:
        if not p.exists():
            raise RiskpipeError(f"{p}: no such file or folder")
    cfg = settings()
    layout = Layout(cfg.home)
    with progress_bar("ingest") as progress:
        summary = ingest_paths(
            layout, list(paths) if paths else None, fx_rates_path=cfg.fx_rates_path, progress=progress
        )
    table = Table(title="ingest", caption=f"run {summary.run_id}, {summary.seconds:.1f} s")
    table.add_column("count")
    table.add_column("value", justify="right")
    for name in (
        "files_seen",
        "files_ingested",
        "files_skipped",
        "files_quarantined",
        "files_refused",
        "rows_in",
        "rows_ingested",
        "rows_amended",
        "rows_quarantined",
        "rows_replaced_existing",
        "partner_rows_ingested",
    ):
        table.add_row(name.replace("_", " "), f"{getattr(summary, name):,}")
    console.print(table)
    if summary.quarantine_reasons:
        reasons = Table(title="quarantined", caption=f"see {layout.quarantine}")
        reasons.add_column("reason")
        reasons.add_column("count", justify="right")
        for reason, n in sorted(summary.quarantine_reasons.items(), key=lambda kv: (-kv[1], kv[0])):
            reasons.add_row(reason, f"{n:,}")
        console.print(reasons)
    if summary.files_refused:
        refused = Table(title="refused", caption="links and special files: never read, left in place")
        refused.add_column("file")
        refused.add_column("reason")
        for f in summary.files:
            if f.status == "refused":
                refused.add_row(f.file, f.reason or "")
        console.print(refused)
    if summary.files_seen == 0:
        console.print(f"nothing to ingest in {layout.landing}")
    elif summary.files_ingested == 0 and summary.files_quarantined + summary.files_refused:
        # a night whose every new file was set aside must not look like a success
        raise RiskpipeError(
            f"ingest: nothing was ingested; every new file was quarantined or refused "
            f"({summary.files_quarantined} quarantined, {summary.files_refused} refused, see {layout.quarantine})"
        )


labels_app = typer.Typer(help="Exam outcomes (labels): import files of outcomes.", no_args_is_help=True)


@labels_app.command("import")
def labels_import(
    path: Annotated[Path, typer.Argument(help="A CSV, Parquet or NDJSON file (or folder) of outcomes.")],
) -> None:
    """Import exam outcomes; rows naming unknown shipments are quarantined."""
    from rich.table import Table

    from riskpipe.ingest import import_labels
    from riskpipe.labels import LabelStore
    from riskpipe.store import Layout

    if not path.exists():
        raise RiskpipeError(f"{path}: no such file or folder")
    cfg = settings()
    layout = Layout(cfg.home)
    with console.status("importing outcomes"):
        summary = import_labels(layout, path, LabelStore(cfg.db_url, timezone=cfg.timezone))
    table = Table(title="labels import", caption=f"run {summary.run_id}")
    table.add_column("count")
    table.add_column("value", justify="right")
    for name in (
        "files_seen",
        "files_imported",
        "files_skipped",
        "files_quarantined",
        "rows_in",
        "rows_valid",
        "rows_recorded",
        "rows_quarantined",
    ):
        table.add_row(name.replace("_", " "), f"{getattr(summary, name):,}")
    console.print(table)
    for reason, n in sorted(summary.quarantine_reasons.items(), key=lambda kv: (-kv[1], kv[0])):
        console.print(f"  quarantined {reason}: {n:,}")


def watch(
    interval: Annotated[
        float,
        typer.Option(help="Seconds between looks at the landing folder (a landed file is scored within a minute)."),
    ] = 15.0,
    settle: Annotated[
        float, typer.Option(help="Seconds a file's size and time must stay unchanged before it is read.")
    ] = 5.0,
    once: Annotated[bool, typer.Option("--once", help="Look once, then exit.")] = False,
    provisional: Annotated[
        bool, typer.Option(help="Score the days of ingested files provisionally (replaced by their night).")
    ] = True,
) -> None:
    """Ingest landing files as they arrive (as `ingest` does) and score their day provisionally; Ctrl-C stops."""
    import threading

    from rich.markup import escape

    from riskpipe.store import Layout
    from riskpipe.watch import PollResult, stop_on_signals
    from riskpipe.watch import watch as watch_landing

    cfg = settings()
    layout = Layout(cfg.home)

    def report(result: PollResult) -> None:
        if result.busy:
            console.print("another ingest is running: this look is skipped")
        if result.ingest is not None:
            c = result.ingest
            console.print(
                f"ingest {c['run_id']}: {c['files_ingested']} files ingested, {c['files_skipped']} skipped, "
                f"{c['files_quarantined']} quarantined; {c['rows_ingested']:,} rows, "
                f"{c['rows_quarantined']:,} quarantined rows"
            )
        for r in result.provisional:
            console.print(
                f"provisional scores {r.day}: {r.rows:,} shipments, model {r.model_version}, {r.seconds:.1f} s"
            )
        if result.latency_s:
            console.print(f"landing to provisional score: {max(result.latency_s.values()):.1f} s (slowest file)")
        for day in result.replaced:
            console.print(f"provisional scores {day}: replaced by the night's")
        for error in result.errors:
            console.print(f"[red]{escape(error)}[/red]")

    stop = threading.Event()
    with stop_on_signals(stop):
        if not once:
            console.print(f"watching {layout.landing} every {interval:g} s (Ctrl-C stops)")
        watch_landing(
            layout,
            cfg,
            interval_s=interval,
            settle_s=settle,
            once=once,
            provisional=provisional,
            stop=stop,
            report=report,
        )
    if not once:
        console.print("stopped")
