"""The ``riskpipe`` command. Thin: parse options, build settings, call the library or a flow.

Heavy imports (polars, prefect, scikit-learn) happen inside commands so ``--help`` is instant.
Every failure ends as a one-line message and a non-zero exit status (``--debug`` shows the
traceback).
"""

from __future__ import annotations

import os
import sys
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from riskpipe.errors import RiskpipeError


class TaskRunner(StrEnum):
    """Where the nightly scoring shards run (``--task-runner``)."""

    LOCAL = "local"
    DASK = "dask"


class Role(StrEnum):
    """A workbench user's role (``riskpipe.users.ROLES``)."""

    ANALYST = "analyst"
    SUPERVISOR = "supervisor"


#: commands that may be given a data home that does not exist yet: they create it
HOME_CREATING_COMMANDS = ("demo", "generate")

app = typer.Typer(
    name="riskpipe",
    help="Risk-scoring of low-value shipments: ingest manifests, build indicators, score, rank "
    "under exam capacity, publish targeting lists, learn from exam outcomes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
labels_app = typer.Typer(help="Exam outcomes (labels): import files of outcomes.", no_args_is_help=True)
users_app = typer.Typer(help="Workbench users: list, add, remove, set passwords.", no_args_is_help=True)
app.add_typer(labels_app, name="labels")
app.add_typer(users_app, name="users")

console = Console()
err_console = Console(stderr=True)


class _State:
    home: Path = Path("data")
    debug: bool = False


state = _State()


def _show_version(value: bool) -> None:
    if not value:
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        number = version("riskpipe")
    except PackageNotFoundError:  # run from a source tree that was never installed
        from riskpipe import __version__ as number
    console.print(f"riskpipe {number}", highlight=False)
    raise typer.Exit()


@app.callback()
def _global(
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            help="Data home (default ./data, or $RISKPIPE_HOME). Must exist, except for "
            "demo and generate, which create it.",
            show_default=False,
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=_show_version, is_eager=True)
    ] = False,
) -> None:
    state.home = home or Path(os.environ.get("RISKPIPE_HOME", "data"))
    state.debug = debug


def require_home(create: bool = False) -> Path:
    """The data home; a home that does not exist is created only by the commands that make
    homes (``create``), so a mistyped --home fails at once and leaves nothing behind."""
    home = state.home
    if create:
        home.mkdir(parents=True, exist_ok=True)
    else:
        from riskpipe.preflight import check_home

        check_home(home)
    return home


def settings(create: bool = False, **overrides):
    """Settings for the current home: defaults, ``riskpipe.toml`` there, ``RISKPIPE_``
    environment variables, then ``overrides``. The home must exist unless ``create``."""
    from riskpipe.config import load_settings
    from riskpipe.prefect_env import configure_prefect

    require_home(create)
    loaded = load_settings(state.home, overrides, environ=os.environ)  # checked before Prefect is set up
    configure_prefect(state.home)
    return loaded


