"""The ``served`` stage of ``riskpipe bench``: the night as users run it, Prefect included.

``riskpipe schedule`` is started as users start it (a local Prefect server, the deployments, the
nightly's warm process: :mod:`flows.warm`); that start-up is reported apart (``startup_s``: it is
paid before the cut-off). Once it prints its ``ready`` line, the nightly deployment is triggered
for the benchmark day (``run_deployment``, as the cron or an operator does) and the run is
followed to its end through the API.

What is inside the timed interval (``seconds``): from just before the trigger call until the day's
``targets.parquet`` appears in its published folder (the publication's atomic rename; this
process looks every ``LOOK_S`` s, so the interval may be that much long): creating the flow run,
the runner noticing it (it looks every ``flows.deploy.POLL_S`` s), handing it to the warm
process, Prefect setting up the run, the ingest step (files the watcher already handled are not
read again), features, score, stage, rank, and publishing, with every task's Prefect
bookkeeping. Outside it: the server's start, the warm process's imports, and what the run does
after publishing (the shipment page's look-up files at the end of the ``publish`` task, then
artifacts, the run record and the history tables for the next night: ``completed_s`` includes
them). ``steps_s`` are the task runs' own durations from the API; ``overhead_s`` is the time
from the trigger to the start of the ``publish`` task minus the tasks that ran before it: what
Prefect adds on the path (the flow's own few calls between tasks included).
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
#: seconds between looks for the published targets file, and between questions to the API
LOOK_S = 0.05
ASK_S = 0.5
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


def _follow(run_id, targets: Path, timeout_s: float):
    """The flow run once it reached a final state, its task runs, and when ``targets`` appeared
    (epoch seconds; None if it never did)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout_s
    visible_at = None
    next_ask = 0.0
    with get_client(sync_client=True) as client:
        while True:
            if visible_at is None and targets.exists():
                visible_at = time.time()
            if time.monotonic() >= next_ask:
                run = client.read_flow_run(run_id)
                if run.state is not None and run.state.is_final():
                    break
                next_ask = time.monotonic() + ASK_S
            if time.monotonic() > deadline:
                raise TimeoutError(f"served night: run {run_id} not finished after {timeout_s:.0f} s")
            time.sleep(LOOK_S)
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    return run, tasks, visible_at


def do_served(home: str, day: str, timeout_s: float = 1800.0, warm: bool = True) -> dict:
    """Start ``riskpipe schedule`` on ``home`` (its start-up apart), trigger the nightly
    deployment for ``day`` and time trigger -> published (see the module's docstring).
    ``warm=False``: ``--no-warm``, each run in a fresh process (the comparison)."""
    import resource

    log = Path(home) / "schedule.log"
    targets = Path(home) / "targets" / date.fromisoformat(day).isoformat() / "targets.parquet"
    if targets.exists():
        raise RuntimeError(f"served night: {targets} is already published (the bench's home must not be)")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "WARNING"
    env["COLUMNS"] = "200"  # one line each: the ready line and the UI address are parsed
    t0 = time.perf_counter()
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "riskpipe.cli", "--home", home, "schedule", "--port", "0"]
            + ([] if warm else ["--no-warm"]),
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
            run, tasks, visible_at = _follow(created.id, targets, timeout_s)
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
    if "publish" not in by_name or visible_at is None:
        raise RuntimeError(f"served night: no publish task run recorded, or {targets} never appeared")
    publish_start = min(t.start_time for t in by_name["publish"]).timestamp()
    first = min(t.start_time for ts in by_name.values() for t in ts).timestamp()
    steps = {
        n: round(sum((t.end_time - t.start_time).total_seconds() for t in by_name[n]), 2)
        for n in CRITICAL_TASKS
        if n in by_name
    }
    before_publish = sum(  # the deployment's night runs one task at a time (shards=1)
        (t.end_time - t.start_time).total_seconds()
        for ts in by_name.values()
        for t in ts
        if t.end_time.timestamp() <= publish_start
    )
    seconds = visible_at - triggered
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
            "publish_task_end_s": round(max(t.end_time for t in by_name["publish"]).timestamp() - triggered, 2),
            "completed_s": round(run.end_time.timestamp() - triggered, 2) if run.end_time else None,
            "followed_s": round(followed_s, 2),
            "steps_s": steps,
            "overhead_s": round(publish_start - triggered - before_publish, 2),
            "served_tree_cpu_s": round(children.ru_utime + children.ru_stime, 2),
            "flow_run": run.name,
        },
    }
