"""Flow: ingest the landing folder (or given paths) into the raw store, with quarantine."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.tasks import exponential_backoff

from riskpipe.progress import progress_bar
from riskpipe.store import Layout


@task(name="ingest-files", retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=2))
def ingest_files(home: str, paths: list[str] | None, fx_rates_path: str | None, show_progress: bool) -> dict:
    """I/O task: read, validate, normalise and store; returns the run's counts (no row data)."""
    from riskpipe.ingest import ingest_paths

    with progress_bar("ingest", enabled=show_progress) as progress:
        summary = ingest_paths(
            Layout(Path(home)),
            [Path(p) for p in paths] if paths else None,
            fx_rates_path=Path(fx_rates_path) if fx_rates_path else None,
            progress=progress,
        )
    return summary.as_dict()


@flow(name="ingest")
def ingest_flow(home: str, paths: list[str] | None = None, fx_rates_path: str | None = None,
                show_progress: bool = False) -> dict:
    """Ingest manifests and partner exports; one bad file is quarantined, never fatal."""
    counts = ingest_files(home, paths, fx_rates_path, show_progress)
    get_run_logger().info(
        "ingest: %s files, %s rows in, %s ingested, %s amended, %s quarantined",
        counts.get("files_seen"), counts.get("rows_in"), counts.get("rows_ingested"),
        counts.get("rows_amended"), counts.get("rows_quarantined"),
    )
    return counts


if __name__ == "__main__":
    print(ingest_flow(home="data", show_progress=True))
