"""Flow: weekly retraining. Train a challenger, compare with the champion, promote if better.

Runs are named ``retrain-until-D``; a failed or crashed run alerts ``notify_url``
(:func:`flows.hooks.notify_failure`); the flow and its I/O task have timeouts (settings
``retrain_timeout_seconds``, set by the caller, and ``io_timeout_seconds``).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from flows.hooks import notify_failure, retrain_run_name
from flows.settings import home_settings
from riskpipe import runsteps
from riskpipe.config import Settings
from riskpipe.store import Layout

FLOW_TIMEOUT_S = Settings.model_fields["retrain_timeout_seconds"].default
IO_TIMEOUT_S = Settings.model_fields["io_timeout_seconds"].default


@task(name="import-outcomes", timeout_seconds=IO_TIMEOUT_S)
def import_outcomes(home: str, path: str) -> dict:
    """Record exam outcome files (landing/outcomes by default) into the labels store."""
    from riskpipe.ingest import import_labels
    from riskpipe.labels import LabelStore

    layout = Layout(Path(home))
    settings = home_settings(layout.home)
    if not Path(path).exists():
        return {"rows_in": 0}
    summary = import_labels(layout, Path(path), LabelStore(settings.db_url))
    return summary.as_dict()


@task(name="train-and-decide")
def train_and_decide(home: str, until: str | None, force: bool = False, with_truth: bool = False) -> dict:
    from riskpipe.evaluation.truth import truth_reader
    from riskpipe.model.evaluate import view_summaries
    from riskpipe.retrain import retrain

    layout = Layout(Path(home))
    settings = home_settings(layout.home)
    truth = truth_reader(layout) if with_truth else None  # evaluation only (the demo's synthetic world)
    decision = retrain(layout, settings, date.fromisoformat(until) if until else None, force=force, truth=truth)
    record = decision.as_record()
    record["table"] = decision.table.to_dicts() if decision.table is not None else []
    record["view"] = (decision.report or {}).get("preferred_view")
    record["views"] = view_summaries(decision.report) if decision.report else []
    return record


@flow(
    name="retrain",
    flow_run_name=retrain_run_name,
    timeout_seconds=FLOW_TIMEOUT_S,
    on_failure=[notify_failure],
    on_crashed=[notify_failure],
)
def retrain_flow(
    home: str, until: str | None = None, outcomes_path: str | None = None, force: bool = False, with_truth: bool = False
) -> dict:
    """Import new outcomes, train a challenger up to ``until``, promote it only if better
    (``force``: also when champion.json names a model that cannot be used). ``with_truth``: add the
    ground-truth view to the recorded figures (a synthetic world's evaluation; never decides)."""
    from prefect.runtime import flow_run

    from riskpipe.promotion import summary

    log = get_run_logger()
    runsteps.run_started("retrain", flow_run.name, str(flow_run.id) if flow_run.id else None)
    layout = Layout(Path(home))
    settings = runsteps.run_step("retrain", "settings", home_settings, layout.home)
    imported = runsteps.run_step(
        "retrain",
        "import-outcomes",
        import_outcomes.with_options(timeout_seconds=settings.io_timeout_seconds),
        home,
        outcomes_path or str(layout.landing / "outcomes"),
    )
    log.info("outcomes imported: %s", {k: v for k, v in imported.items() if isinstance(v, int)})
    record = runsteps.run_step("retrain", "train-and-decide", train_and_decide, home, until, force, with_truth)
    log.info(
        "retrain: promoted=%s challenger=%s champion=%s (%s)",
        record["promoted"],
        record["challenger_version"],
        record["champion_version"],
        record["reason"],
    )
    create_markdown_artifact(
        key="retrain-decision",
        markdown=(
            f"# Retrain decision\n\n- promoted: **{record['promoted']}**\n- challenger: {record['challenger_version']}"
            f"\n- champion before: {record['champion_version']}\n- reason: {record['reason']}\n"
            + (f"- evidence: {summary(record)}\n" if summary(record) else "")
        ),
    )
    return record


if __name__ == "__main__":
    print(retrain_flow(home="data"))
