"""Flow: write a synthetic world into the landing folder (riskpipe.synth)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from prefect import flow, get_run_logger, task

from riskpipe.progress import progress_bar
from riskpipe.store import Layout


@task(name="generate-world")
def generate_world(
    home: str,
    start: str,
    days: int,
    per_day: int,
    seed: int,
    prevalence: float | None,
    faults: bool,
    gzip: bool,
    show_progress: bool,
    random_exam_share: float | None = None,
) -> dict:
    from riskpipe.synth import DEFAULT_PREVALENCE, generate
    from riskpipe.synth.exams import RANDOM_SHARE

    with progress_bar("generate", enabled=show_progress) as progress:
        summary = generate(
            Layout(Path(home)),
            date.fromisoformat(start),
            days,
            per_day,
            seed,
            prevalence=DEFAULT_PREVALENCE if prevalence is None else prevalence,
            faults=faults,
            gzip=gzip,
            progress=progress,
            random_exam_share=RANDOM_SHARE if random_exam_share is None else random_exam_share,
        )
    return summary.totals() if hasattr(summary, "totals") else {"rows": getattr(summary, "rows", None)}


@flow(name="generate", flow_run_name="generate-{start}-{days}d", timeout_seconds=4 * 3600)
def generate_flow(
    home: str,
    start: str,
    days: int,
    per_day: int,
    seed: int = 7,
    prevalence: float | None = None,
    faults: bool = False,
    gzip: bool = False,
    show_progress: bool = False,
    random_exam_share: float | None = None,
) -> dict:
    """Generate ``days`` days of synthetic manifests, partner exports and past exam outcomes
    (``random_exam_share``: the share of random compliance exams, default 1 %)."""
    totals = generate_world(
        home, start, days, per_day, seed, prevalence, faults, gzip, show_progress, random_exam_share
    )
    get_run_logger().info("generated %s", totals)
    return totals


if __name__ == "__main__":
    generate_flow(home="data", start="2026-01-05", days=3, per_day=10_000, show_progress=True)
