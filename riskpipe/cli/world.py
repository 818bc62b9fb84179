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
#: = flows.demo.DEMO_RANDOM_EXAM_SHARE (not imported: the flows import Prefect, --help stays instant)
DEMO_RANDOM_EXAM_SHARE = 0.10
#: = riskpipe.synth.exams.RANDOM_SHARE, the generator's default (real programmes sample about 1 %)
RANDOM_EXAM_SHARE = 0.01


def demo(
    days: Annotated[int, typer.Option(help="Days of synthetic history to generate (the last is tonight).")] = 28,
    per_day: Annotated[int, typer.Option("--per-day", help="Shipments per day (average).")] = 8_000,
    seed: Annotated[int, typer.Option(help="Random seed of the synthetic world.")] = 7,
    start: Annotated[str, typer.Option(help="First arrival date, YYYY-MM-DD.")] = "2026-01-05",
    random_exam_share: Annotated[
        float,
        typer.Option(
            "--random-exam-share",
            help="Share of parcels given a random compliance exam (real programmes: a few per cent; the demo "
            "examines more so that its random-exam view can judge the model).",
            min=0.0,
            max=0.5,
        ),
    ] = DEMO_RANDOM_EXAM_SHARE,
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
    console.print(
        f"[bold]riskpipe demo[/bold]: {days} days x ~{per_day:,} shipments, seed {seed}, home {home}; "
        f"{random_exam_share:.0%} of parcels get a random compliance exam (real programmes: a few %)",
        highlight=False,
    )
    from flows.demo import demo_flow

    result = demo_flow(str(home), start_day.isoformat(), days, per_day, seed, random_exam_share=random_exam_share)
    elapsed = time.perf_counter() - t0
    _print_decision(result["decision"])
    _print_evidence(result["decision"], random_exam_share)
    _print_night(home, date.fromisoformat(result["day"]), result["night"])
    console.print(f"demo finished in {elapsed:.0f} s")


def _print_evidence(record: dict, random_exam_share: float) -> None:
    """The random-exam view's precision and recall with 95 % intervals for the model, the rules
    alone and random selection, then whom the model beats on the labelled and random-exam views,
    only where the counts support it (``riskpipe.evaluation.evidence``)."""
    from datetime import timedelta

    from rich.console import Console
    from rich.table import Table

    from riskpipe.evaluation.evidence import beats_sentence, view_evidence

    views = {v["view"]: v for v in record.get("views") or []}
    wide = Console(width=max(console.width, 150))
    rnd = views.get("random_exams")
    if rnd is not None and rnd.get("days"):
        first = date.fromisoformat(rnd["days"][0])
        wide.print(
            f"random exams ({random_exam_share:.0%} of parcels, a uniform draw of each day made before any targeting), "
            f"{len(rnd['days'])} days {rnd['days'][0]}..{rnd['days'][-1]}: out of time by construction (the model "
            f"trained on arrival days up to {(first - timedelta(days=1)).isoformat()} only; the first "
            "days fitted only its monotone probability scale); 95 % Wilson intervals",
            highlight=False,
        )
        ev = view_evidence(rnd)
        if ev["capacities"]:
            table = Table()
            table.add_column("capacity")
            table.add_column("scorer")
            table.add_column("precision (hits/selected random exams) [95 % CI]", justify="right")
            table.add_column("recall (hits/positives) [95 % CI]", justify="right")
            for cap in ev["capacities"]:
                for i, (name, r) in enumerate(cap["scorers"].items()):
                    table.add_row(
                        cap["label"] if i == 0 else "",
                        name,
                        f"{r['precision']:.3f} ({r['hits']}/{r['selected']}) "
                        f"[{r['precision_ci'][0]:.3f}, {r['precision_ci'][1]:.3f}]",
                        f"{r['recall']:.3f} ({r['hits']}/{ev['positives']}) "
                        f"[{r['recall_ci'][0]:.3f}, {r['recall_ci'][1]:.3f}]",
                    )
            wide.print(table)
    for name in ("labelled", "random_exams"):
        if name in views:
            wide.print(
                beats_sentence(view_evidence(views[name]))
                + " (one-sided Fisher's exact test on recall, level 0.05; conservative for two scorers judged on "
                "the same positives)",
                highlight=False,
            )


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
    random_exam_share: Annotated[
        float,
        typer.Option(
            "--random-exam-share",
            help="Share of parcels given a random compliance exam (real programmes sample about 1 %).",
            min=0.0,
            max=0.5,
        ),
    ] = RANDOM_EXAM_SHARE,
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
            random_exam_share=random_exam_share,
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