def parse_day(value: str | None, option: str) -> date | None:
    """A ``YYYY-MM-DD`` option as a date, or a one-line error (``--date 2026-02-30``)."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        if len(value) == 10 and value[4] == "-" and value[7] == "-" and value.replace("-", "").isdigit():
            raise RiskpipeError(f"{option}: {value!r} is not a date ({exc})") from None
        raise RiskpipeError(f"{option}: {value!r} is not a date YYYY-MM-DD") from None


# ---------------------------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------------------------
DEMO_MARKER = ".riskpipe-demo"


@app.command()
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


@app.command()
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


@app.command()
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


@app.command()
def retrain(
    until: Annotated[str | None, typer.Option(help="Train on labelled days up to DATE.")] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Promote the challenger even without the evidence "
            "(too few labelled positives, an interval that does not clear the margin), "
            "recorded as forced-promote with who and the evidence in decisions.jsonl; "
            "also when champion.json exists but its model cannot be used (unreadable, "
            "missing, unsigned, tampered, other features).",
        ),
    ] = False,
) -> None:
    """Train a challenger, evaluate it against the champion on later labelled days, and promote
    it only if it is better (a first model is always promoted; a champion that cannot be used is
    refused unless --force)."""
    from rich.table import Table

    from riskpipe import preflight
    from riskpipe.model import bias_table
    from riskpipe.registry import retrain as run_retrain
    from riskpipe.store import Layout

    until_day = parse_day(until, "--until")
    _checked_settings(lambda s: preflight.check_retrain(Layout(s.home), s, until_day, force))
    s = settings()
    decision, _ = _run_with_steps(lambda: run_retrain(Layout(s.home), s, until_day, force=force))
    view = decision.report.get("preferred_view", "labelled")
    # one column per scorer, one row per metric: fits a terminal however many scorers
    table = Table(title=f"Held-out days {decision.eval_days[0]}..{decision.eval_days[-1]} ({view} view)")
    table.add_column("metric")
    scorers = decision.table["model"].to_list()
    for name in scorers:
        table.add_column(name, justify="right")
    for col in decision.table.columns[1:]:
        label = col.replace("_at_", " @ ").replace("pct", " %").replace("capacity", "capacity")
        table.add_row(label, *[f"{v:.3f}" for v in decision.table[col].to_list()])
    console.print(table)
    bias = Table(title="How biased the labelled view is (model)")
    for head in ("view", "rows", "positives", "hit rate", "P@cap", "R@cap"):
        bias.add_column(head, justify="right")
    for row in bias_table(decision.report).iter_rows(named=True):
        bias.add_row(
            row["view"],
            str(row["rows"]),
            str(row["positives"]),
            f"{row['hit_rate']:.4f}",
            f"{row['precision_at_capacity']:.3f}",
            f"{row['recall_at_capacity']:.3f}",
        )
    console.print(bias)
    verdict = "promoted" if decision.promoted else "not promoted"
    from riskpipe.promotion import summary

    evidence = summary({"evidence": decision.evidence})
    console.print(
        f"challenger {decision.challenger_version}: {verdict}: {decision.reason}"
        + (f"; {evidence}" if evidence else ""),
        highlight=False,
    )
    _print_model_warnings(Path(s.models_dir), decision.challenger_version)


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


def _checked_settings(check) -> object:
    """The home's settings after ``check(settings)``, read without touching Prefect (no
    ``.prefect`` folder, no database) so that a call that cannot succeed costs nothing."""
    from riskpipe.config import load_settings
    from riskpipe.preflight import check_home

    check_home(state.home)
    cfg = load_settings(state.home, environ=os.environ)
    check(cfg)
    return cfg


def _run_with_steps(run, catch: type[BaseException] | None = None) -> tuple[object, bool]:
    """``run()`` with a progress row per step on stderr; after success one line of step times
    and where to see the run. Returns (result, False), or (the exception's ``result``, True) for
    an exception of type ``catch``."""
    from riskpipe.progress import StepBars
    from riskpipe.runsteps import watching

    bars = StepBars(err_console)
    failed = False
    with bars, watching(bars):
        try:
            result = run()
        except BaseException as exc:
            if catch is None or not isinstance(exc, catch):
                if bars.run_name and isinstance(exc, Exception):  # the error line follows (main)
                    err_console.print(_where_to_see(bars.run_name, bars.run_id), highlight=False, soft_wrap=True)
                raise
            result, failed = getattr(exc, "result", None), True
    if bars.finished:
        err_console.print(bars.summary(), highlight=False, soft_wrap=True)
    if bars.run_name:
        err_console.print(_where_to_see(bars.run_name, bars.run_id), highlight=False, soft_wrap=True)
    return result, failed


def _where_to_see(run_name: str, run_id: str | None) -> str:
    """The run's page on a Prefect server, or (an ephemeral run: its API ended with the command)
    how to browse the home's runs."""
    api_url = os.environ.get("PREFECT_API_URL")
    if api_url and run_id:
        from flows.deploy import ui_url

        return f"Prefect run {run_name}: {ui_url(api_url)}/runs/flow-run/{run_id}"
    prefect_home = (state.home / ".prefect").resolve()
    return (
        f"Prefect run {run_name} is recorded in {prefect_home}; to browse runs and their logs: "
        f"PREFECT_HOME={prefect_home} prefect server start (or `riskpipe schedule`)"
    )


@app.command()
def nightly(
    date_: Annotated[str, typer.Option("--date", help="Arrival date to score, YYYY-MM-DD.")],
    capacity: Annotated[int | None, typer.Option(help="Override the total exam budget.", min=1)] = None,
    skip_ingest: Annotated[bool, typer.Option("--skip-ingest", help="Do not ingest the landing folder first.")] = False,
    task_runner: Annotated[
        TaskRunner, typer.Option("--task-runner", help="Where scoring shards run: local or dask.")
    ] = TaskRunner.LOCAL,
    dask_address: Annotated[
        str | None,
        typer.Option("--dask-address", help="Dask scheduler, tcp://host:port (default: start a local cluster)."),
    ] = None,
    shards: Annotated[int | None, typer.Option(help="Scoring shards (default 1 local, 4 on dask).", min=1)] = None,
    allow_rules_only: Annotated[
        bool,
        typer.Option(
            "--allow-rules-only",
            help="Exit 0 even when no usable champion model ranked the night (the rules alone did; it still warns).",
        ),
    ] = False,
) -> None:
    """Ingest, features, score, rank and publish for one arrival date (a Prefect flow).

    Publishes scores/D, targets/D and reports/D atomically; a rerun of D replaces them.
    With --task-runner dask the scoring shards run on a Dask cluster; the outputs are the same.
    Without a usable champion model the night is refused before it starts unless
    --allow-rules-only; should the champion break during the run, the rules alone rank the night,
    which is published with a warning and a report banner, and the exit status is 1.

    Checked before Prefect starts (one line, well under a second): the home exists, the day is
    ingested or new files wait in the landing folder, the champion is usable. A row per step
    shows progress; a failed night prints one line naming the step (--debug: Prefect's log and
    traceback)."""
    from riskpipe import preflight
    from riskpipe.store import Layout

    day = parse_day(date_, "--date")
    if task_runner not in ("local", "dask"):
        raise RiskpipeError(f"--task-runner: {task_runner!r} is not one of local, dask")
    if dask_address and task_runner != "dask":
        raise RiskpipeError("--dask-address needs --task-runner dask")
    cfg = _checked_settings(
        lambda s: preflight.check_nightly(
            Layout(s.home), s, day, ingest=not skip_ingest, allow_rules_only=allow_rules_only
        )
    )
    from riskpipe.prefect_env import console_level

    console_level(state.debug)  # before Prefect is imported: its console log off unless --debug
    settings()
    from flows.nightly import with_task_runner
    from riskpipe.nightly import RulesOnlyNight

    n_shards = shards or (4 if task_runner == "dask" else 1)
    run = with_task_runner(task_runner, dask_address, timeout_seconds=cfg.nightly_timeout_seconds)
    result, failed = _run_with_steps(
        lambda: run(
            str(state.home),
            day.isoformat(),
            capacity=capacity,
            ingest=not skip_ingest,
            show_progress=False,
            shards=n_shards,
            allow_rules_only=allow_rules_only,
        ),
        catch=RulesOnlyNight,
    )
    if result is not None:
        _print_night(state.home, day, result)
    problem = ((result or {}).get("summary") or {}).get("champion_problem")
    if failed or problem:
        err_console.print(
            f"[yellow]warning:[/yellow] rules-only night {day}: no usable champion model ranked it: "
            f"{problem or 'see the report'}",
            highlight=False,
            soft_wrap=True,
        )
    if failed:
        raise RiskpipeError(f"nightly {day}: published a rules-only night; pass --allow-rules-only to accept one")


models_app = typer.Typer(
    help="The model registry: list and show versions, promote one, roll back to the "
    "previous champion (audited in models/decisions.jsonl), re-sign older models.",
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")


@models_app.command("trust")
def models_trust(
    version: Annotated[str, typer.Argument(help="The unsigned model version (a folder of the registry).")],
) -> None:
    """Re-save an unsigned model (saved before riskpipe signed its registry) as a new signed
    version, after checking its sha256 and that it holds only reviewed types. A champion stays
    the champion under its new version. Only for models whose origin you know."""
    from riskpipe.registry import champion_version, trust_model

    s = settings()
    new = trust_model(s.models_dir, version, s.registry_key_path)
    now_champion = champion_version(s.models_dir) == new
    console.print(f"model {version} re-signed as {new}" + (" (the champion)" if now_champion else ""), highlight=False)


@models_app.command("list")
def models_list() -> None:
    """Every model version: when it was saved, the days it was trained on, its precision at
    capacity on held-out later days, which is the champion, and whether it loads (signature,
    sha256, reviewed types: the checks the nightly run makes)."""
    from rich.markup import escape
    from rich.table import Table

    from riskpipe.registry import DECISION_VIEW, describe_versions

    s = settings()
    infos = describe_versions(s.models_dir, s.registry_key_path)
    if not infos:
        console.print(f"no models in {s.models_dir}: train one with `riskpipe retrain`", highlight=False)
        return
    table = Table(
        title=f"models in {escape(str(s.models_dir))}",
        caption=f"P@cap: precision at capacity on held-out later days ({DECISION_VIEW} view)",
    )
    for col, justify in (
        ("version", "left"),
        ("saved (UTC)", "left"),
        ("trained on", "left"),
        ("P@cap", "right"),
        ("champion", "center"),
        ("loads", "left"),
    ):
        table.add_column(col, justify=justify, no_wrap=True)
    for info in infos:
        start, end = info.training_window
        metric = info.key_metric
        saved = (info.saved_at or "?").replace("T", " ")[:16]
        table.add_row(
            info.version,
            escape(saved),
            escape(f"{start or '?'} .. {end or '?'}"),
            f"{metric:.3f}" if metric is not None else "",
            "[bold]*[/bold]" if info.champion else "",
            "yes" if info.problem is None else "[red]no[/red] (below)",
        )
    Console(width=max(console.width, 120)).print(table)  # rows stay whole in a log file
    for info in infos:
        if info.problem is not None:
            console.print(
                f"{info.version} does not load: {info.problem}", highlight=False, markup=False, soft_wrap=True
            )


@models_app.command("show")
def models_show(
    version: Annotated[str, typer.Argument(help="The model version (see `riskpipe models list`).")],
) -> None:
    """A version's model card: what it is, the days it learned from, how good it was on later
    days, its limits; and whether it loads."""
    from riskpipe.registry import check_version_name, describe_version, list_versions, model_card

    s = settings()
    check_version_name(version)
    if version not in list_versions(s.models_dir) and not (s.models_dir / version).exists():
        raise RiskpipeError(f"no model {version} in {s.models_dir} (see `riskpipe models list`)")
    info = describe_version(s.models_dir, version, s.registry_key_path)
    start, end = info.training_window
    lines = [
        f"model {version}" + (" (the champion)" if info.champion else ""),
        "loads: yes (signature, sha256 and reviewed types checked)"
        if info.problem is None
        else f"loads: NO: {info.problem}\n(the card below is from its meta.json, unverified)",
        f"saved: {info.saved_at or '?'}; trained on {start or '?'} .. {end or '?'}",
    ]
    if info.meta:
        lines += ["", model_card(info.meta)]
    console.print("\n".join(lines), highlight=False, markup=False)


@models_app.command("promote")
def models_promote(
    version: Annotated[str, typer.Argument(help="The model version to make the champion.")],
    reason: Annotated[str | None, typer.Option(help="Why, for the audit trail.")] = None,
) -> None:
    """Make VERSION the champion the nightly run uses, after it loads (a model that fails its
    checks is refused). Recorded in models/decisions.jsonl (who, when, from, to, why)."""
    from riskpipe.registry import DECISIONS_FILE, promote

    s = settings()
    before = promote(
        s.models_dir, version, reason or "operator promotion (riskpipe models promote)", s.registry_key_path
    )
    if before == version:
        console.print(f"{version} is already the champion: nothing changed", highlight=False)
        return
    console.print(
        f"champion is now {version} (was {before or 'none'}); recorded in {s.models_dir / DECISIONS_FILE}",
        highlight=False,
    )


@models_app.command("rollback")
def models_rollback(
    reason: Annotated[str | None, typer.Option(help="Why, for the audit trail.")] = None,
) -> None:
    """Restore the champion before the current one (from the audit trail in
    models/decisions.jsonl), after it loads; the rollback itself is recorded there too. A second
    rollback goes one champion further back."""
    from riskpipe.registry import DECISIONS_FILE, rollback

    s = settings()
    before, after = rollback(
        s.models_dir, reason or "operator rollback (riskpipe models rollback)", s.registry_key_path
    )
    console.print(
        f"champion rolled back from {before} to {after}; recorded in {s.models_dir / DECISIONS_FILE}", highlight=False
    )


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8765,
) -> None:
    """The analyst workbench (web) on loopback."""
    import logging

    import uvicorn

    from riskpipe.users import UserStore
    from riskpipe.web import create_app

    cfg = settings()
    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(
            f"[yellow]warning:[/yellow] listening on {host}: the workbench is reachable from other machines"
        )
    web_app = create_app(cfg)
    if not UserStore(cfg.db_url).list():
        err_console.print("no users yet: add one with `riskpipe users add NAME --role supervisor`")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    console.print(f"workbench on http://{host}:{port}/ (Ctrl-C to stop)")
    # access_log off: uvicorn's access lines carry client addresses and full query strings;
    # riskpipe.web logs method, route template, status and time instead.
    uvicorn.run(web_app, host=host, port=port, access_log=False, log_level="warning")


@app.command()
def schedule(
    port: Annotated[
        int,
        typer.Option(
            help="Port of the local Prefect server and its UI (when PREFECT_API_URL is unset; 0: any free port).",
            min=0,
            max=65535,
        ),
    ] = 4200,
) -> None:
    """Serve the Prefect deployments: nightly on a cron, retrain weekly (see riskpipe.toml:
    nightly_cron, retrain_cron, timezone, notify_url, *_timeout_seconds). Uses the Prefect
    server at $PREFECT_API_URL, or starts one on 127.0.0.1:PORT with its database under the data
    home; its UI (runs, logs, artifacts) is at http://127.0.0.1:PORT. Ctrl-C stops serving."""
    from riskpipe.preflight import check_home

    check_home(state.home)
    cfg = settings()
    server = None
    if not os.environ.get("PREFECT_API_URL"):
        from flows.deploy import start_local_server

        console.print(f"starting a local Prefect server on 127.0.0.1:{port or 'any port'} (about 10 s)...")
        server, api_url = start_local_server((state.home / ".prefect").resolve(), port=port or None)
        os.environ["PREFECT_API_URL"] = api_url  # for the flow-run subprocesses
    else:
        api_url = os.environ["PREFECT_API_URL"]
    try:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from flows import deploy

        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            console.print(
                f"serving nightly ({cfg.nightly_cron}) and retrain ({cfg.retrain_cron}), time zone "
                f"{cfg.timezone}; Prefect UI {deploy.ui_url(api_url)} (Ctrl-C to stop)",
                highlight=False,
            )
            deploy.serve(state.home, cfg)
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=15)
            except Exception:  # noqa: BLE001 - a server that will not stop is killed
                server.kill()


