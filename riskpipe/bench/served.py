"""The ``served`` stage of ``riskpipe bench``: the night as users run it, Prefect included.

``riskpipe schedule`` is started as users start it (a local Prefect server, the deployments, the
nightly's warm process: :mod:`flows.warm`); that start-up is reported apart (``startup_s``: it is
paid before the cut-off). Once it prints its ``ready`` line, the nightly deployment is triggered
for the benchmark day (``run_deployment``, as the cron or an operator does) and the run is
followed to its end through the API.

What is inside the timed interval (``seconds``): from just before the trigger call until the end
of the run's ``publish`` task as the API recorded it (the day's scores, targets and report
renamed into place): creating the flow run, the runner noticing it (it looks every
``flows.deploy.POLL_S`` s), handing it to the warm process, Prefect setting up the run, the
ingest step (files the watcher already handled are not read again), features, score, stage,
rank and publish, and every task's Prefect bookkeeping. Outside it: the server's start, the
warm process's imports, and the record step after publishing (artifacts, run record, history
tables for the next night: ``completed_s`` includes them). ``steps_s`` are the task runs' own
durations from the API, so ``overhead_s`` = ``seconds`` - their sum over the critical steps is
what Prefect adds on the path.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

#: the steps of the critical path as the flow names its tasks
CRITICAL_TASKS = ("ingest-files", "features", "score", "stage-outputs", "rank", "publish")
READY = re.compile(r"^ready: ", re.M)
UI = re.compile(r"Prefect UI (http://127\.0\.0\.1:\d+)")


def prepare_landed(home: str) -> dict:
    """The home as the watcher leaves it: the day's landing files in its landing folder, already
    ingested, recorded in ``ingest/watch.json`` (one poll: every file hashed, found in the
    ledger, skipped)."""
    from riskpipe.config import load_settings
    from riskpipe.store import Layout
    from riskpipe.watch import Watcher

    layout = Layout(Path(home))
    polled = Watcher(layout, load_settings(layout.home), settle_s=0, provisional=False).poll()
    summary = polled.ingest or {}
    return {"seconds": 0.0, "rows": 0, "detail": {"skipped": summary.get("files_skipped")}}


def _wait_for(pattern: re.Pattern[str], log: Path, proc: subprocess.Popen, timeout_s: float) -> re.Match[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
        found = pattern.search(text)
        if found:
            return found
        if proc.poll() is not None:
            raise RuntimeError(f"riskpipe schedule exited ({proc.returncode}): {text.strip()[-300:]}")
        time.sleep(0.05)
    raise TimeoutError(f"riskpipe schedule: no {pattern.pattern!r} after {timeout_s:.0f} s (log {log})")


def _follow(run_id, timeout_s: float):
    """The flow run once it reached a final state, and its task runs."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(run_id)
            if run.state is not None and run.state.is_final():
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"served night: run {run_id} not finished after {timeout_s:.0f} s")
            time.sleep(0.1)
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    return run, tasks


def do_served(home: str, day: str, timeout_s: float = 1800.0) -> dict:
    """Start ``riskpipe schedule`` on ``home`` (its start-up apart), trigger the nightly
    deployment for ``day`` and time trigger -> published (see the module's docstring)."""
    import resource

    log = Path(home) / "schedule.log"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "WARNING"
    env["COLUMNS"] = "200"  # one line each: the ready line and the UI address are parsed
    t0 = time.perf_counter()
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "riskpipe.cli", "--home", home, "schedule", "--port", "0"],
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    try:
        ui = _wait_for(UI, log, proc, 180).group(1)
        _wait_for(READY, log, proc, 300)
        startup_s = time.perf_counter() - t0
        from prefect.client.schemas.objects import FlowRun
        from prefect.deployments import run_deployment
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from flows.deploy import NIGHTLY_DEPLOYMENT

        with temporary_settings(updates={PREFECT_API_URL: f"{ui}/api"}):
            triggered = time.time()
            t_trigger = time.perf_counter()
            created = run_deployment(name=f"nightly/{NIGHTLY_DEPLOYMENT}", parameters={"day": day}, timeout=0)
            trigger_call_s = time.perf_counter() - t_trigger
            assert isinstance(created, FlowRun)  # called from sync code: the run itself
            run, tasks = _follow(created.id, timeout_s)
            followed_s = time.perf_counter() - t_trigger
    finally:
        proc.send_signal(signal.SIGINT)  # as Ctrl-C: schedules paused, the server stopped
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if run.state is None or not run.state.is_completed():
        raise RuntimeError(f"served night: run {run.name} ended {run.state.name if run.state else 'without state'}")
    by_name: dict[str, list] = {}
    for t in tasks:
        if t.start_time is not None and t.end_time is not None:
            by_name.setdefault(t.name.rsplit("-", 1)[0], []).append(t)  # run names: task name + "-xyz"
    if "publish" not in by_name:
        raise RuntimeError("served night: no publish task run recorded")
    published = max(t.end_time for t in by_name["publish"]).timestamp()
    first = min(t.start_time for ts in by_name.values() for t in ts).timestamp()
    steps = {
        n: round(sum((t.end_time - t.start_time).total_seconds() for t in by_name[n]), 2)
        for n in CRITICAL_TASKS
        if n in by_name
    }
    seconds = published - triggered
    targets = Path(home) / "targets" / date.fromisoformat(day).isoformat() / "targets.parquet"
    if not targets.exists() or targets.stat().st_mtime < triggered - 1:
        raise RuntimeError(f"served night: {targets} was not published by the run")
    import polars as pl

    rows = pl.scan_parquet(Path(home) / "scores" / day / "scores.parquet").select(pl.len()).collect().item()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "seconds": seconds,
        "rows": rows,
        "detail": {
            "startup_s": round(startup_s, 2),
            "trigger_call_s": round(trigger_call_s, 2),
            "run_started_s": round(run.start_time.timestamp() - triggered, 2) if run.start_time else None,
            "first_task_s": round(first - triggered, 2),
            "published_s": round(seconds, 2),
            "completed_s": round(run.end_time.timestamp() - triggered, 2) if run.end_time else None,
            "followed_s": round(followed_s, 2),
            "steps_s": steps,
            "overhead_s": round(seconds - sum(steps.values()), 2),
            "served_tree_cpu_s": round(children.ru_utime + children.ru_stime, 2),
            "flow_run": run.name,
        },
    }
