"""The synthetic world's commands: ``demo`` (a whole demonstration on an empty home) and ``generate``."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from riskpipe.cli.base import console, parse_day, settings, state
from riskpipe.cli.show import _print_decision, _print_night
from riskpipe.errors import RiskpipeError

DEMO_MARKER = ".riskpipe-demo"


def demo(
    days: Annotated[int, typer.Option(help="Days of synthetic history to generate (the last is tonight).")] = 28,
    per_day: Annotated[int, typer.Option("--per-day", help="Shipments per day (average).")] = 8_000,
    seed: Annotated[int, typer.Option(help="Random seed of the synthetic world.")] = 7,
    start: Annotated[str, typer.Option(help="First arrival date, YYYY-MM-DD.")] = "2026-01-05",
) -> None:
    """On an empty home: generate a world with history and outcomes, train a model, run the
    nightly flow for the latest day, print the top targets and where the report is.

    A home that holds an earlier demo is reset first; a home with other data is refused."""
    import shutil
    import time

    if days < 8:
        raise RiskpipeError("--days: the demo needs at least 8 days (training, calibration and evaluation days)")
    home = state.home
    marker = home / DEMO_MARKER
    if home.exists() and any(p.name not in {"README.md", DEMO_MARKER} for p in home.iterdir()):
        if not marker.exists():
            raise RiskpipeError(f"{home} is not empty and holds no earlier demo: use --home with an empty folder")
        for p in home.iterdir():
            if p.name not in {"README.md", DEMO_MARKER}:
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    home.mkdir(parents=True, exist_ok=True)
    marker.write_text("this home was made by `riskpipe demo`; the next demo resets it\n")
    settings()  # Prefect under the home, analytics off
    start_day = parse_day(start, "--start")
    t0 = time.perf_counter()
    console.print(f"[bold]riskpipe demo[/bold]: {days} days x ~{per_day:,} shipments, seed {seed}, home {home}")
    from flows.demo import demo_flow

    result = demo_flow(str(home), start_day.isoformat(), days, per_day, seed)
    elapsed = time.perf_counter() - t0
    _print_decision(result["decision"])
    _print_night(home, date.fromisoformat(result["day"]), result["night"])
    console.print(f"demo finished in {elapsed:.0f} s")


def generate(
    start: Annotated[str, typer.Option(help="First arrival date, YYYY-MM-DD.")] = "2026-01-05",
    days: Annotated[int, typer.Option(help="Number of days.")] = 7,
    per_day: Annotated[int, typer.Option("--per-day", help="Shipments per day (average).")] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same world.")] = 7,
    prevalence: Annotated[float | None, typer.Option(help="Share of shipments that are fentanyl-related.")] = None,
    faults: Annotated[bool, typer.Option("--faults", help="Add bad rows and broken files.")] = False,
    gzip: Annotated[bool, typer.Option("--gzip", help="Gzip-compress CSV and NDJSON files.")] = False,
    partner_out: Annotated[
        Path | None,
        typer.Option(
            "--partner-out",
            help="Also write a partner administration's side (Mexico's "
            "seizures of the same networks, its OEA list) as a home folder DIR.",
        ),
    ] = None,
) -> None:
    """Write synthetic manifests (and partner exports and exam outcomes for past days) into the
    landing folder; ground truth goes to truth/ for evaluation only."""
    from rich.table import Table

    from riskpipe.progress import progress_bar
    from riskpipe.store import Layout
    from riskpipe.synth import DEFAULT_PREVALENCE
    from riskpipe.synth import generate as generate_world

    s = settings(create=True)
    layout = Layout(s.home)
    first = parse_day(start, "--start")
    with progress_bar("generate") as progress:
        summary = generate_world(
            layout,
            first,
            days,
            per_day,
            seed,
            prevalence=DEFAULT_PREVALENCE if prevalence is None else prevalence,
            faults=faults,
            gzip=gzip,
            progress=progress,
            partner_out=partner_out,
        )
    shown = ["day", "shipments", "rows", "positives", "files", "examined", "seized"]
    pick = [summary.columns.index(c) for c in shown]
    table = Table(title=f"synthetic world written to {layout.landing}")
    for name in shown:
        table.add_column(name, justify="left" if name == "day" else "right", no_wrap=True)
    rows = summary.as_rows()
    for i, row in enumerate(rows):
        table.add_row(*(row[j] for j in pick), style="bold" if i == len(rows) - 1 else None)
    console.print(table)
    t = summary.totals()
    console.print(
        f"amendments {t['amendments']:,} · partner declarations {t['partner_rows']:,} · bad rows {t['fault_rows']:,}"
        f" · cells that adapted {t['adapted_cells']:,}\nground truth (evaluation only): {layout.truth}"
    )
    if partner_out is not None:
        console.print(
            f"partner side (Mexico's customs service): {partner_out} (ingest, labels import and "
            f"`partner export` with --home {partner_out})",
            highlight=False,
        )