@app.command()
def evaluate(
    mapping: Annotated[Path, typer.Option(help="TOML column mapping of the foreign dataset.")],
    train: Annotated[list[Path], typer.Option(help="Training file(s) (repeat the option).")],
    test: Annotated[Path, typer.Option(help="Test file.")],
    seeds: Annotated[
        int, typer.Option(help="Fit this many times (random states 0..N-1) and report the mean.", min=1)
    ] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only.")] = False,
) -> None:
    """Train the model machinery on a foreign labelled dataset and report precision and recall
    at 1, 2, 5 and 10 % of the test rows: of all rows and, when the mapping names
    [evaluation] seen_columns, of the rows whose values there occur in no training file."""
    import json

    from rich.table import Table

    from riskpipe.external import contract_json, load_mapping
    from riskpipe.external import evaluate as run_evaluation

    spec = load_mapping(mapping)
    if as_json:
        report = run_evaluation(spec, list(train), test, seeds=seeds)
        sys.stdout.write(json.dumps(contract_json(report)) + "\n")
        return
    with console.status("training and scoring ..."):
        report = run_evaluation(spec, list(train), test, seeds=seeds)

    def fig(view: dict, key: str, pct: str | None = None) -> str:
        value = view[key] if pct is None else view[key][pct]
        if value is None:
            return "n/a"
        sd = view.get("sd", {}).get(key)
        sd = sd if pct is None or sd is None else sd[pct]
        return f"{value:.3f}" + (f" ± {sd:.3f}" if sd is not None else "")

    for name, view in report["views"].items():
        what = (
            f"all rows of {test.name}"
            if name == "all"
            else f"unseen rows ({', '.join(view['seen_columns'])} not in the training files)"
        )
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
    fits = f"mean of {seeds} fits, " if seeds > 1 else ""
    console.print(
        f"trained on {report['train_rows']:,} rows ({report['train_positives']:,} positive), {fits}"
        f"{report['n_iter']} boosting iterations, fit + score {report['seconds']:.1f} s",
        highlight=False,
    )


