"""Flow: ingest the landing folder (or given paths) into the raw store, with quarantine."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.tasks import exponential_backoff

from flows.hooks import ingest_run_name
from flows.settings import home_settings
from riskpipe import runsteps
from riskpipe.config import Settings
from riskpipe.progress import progress_bar
from riskpipe.store import Layout
from riskpipe.watch import SETTLE_S, PollRecord, Watcher

#: I/O tasks and the ingest flow fail after this long unless the caller sets another timeout
IO_TIMEOUT_S = Settings.model_fields["io_timeout_seconds"].default


@task(
    name="ingest-files",
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    timeout_seconds=IO_TIMEOUT_S,
)
def ingest_files(home: str, paths: list[str] | None, fx_rates_path: str | None, show_progress: bool) -> dict:
    """I/O task: read, validate, normalise and store; returns the run's counts (no row data).
    Progress goes to a bar of its own (``show_progress``) or to whoever watches the run's steps."""
    from riskpipe.ingest import ingest_paths

    with progress_bar("ingest", enabled=show_progress) as progress:
        progress = progress or runsteps.progress_for("ingest")
        summary = ingest_paths(
            Layout(Path(home)),
            [Path(p) for p in paths] if paths else None,
            fx_rates_path=Path(fx_rates_path) if fx_rates_path else None,
            progress=progress,
        )
    return summary.as_dict()


@flow(name="ingest", flow_run_name=ingest_run_name, timeout_seconds=IO_TIMEOUT_S)
def ingest_flow(
    home: str, paths: list[str] | None = None, fx_rates_path: str | None = None, show_progress: bool = False
) -> dict:
    """Ingest manifests and partner exports; one bad file is quarantined, never fatal."""
    counts = ingest_files(home, paths, fx_rates_path, show_progress)
    get_run_logger().info(
        "ingest: %s files, %s rows in, %s ingested, %s amended, %s quarantined",
        counts.get("files_seen"),
        counts.get("rows_in"),
        counts.get("rows_ingested"),
        counts.get("rows_amended"),
        counts.get("rows_quarantined"),
    )
    return counts


@flow(name="ingest-landed", timeout_seconds=IO_TIMEOUT_S)
def landed_flow(home: str, settle_seconds: float = SETTLE_S, provisional: bool = True) -> PollRecord:
    """One look at the landing folder (:mod:`riskpipe.watch`): ingest the files that are ready,
    score their days provisionally; skipped when another ingest is running. A deployment runs
    it on an interval (``flows.deploy``); what earlier runs handled is in ``ingest/watch.json``."""
    watcher = Watcher(Layout(Path(home)), home_settings(home), settle_s=settle_seconds, provisional=provisional)
    out = watcher.poll().as_dict()
    logger = get_run_logger()
    if out["busy"]:
        logger.info("ingest-landed: another ingest is running; skipped")
    if out["ingest"]:
        logger.info(
            "ingest-landed: %s files ingested, %s rows ingested, %s quarantined; provisional days %s",
            out["ingest"].get("files_ingested"),
            out["ingest"].get("rows_ingested"),
            out["ingest"].get("rows_quarantined"),
            [p["day"] for p in out["provisional"]],
        )
    for error in out["errors"]:
        logger.warning("ingest-landed: %s", error)
    return out


if __name__ == "__main__":
    print(ingest_flow(home="data", show_progress=True))
