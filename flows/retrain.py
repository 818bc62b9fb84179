"""Flow: weekly retraining. Train a challenger, compare with the champion, promote if better."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from riskpipe.config import load_settings
from riskpipe.store import Layout


@task(name="import-outcomes")
def import_outcomes(home: str, path: str) -> dict:
    """Record exam outcome files (landing/outcomes by default) into the labels store."""
    from riskpipe.ingest import import_labels
    from riskpipe.labels import LabelStore

    layout = Layout(Path(home))
    settings = load_settings(layout.home)
    if not Path(path).exists():
        return {"rows_in": 0}
    summary = import_labels(layout, Path(path), LabelStore(settings.db_url))
    return summary.as_dict() if hasattr(summary, "as_dict") else dict(vars(summary))


@task(name="train-and-decide")
def train_and_decide(home: str, until: str | None, force: bool = False) -> dict:
    from riskpipe.model import view_summaries
    from riskpipe.registry import retrain

    layout = Layout(Path(home))
    settings = load_settings(layout.home)
    decision = retrain(layout, settings, date.fromisoformat(until) if until else None, force=force)
    record = decision.as_record()
    record["table"] = decision.table.to_dicts() if decision.table is not None else []
    record["view"] = (decision.report or {}).get("preferred_view")
    record["views"] = view_summaries(decision.report) if decision.report else []
    return record


@flow(name="retrain")
def retrain_flow(home: str, until: str | None = None, outcomes_path: str | None = None, force: bool = False) -> dict:
    """Import new outcomes, train a challenger up to ``until``, promote it only if better
    (``force``: also when champion.json names a model that cannot be used)."""
    log = get_run_logger()
    layout = Layout(Path(home))
    imported = import_outcomes(home, outcomes_path or str(layout.landing / "outcomes"))
    log.info("outcomes imported: %s", {k: v for k, v in imported.items() if isinstance(v, int)})
    record = train_and_decide(home, until, force)
    log.info("retrain: promoted=%s challenger=%s champion=%s (%s)", record["promoted"],
             record["challenger_version"], record["champion_version"], record["reason"])
    create_markdown_artifact(
        key="retrain-decision",
        markdown=(f"# Retrain decision\n\n- promoted: **{record['promoted']}**\n- challenger: {record['challenger_version']}"
                  f"\n- champion before: {record['champion_version']}\n- reason: {record['reason']}\n"),
    )
    return record


if __name__ == "__main__":
    print(retrain_flow(home="data"))