@app.command()
def indicators(
    days: Annotated[int, typer.Option(help="The last N days that have ground truth.")] = 7,
    out: Annotated[Path | None, typer.Option(help="Also write the table as Markdown to this file.")] = None,
) -> None:
    """For each indicator family, how often it fires on fentanyl-related shipments vs the others
    (a synthetic world's home only: needs its ground truth in truth/)."""
    from riskpipe.features.evaluate import indicator_table, table_markdown, truth_days
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


@app.command()
def adaptation(
    warmup_days: Annotated[
        int, typer.Option("--warmup-days", help="Days of the world's own outcomes to train the first model.")
    ] = 14,
    retrain_every: Annotated[
        int, typer.Option("--retrain-every", help="Days between retrains of the weekly policy.")
    ] = 7,
    capacity: Annotated[int | None, typer.Option(help="Exams a day (default: the port table).", min=1)] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the weekly table as CSV.")] = None,
) -> None:
    """Closed-loop study on a synthetic home (needs truth/): recall at capacity per week when the
    list feeds its own labels back, never retrained vs retrained weekly, with 0 % and 10 %
    exploration. Shows how the smugglers' adaptation erodes a static model."""
    import polars as pl
    from rich.table import Table

    from riskpipe.labels import LabelStore
    from riskpipe.model import adaptation_study, adaptation_summary
    from riskpipe.store import Layout

    cfg = settings()
    study = adaptation_study(
        Layout(state.home),
        cfg,
        LabelStore(cfg.db_url).current(),
        warmup_days=warmup_days,
        retrain_every=retrain_every,
        capacity=capacity,
    )
    summary = adaptation_summary(study, weeks=7)
    one = study.filter(
        (pl.col("policy") == study["policy"][0]) & (pl.col("exploration_share") == study["exploration_share"][0])
    )
    shipments, positives, days = int(one["shipments"].sum()), int(one["positives"].sum()), one.height
    prevalence = positives / shipments if shipments else 0.0
    per_day = one["selected"].sum() / days if days else 0.0
    multiple = per_day / (prevalence * shipments / days) if positives else float("nan")
    console.print(
        f"ground truth view: {days} simulated days, {shipments:,} shipments, {positives} positives, prevalence "
        f"{prevalence:.4f}; capacity {per_day:.0f} exams a day = {multiple:.1f}x the prevalence",
        highlight=False,
    )
    table = Table(title="recall at capacity by week of the simulation (found / truth positives)")
    for col in ("policy", "exploration", "week", "found", "positives", "recall", "selected", "precision"):
        table.add_column(col, justify="left" if col == "policy" else "right")
    for r in summary.iter_rows(named=True):
        table.add_row(
            r["policy"],
            f"{r['exploration_share']:.0%}",
            str(r["week"]),
            str(r["found"]),
            str(r["positives"]),
            f"{r['recall_at_capacity']:.3f}",
            str(r["selected"]),
            f"{r['found'] / r['selected']:.3f}" if r["selected"] else "",
        )
    console.print(table)
    if out is not None:
        summary.write_csv(out)
        console.print(f"written to {out}")


