"""Running the pipeline: ``retrain``, ``nightly``, the workbench (``serve``) and the scheduler (``schedule``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from riskpipe.cli.base import (
    TaskRunner,
    _checked_settings,
    _run_with_steps,
    console,
    err_console,
    parse_day,
    settings,
    state,
)
from riskpipe.cli.show import _print_model_warnings, _print_night
from riskpipe.errors import RiskpipeError
from riskpipe.web import serving

if TYPE_CHECKING:
    from fastapi import FastAPI


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
    from riskpipe.evaluation.truth import truth_reader
    from riskpipe.model.evaluate import bias_table
    from riskpipe.retrain import retrain as run_retrain
    from riskpipe.store import Layout

    until_day = parse_day(until, "--until")
    _checked_settings(lambda s: preflight.check_retrain(Layout(s.home), s, until_day, force))
    s = settings()
    truth = truth_reader(Layout(s.home)) if Layout(s.home).truth.is_dir() else None  # a synthetic world's figures
    decision, _ = _run_with_steps(lambda: run_retrain(Layout(s.home), s, until_day, force=force, truth=truth))
    view = decision.report.get("preferred_view", "labelled")
    assert decision.table is not None  # retrain always evaluates (only read-back decisions lack it)
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


def nightly(
    date_: Annotated[str, typer.Option("--date", help="Arrival date to score, YYYY-MM-DD.")],
    capacity: Annotated[int | None, typer.Option(help="Override the total exam budget.", min=1)] = None,
    skip_ingest: Annotated[bool, typer.Option("--skip-ingest", help="Do not ingest the landing folder first.")] = False,
    task_runner: Annotated[
        TaskRunner,
        typer.Option(
            "--task-runner",
            help="local: one machine (features once, --shards splits scoring only); dask: features and "
            "scoring of each shard on the cluster's workers.",
        ),
    ] = TaskRunner.LOCAL,
    dask_address: Annotated[
        str | None,
        typer.Option("--dask-address", help="Dask scheduler, tcp://host:port (default: start a local cluster)."),
    ] = None,
    shards: Annotated[
        int | None, typer.Option(help="Shards by consignee address (default 1 local, 4 on dask).", min=1)
    ] = None,
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
    With --task-runner dask the day is split by consignee address into --shards shards whose
    features (row-level families) and scores are built on the Dask workers; the whole-day
    columns (windows, history, networks, graph) are a map-reduce over --shards key partitions on
    the workers; combining the scores, ranking and the report run as one task each on a worker,
    reading the scored day a piece at a time, never whole; after publishing, the workbench's
    look-up files and the history tables (with the next night's window) are one task each on a
    worker too. The outputs equal a single-process run's. Workers need the home at the same
    path (a shared filesystem) and the same package versions.
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
            distributed=task_runner == "dask",
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


WORKBENCH_APP = "riskpipe.cli.run:workbench_app"  # what each worker process imports


def workbench_app() -> FastAPI:
    """The workbench of the home named by ``$RISKPIPE_HOME`` (set by ``serve``): the factory each
    uvicorn worker process calls. Safe under several processes: sessions are signed cookies (the
    secret is a file of the home), the login throttle, users, outcomes, cases and the access audit
    live in the database, rendered lists key on a stamp file of the home, and the other caches are
    keyed by published files' identity."""
    import logging

    from riskpipe.config import load_settings
    from riskpipe.web import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return create_app(load_settings(Path(os.environ["RISKPIPE_HOME"]), environ=os.environ))


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8765,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Worker processes (default: one per core, at most 4); each answers requests on its own.",
            min=1,
        ),
    ] = None,
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
    create_app(cfg)  # once here: the signing secret and the database schema are ready before the workers start
    if not UserStore(cfg.db_url).list():
        err_console.print("no users yet: add one with `riskpipe users add NAME --role supervisor`")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    n = workers or serving.default_workers()
    os.environ["RISKPIPE_HOME"] = str(Path(cfg.home).resolve())  # for the worker processes' factory
    console.print(f"workbench on http://{host}:{port}/ ({n} worker process{'es' if n > 1 else ''}; Ctrl-C to stop)")
    # access_log off: uvicorn's access lines carry client addresses and full query strings;
    # riskpipe.web logs method, route template, status and time instead.
    uvicorn.run(WORKBENCH_APP, factory=True, workers=n, host=host, port=port, access_log=False, log_level="warning")


def _announce_ready(pids: dict[str, int]) -> None:
    """One line once the served runs' warm processes are up (``riskpipe bench`` waits for it)."""
    if not pids:
        console.print("ready: deployments served (--no-warm: each run starts a fresh process)")
        return
    warm = ", ".join(f"{flow} (pid {pid})" for flow, pid in sorted(pids.items()))
    console.print(f"ready: warm process for {warm}; a triggered run starts within about a second", highlight=False)


def schedule(
    port: Annotated[
        int,
        typer.Option(
            help="Port of the local Prefect server and its UI (when PREFECT_API_URL is unset; 0: any free port).",
            min=0,
            max=65535,
        ),
    ] = 4200,
    warm: Annotated[
        bool,
        typer.Option(
            "--warm/--no-warm",
            help="Keep a process with the night's code imported for the next nightly run (about 350 MB "
            "while idle): Prefect's start is then paid before the cut-off.",
        ),
    ] = True,
) -> None:
    """Serve the Prefect deployments: nightly on a cron, retrain weekly (see riskpipe.toml:
    nightly_cron, retrain_cron, timezone, notify_url, *_timeout_seconds). Uses the Prefect
    server at $PREFECT_API_URL, or starts one on 127.0.0.1:PORT with its database under the data
    home; its UI (runs, logs, artifacts) is at http://127.0.0.1:PORT. Ctrl-C stops serving.

    Prefect's start is paid here, before the cut-off: the server, the deployments, and a warm
    process that has already imported the night's code, to which the next nightly run goes
    (a new one is warmed after each night); "ready: ..." is printed once it is up. A run then
    starts about a second after it is triggered (cron runs are picked up ahead of time)."""
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
            deploy.serve(state.home, cfg, on_ready=_announce_ready, warm=warm)
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=15)
            except Exception:  # a server that will not stop is killed
                server.kill()