@app.command()
def bench(
    rows: Annotated[int, typer.Option(help="Shipments in the day benchmarked (targets are for 4 M).")] = 4_000_000,
    history_days: Annotated[int, typer.Option(help="Days of history before it, at the same size.")] = 30,
    repeat: Annotated[int, typer.Option(help="Runs per stage; the median is shown.")] = 1,
    stages: Annotated[
        str,
        typer.Option(
            help="all, or a comma list of: generate, ingest, features, score, rank (= publish), "
            "nightly, floor, prefect, web."
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
    """The performance benchmark: per stage wall time, rows/s and peak memory, and the floor."""
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


def _read_password(from_stdin: bool, prompt: str, command: str) -> str:
    """One line of standard input (scripts), or asked twice without echo."""
    import getpass

    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password = getpass.getpass(prompt)
    if getpass.getpass("Again: ") != password:
        raise RiskpipeError(f"{command}: the two passwords differ")
    return password


@users_app.command("add")
def users_add(
    username: Annotated[str, typer.Argument(help="Login name.")],
    role: Annotated[Role, typer.Option(help="analyst or supervisor.")] = Role.ANALYST,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input (scripts).")
    ] = False,
) -> None:
    """Add a workbench user (asks for the password)."""
    from riskpipe.users import UserStore

    db_url = settings().db_url  # a wrong home fails before the password is asked
    password = _read_password(password_stdin, "Password: ", "users add")
    user = UserStore(db_url).add(username, password, str(role))
    console.print(f"added {user.username} ({user.role})")


@users_app.command("passwd")
def users_passwd(
    username: Annotated[str, typer.Argument(help="Login name.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input (scripts).")
    ] = False,
) -> None:
    """Set a user's password (asks for it); the user's open workbench sessions end."""
    from riskpipe.users import UserStore

    db_url = settings().db_url  # a wrong home fails before the password is asked
    password = _read_password(password_stdin, "New password: ", "users passwd")
    UserStore(db_url).set_password(username, password)
    console.print(f"password of {username} changed; their workbench sessions have ended")


@users_app.command("list")
def users_list() -> None:
    """Workbench users: name, role, whether active, when created (never a password hash)."""
    from rich.table import Table

    from riskpipe.users import UserStore

    rows = UserStore(settings().db_url).list()
    if not rows:
        console.print("no users yet: add one with `riskpipe users add NAME --role supervisor`")
        return
    table = Table(title="workbench users")
    for col in ("name", "role", "active", "created (UTC)"):
        table.add_column(col)
    for r in rows:
        created = r["created_at"].strftime("%Y-%m-%d %H:%M:%S") if r["created_at"] is not None else ""
        table.add_row(r["username"], r["role"], "yes" if r["active"] else "no", created)
    console.print(table)


@users_app.command("remove")
def users_remove(
    username: Annotated[str, typer.Argument(help="Login name.")],
) -> None:
    """Remove a workbench user; their sessions end at once. The last active supervisor cannot be
    removed (nobody could manage users any more)."""
    from riskpipe.users import UserStore

    UserStore(settings().db_url).remove(username)
    console.print(f"removed {username}; their workbench sessions have ended", highlight=False)


db_app = typer.Typer(help="The labels and users database: schema migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the labels and users database (database_url) to the newest schema.

    Opening the store does this by itself; run it after installing a new riskpipe to migrate at a
    time of your choosing (back the database up first). A database made before migrations is
    checked, stamped with the baseline and upgraded. A no-op on a current database."""
    from riskpipe.db import get_engine
    from riskpipe.migrate import safe_url, upgrade

    cfg = settings()
    result = upgrade(cfg.db_url)
    where = safe_url(get_engine(cfg.db_url))
    if not result.changed:
        console.print(f"database {where}: already at revision {result.after} (newest)", highlight=False)
        return
    before = result.before or "empty"
    if result.adopted:
        before = "a database from before migrations, stamped 0001"
    console.print(f"database {where}: upgraded from {before} to revision {result.after}", highlight=False)


@app.command("sql")
def sql(
    query: Annotated[str, typer.Argument(help="One SELECT (or WITH ... SELECT, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN).")],
    as_csv: Annotated[bool, typer.Option("--csv", help="Every row as CSV on standard output.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Every row as a JSON array on standard output.")] = False,
    max_rows: Annotated[int, typer.Option("--max-rows", help="Rows shown in the table (not --csv/--json).")] = 100,
) -> None:
    """Ad-hoc, read-only SQL (DuckDB, in-process) over the raw store and the published outputs.

    Views: shipments (raw/shipments, with arrival_date), partner_exports (with declared_date),
    scores (every published day, with arrival_date), targets, labels (current exam outcomes, read
    from the labels store when the query names it). Paths in the query are relative to the home,
    e.g. read_parquet('scores/*/scores.parquet'). `riskpipe sql "SHOW TABLES"` lists the views;
    `riskpipe sql "DESCRIBE scores"` their columns. Statements that write are refused."""
    from riskpipe.sql import for_text, read_only_statement, run_query
    from riskpipe.store import Layout

    if as_csv and as_json:
        raise RiskpipeError("sql: give --csv or --json, not both")
    read_only_statement(query)  # refused before the home or the store is opened
    cfg = settings()

    def labels():
        from riskpipe.labels import LabelStore

        return LabelStore(cfg.db_url, timezone=cfg.timezone).current()

    frame = run_query(Layout(state.home), query, labels_loader=labels)
    if as_json:
        sys.stdout.write(frame.write_json() + "\n")
        return
    if as_csv:
        from riskpipe.csvsafe import formula_safe

        sys.stdout.write(formula_safe(for_text(frame)).write_csv())
        return
    _print_sql_table(for_text(frame.head(max(max_rows, 0))), frame.height)


def _print_sql_table(shown, total: int, cell_width: int = 40) -> None:
    """A result as a table in the terminal's width: long cells end in an ellipsis, and columns
    that do not fit are left out (and named in the caption) rather than squeezed to nothing."""
    import polars as pl
    from rich.table import Table

    cells = shown.select(pl.all().cast(pl.String))  # for_text made the lists text
    widths = []
    for name in cells.columns:
        longest = cells.get_column(name).fill_null("").str.len_chars().max() or 0
        widths.append(min(max(len(name), longest), cell_width) + 3)
    fit, used = [], 1
    for name, width in zip(cells.columns, widths, strict=False):
        if fit and used + width > console.width:
            break
        fit.append(name)
        used += width
    rows = f"{total:,} row{'s' if total != 1 else ''}"
    if shown.height < total:
        rows += f", first {shown.height:,} shown"
    left_out = cells.width - len(fit)
    if left_out:
        rows += f"; {left_out} more column{'s' if left_out != 1 else ''} not shown ({', '.join(cells.columns[len(fit) :][:5])}{', ...' if left_out > 5 else ''})"
    if shown.height < total or left_out:
        rows += " - use --csv or --json for everything"
    table = Table(caption=rows)
    for name in fit:
        table.add_column(name, no_wrap=True, overflow="ellipsis", max_width=cell_width)
    for row in cells.select(fit).iter_rows():
        table.add_row(*["" if v is None else v for v in row])
    console.print(table, highlight=False)


# ---------------------------------------------------------------------------------------------
# sharing risk with a partner customs service (riskpipe.partner)
# ---------------------------------------------------------------------------------------------
partner_app = typer.Typer(
    help="Share risk with a partner customs service: keyed-hash findings feeds, the "
    "partner's OEA list, joint lists for Unified Cargo Processing ports.",
    no_args_is_help=True,
)
app.add_typer(partner_app, name="partner")


def _partner_key(cfg) -> bytes:
    """The shared key: the partner_key_path setting (riskpipe.toml, RISKPIPE_PARTNER_KEY_PATH or
    its alias RISKPIPE_PARTNER_KEY_FILE), the same the nightly's feature step is given."""
    from riskpipe.partner import read_key

    if not cfg.partner_key_path:
        raise RiskpipeError("no partner key: set partner_key_path in riskpipe.toml or RISKPIPE_PARTNER_KEY_FILE")
    return read_key(Path(cfg.partner_key_path), cfg.home)


def _as_of(value: str | None):
    """``--as-of``: a replay's clock (ISO timestamp, UTC if no offset), else now."""
    from datetime import UTC, datetime

    if value is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise RiskpipeError(f"--as-of: {value!r} is not a timestamp YYYY-MM-DDTHH:MM[:SS][Z]") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


_AS_OF_HELP = (
    "Replay only: the time to record instead of now (ISO timestamp, UTC), for rebuilding a "
    "past exchange on a synthetic world; imports refuse it on a home without truth/."
)


@partner_app.command("keygen")
def partner_keygen(
    path: Annotated[Path, typer.Argument(help="Where to write the new key (outside the home).")],
) -> None:
    """Write a new random shared key (0600). Hand it to the partner over a secure channel."""
    from riskpipe.partner import generate_key

    kid = generate_key(path, state.home)
    console.print(f"key written to {path} (key id {kid}); both administrations need the same file", highlight=False)


@partner_app.command("export")
def partner_export(
    out: Annotated[Path, typer.Argument(help="The feed file to write (JSON).")],
    since: Annotated[str, typer.Option(help="First exam date of the findings, YYYY-MM-DD.")],
    until: Annotated[str | None, typer.Option(help="Last exam date (default: today, UTC).")] = None,
    valid_days: Annotated[int, typer.Option("--valid-days", help="Days until the feed expires.", min=1)] = 30,
    as_of: Annotated[str | None, typer.Option("--as-of", help=_AS_OF_HELP)] = None,
) -> None:
    """Write the identifiers of confirmed findings as keyed hashes (no identifier in clear), signed."""
    from riskpipe import partner as P
    from riskpipe.labels import LabelStore
    from riskpipe.store import Layout

    cfg = settings()
    key = _partner_key(cfg)
    now = _as_of(as_of)
    first = parse_day(since, "--since")
    last = parse_day(until, "--until") or now.date()
    if last < first:
        raise RiskpipeError(f"--until {last} is before --since {first}")
    labels = LabelStore(cfg.db_url, timezone=cfg.timezone).current()
    entries = P.finding_entries(Layout(cfg.home), labels, key, first, last)
    env = P.make_envelope(P.FINDINGS, entries, key, cfg.administration_name, first, last, now, valid_days)
    P.write_feed(env, out)
    console.print(
        f"{out}: {len(entries):,} keyed identifiers of findings {first}..{last}, key id {env['key_id']}, "
        f"expires {env['expires_at']}",
        highlight=False,
    )


def _import(path: Path, content: str, as_of: str | None) -> None:
    from riskpipe import partner as P
    from riskpipe.store import Layout

    if not path.is_file():
        raise RiskpipeError(f"{path}: no such file")
    cfg = settings()
    if as_of is not None and not Layout(cfg.home).truth.is_dir():
        # a backdated import would put the feed into days already published, and its expiry would
        # be judged by the backdated clock: only a synthetic world (it has truth/) is replayed
        raise RiskpipeError(
            "--as-of is for replaying a synthetic world (a home with truth/): on this home an "
            "import is recorded at the real time"
        )
    rec = P.import_feed(Layout(cfg.home), path, _partner_key(cfg), content, cfg.partner_name, _as_of(as_of))
    what = "imported" if rec.new else "already imported"
    console.print(
        f"{path}: {what} ({rec.entries:,} entries, id {rec.feed_id}, at {rec.imported_at:%Y-%m-%d %H:%M} "
        f"UTC); used from the next arrival day's run",
        highlight=False,
    )


@partner_app.command("import")
def partner_import(
    path: Annotated[Path, typer.Argument(help="A partner's findings feed (JSON).")],
    as_of: Annotated[str | None, typer.Option("--as-of", help=_AS_OF_HELP)] = None,
) -> None:
    """Verify (signature, key id, expiry) and store a partner's findings feed; refused: nothing stored."""
    from riskpipe.partner import FINDINGS

    _import(path, FINDINGS, as_of)


@partner_app.command("oea-export")
def partner_oea_export(
    out: Annotated[Path, typer.Argument(help="The OEA list file to write (JSON).")],
    operators: Annotated[Path, typer.Option("--list", help="CSV of certified operators: name, country.")],
    valid_days: Annotated[int, typer.Option("--valid-days", help="Days until the list expires.", min=1)] = 30,
    as_of: Annotated[str | None, typer.Option("--as-of", help=_AS_OF_HELP)] = None,
) -> None:
    """Write this administration's certified operators (e.g. Mexico's OEA) as keyed hashes, signed."""
    import polars as pl

    from riskpipe import partner as P

    cfg = settings()
    key = _partner_key(cfg)
    if not operators.is_file():
        raise RiskpipeError(f"{operators}: no such file")
    try:
        table = pl.read_csv(operators, infer_schema=False)
    except pl.exceptions.PolarsError as exc:
        raise RiskpipeError(f"{operators}: not a CSV file ({_one_line(exc)[:120]})") from None
    entries = P.operator_entries(table, key, str(operators))
    env = P.make_envelope(P.OEA, entries, key, cfg.administration_name, None, None, _as_of(as_of), valid_days)
    P.write_feed(env, out)
    console.print(f"{out}: {len(entries):,} certified operators keyed, expires {env['expires_at']}", highlight=False)


@partner_app.command("oea-import")
def partner_oea_import(
    path: Annotated[Path, typer.Argument(help="A partner's OEA list (JSON).")],
    as_of: Annotated[str | None, typer.Option("--as-of", help=_AS_OF_HELP)] = None,
) -> None:
    """Verify and store a partner's list of certified operators: mx_oea claims are checked against
    the latest list from the next arrival day's run."""
    from riskpipe.partner import OEA

    _import(path, OEA, as_of)


@partner_app.command("joint-list")
def partner_joint_list(
    date_: Annotated[str, typer.Option("--date", help="Arrival date of a published night, YYYY-MM-DD.")],
    port: Annotated[str, typer.Option(help="A Unified Cargo Processing port (ucp_ports setting).")],
    out: Annotated[Path | None, typer.Option(help="Folder for the files (default <home>/partner/joint).")] = None,
) -> None:
    """Write the shipments both services inspect together at a UCP port (CSV and Parquet), with
    only the fields both may see."""
    from riskpipe import partner as P
    from riskpipe import partner_joint as J
    from riskpipe.store import Layout

    cfg = settings()
    layout = Layout(cfg.home)
    day = parse_day(date_, "--date")
    needs_key = P.active_findings(layout, day).height > 0 or P.active_oea(layout, day) is not None
    frame = J.joint_list(layout, day, port, list(cfg.ucp_ports), _partner_key(cfg) if needs_key else None)
    csv, pq = J.write_joint_list(frame, out or P.partner_dir(layout) / "joint", day, port)
    console.print(
        f"{frame.height:,} shipments for joint inspection at port {port} on {day}\n{csv}\n{pq}", highlight=False
    )


def main() -> None:
    """Entry point: usage errors are reported by typer; everything else as one line."""
    try:
        app()  # standalone mode: prints usage errors itself and exits
    except (RiskpipeError, ValueError, FileNotFoundError, PermissionError) as exc:
        if state.debug:
            raise
        err_console.print(f"[red]error:[/red] {_one_line(exc)}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("[red]interrupted[/red]")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - last resort: still one line
        if state.debug:
            raise
        from riskpipe.runsteps import failed_step

        where = failed_step(exc)  # e.g. a run's timeout cancelled one of its steps
        step = f" in {where[0]} step '{where[1]}'" if where else ""
        err_console.print(
            f"[red]error:[/red] {type(exc).__name__}{step}: {_one_line(exc)} (rerun with --debug for the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(1)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())
