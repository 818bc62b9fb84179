"""Flow: one night, as a story: ingest -> features -> score -> rank -> publish.

Tasks pass dates and paths; Parquet on disk is the hand-off. Only I/O tasks retry. A bad input
file is quarantined by ingest and reported, never fatal; any failure names its step.

With ``shards > 1`` scoring fans out: features once for the day, then one task per shard (by
consignee address key, :mod:`riskpipe.shard`) submitted to the flow's task runner (threads by
default, a Dask cluster with :func:`with_task_runner`), then one combine task; the result equals
the single-process run exactly.

Each step runs through :func:`riskpipe.runsteps.run_step`: the CLI draws a progress row per step
from its events, and a failure names its step (in the error, the run's log and the alert that
:func:`flows.hooks.notify_failure` sends). Runs are named ``nightly-D``; the flow and its I/O
tasks have timeouts (settings ``nightly_timeout_seconds``, set by the caller, and
``io_timeout_seconds``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.tasks import exponential_backoff

from flows.hooks import nightly_run_name, notify_failure
from flows.ingest import ingest_files
from flows.settings import home_settings
from riskpipe import lookup, publish, runsteps
from riskpipe import nightly as steps
from riskpipe.config import Settings
from riskpipe.errors import RiskpipeError
from riskpipe.landed import unhandled_landing
from riskpipe.store import Layout

#: defaults when the caller sets none (settings ``nightly_timeout_seconds``, ``io_timeout_seconds``)
FLOW_TIMEOUT_S = Settings.model_fields["nightly_timeout_seconds"].default
IO_TIMEOUT_S = Settings.model_fields["io_timeout_seconds"].default


def _ctx(home: str):
    layout = Layout(Path(home))
    return layout, home_settings(layout.home)


@task(name="features")
def features(home: str, day: str) -> str:
    layout, settings = _ctx(home)
    return str(steps.build_features_step(layout, settings, date.fromisoformat(day)))


@task(name="score")
def score(home: str, day: str, features_file: str) -> str:
    layout, settings = _ctx(home)
    return str(steps.score_step(layout, settings, date.fromisoformat(day), Path(features_file)))


@task(name="split-shards")
def split_shards(home: str, day: str, features_file: str, shards: int) -> list[dict[str, str]]:
    from riskpipe.shard import split_day

    layout, _ = _ctx(home)
    return split_day(layout, date.fromisoformat(day), Path(features_file), shards)


def _night_champion(home: str) -> str:
    """The champion version of this night (``NO_MODEL_VERSION``: rules only), resolved once when
    the night starts; every shard, piece and the combine step load exactly this version, so a
    promotion or rollback during the night cannot give one night two models."""
    from riskpipe.shard import night_champion

    return night_champion(_ctx(home)[1])


@task(name="score-shard")
def score_shard(home: str, day: str, part: dict[str, str], model_version: str | None = None) -> str:
    from riskpipe.shard import score_shard as score_one

    layout, settings = _ctx(home)
    return str(score_one(layout, settings, date.fromisoformat(day), part, model_version))


def _combine(
    combine: Callable[..., Path],
    home: str,
    day: str,
    scored_files: list[str],
    features_file: str,
    model_version: str | None,
) -> str:
    """The day's scores file from its shards' or pieces' scores (``combine``: the shard module's way)."""
    layout, settings = _ctx(home)
    d = date.fromisoformat(day)
    out = steps.work_dir(layout, d) / steps.SCORED_FILE
    return str(combine(layout, settings, d, scored_files, Path(features_file), out, model_version=model_version))


@task(name="combine-shards")
def combine_shards(
    home: str, day: str, scored_files: list[str], features_file: str, model_version: str | None = None
) -> str:
    from riskpipe.shard import combine_shards as combine

    return _combine(combine, home, day, scored_files, features_file, model_version)


def _score_sharded(home: str, day: str, features_file: str, shards: int, model_version: str | None = None) -> str:
    """Fan out one scoring task per shard on the flow's task runner, then combine (all with the
    night's model ``model_version``)."""
    parts = split_shards(home, day, features_file, shards)
    futures = [score_shard.submit(home, day, part, model_version) for part in parts]
    return combine_shards(home, day, [f.result() for f in futures], features_file, model_version)


@task(name="split-raw")
def split_raw(home: str, day: str, shards: int) -> list[dict[str, str]]:
    from riskpipe import distnight

    layout, _ = _ctx(home)
    return distnight.split_raw(layout, date.fromisoformat(day), shards)


@task(name="day-columns")
def day_columns(home: str, day: str, min_pieces: int) -> dict:
    from riskpipe import distnight

    layout, settings = _ctx(home)
    return distnight.day_columns(layout, settings, date.fromisoformat(day), min_pieces)


@task(name="features-shard")
def features_shard(home: str, day: str, part: dict[str, str], day_file: str) -> str:
    from riskpipe import distnight

    layout, settings = _ctx(home)
    return distnight.features_shard(layout, settings, date.fromisoformat(day), part, day_file)


@task(name="score-piece")
def score_piece(
    home: str, day: str, feature_files: list[str], piece: tuple, out: dict[str, str], model_version: str | None = None
) -> dict[str, str]:
    from riskpipe import distnight

    layout, settings = _ctx(home)
    return distnight.score_piece(layout, settings, date.fromisoformat(day), feature_files, piece, out, model_version)


@task(name="join-features")
def join_features(home: str, day: str, files: list[str], rows: int) -> str:
    from riskpipe import distnight

    layout, _ = _ctx(home)
    return str(distnight.join_ranges(layout, date.fromisoformat(day), files, rows))


@task(name="combine-pieces")
def combine_pieces(
    home: str, day: str, scored_files: list[str], features_file: str, model_version: str | None = None
) -> str:
    from riskpipe.shard import combine_pieces as combine

    return _combine(combine, home, day, scored_files, features_file, model_version)


@task(name="keys-prepare")
def keys_prepare(home: str, day: str) -> dict:
    from riskpipe import distnight

    layout, settings = _ctx(home)
    return distnight.keys_prepare(layout, settings, date.fromisoformat(day))


@task(name="keys-map")
def keys_map(home: str, day: str, part: dict[str, str], shard: int, n_parts: int) -> int:
    from riskpipe import distnight

    return distnight.keys_map(Layout(Path(home)), date.fromisoformat(day), part, shard, n_parts)


@task(name="keys-reduce-1")
def keys_reduce1(home: str, day: str, part: int, n_parts: int, n_shards: int) -> int:
    from riskpipe import distnight

    return distnight.keys_reduce1(Layout(Path(home)), date.fromisoformat(day), part, n_parts, n_shards)


@task(name="keys-map-2")
def keys_map2(home: str, day: str, shard: int, n_parts: int) -> int:
    from riskpipe import distnight

    return distnight.keys_map2(Layout(Path(home)), date.fromisoformat(day), shard, n_parts)


@task(name="keys-reduce-2")
def keys_reduce2(home: str, day: str, part: int, n_shards: int) -> int:
    from riskpipe import distnight

    return distnight.keys_reduce2(Layout(Path(home)), date.fromisoformat(day), part, n_shards)


@task(name="keys-components")
def keys_components(home: str, day: str) -> int:
    from riskpipe import distnight

    return distnight.keys_components(Layout(Path(home)), date.fromisoformat(day))


@task(name="keys-map-3")
def keys_map3(home: str, day: str, shard: int, n_parts: int) -> int:
    from riskpipe import distnight

    return distnight.keys_map3(Layout(Path(home)), date.fromisoformat(day), shard, n_parts)


@task(name="keys-reduce-3")
def keys_reduce3(home: str, day: str, part: int, n_parts: int) -> int:
    from riskpipe import distnight

    return distnight.keys_reduce3(Layout(Path(home)), date.fromisoformat(day), part, n_parts)


@task(name="keys-networks")
def keys_networks(home: str, day: str, part: int) -> int:
    from riskpipe import distnight

    return distnight.keys_networks(Layout(Path(home)), date.fromisoformat(day), part)


@task(name="keys-pieces")
def keys_pieces(home: str, day: str, n_shards: int, min_pieces: int) -> dict:
    from riskpipe import distnight

    return distnight.keys_pieces(Layout(Path(home)), date.fromisoformat(day), n_shards, min_pieces)


@task(name="features-shard-keys")
def features_shard_keys(home: str, day: str, part: dict[str, str], shard: int) -> str:
    """The shard's whole-day columns gathered from the key partitions, then its features."""
    from riskpipe import distnight

    layout, settings = _ctx(home)
    d = date.fromisoformat(day)
    return distnight.features_shard(layout, settings, d, part, distnight.keys_shard_columns(layout, d, shard))


def _all(futures: list) -> list:
    return [f.result() for f in futures]


def _features_on_shards(home: str, day: str, shards: int, partitions: int | None = None) -> tuple[list[str], dict]:
    """The features of each address shard, built on the task runner's workers; the whole-day
    columns as a map-reduce over ``partitions`` key partitions (default: as many as shards) whose
    every step is a task on the workers (:mod:`riskpipe.distnight`, ``keys_*``); returns the
    shards' feature files and the day's pieces."""
    n_parts = partitions or shards
    parts = split_raw.submit(home, day, shards).result()  # first: it clears the shards' folder of a killed run
    keys_prepare.submit(home, day).result()
    _all([keys_map.submit(home, day, p, s, n_parts) for s, p in enumerate(parts)])
    _all([keys_reduce1.submit(home, day, i, n_parts, shards) for i in range(n_parts)])
    _all([keys_map2.submit(home, day, s, n_parts) for s in range(shards)])
    _all([keys_reduce2.submit(home, day, i, shards) for i in range(n_parts)])
    keys_components.submit(home, day).result()
    _all([keys_map3.submit(home, day, s, n_parts) for s in range(shards)])
    _all([keys_reduce3.submit(home, day, i, n_parts) for i in range(n_parts)])
    _all([keys_networks.submit(home, day, i) for i in range(n_parts)])
    whole = keys_pieces.submit(home, day, shards, shards)
    files = _all([features_shard_keys.submit(home, day, p, s) for s, p in enumerate(parts)])
    return files, whole.result()


def _score_pieces(
    home: str, day: str, feature_files: list[str], whole: dict, model_version: str | None = None
) -> tuple[str, str]:
    """Score the day's pieces (id ranges gathered from the shards) on the task runner's workers,
    then write the day's features file and combine the scores, all with the night's model
    ``model_version``; returns both files."""
    from riskpipe import distnight

    d = date.fromisoformat(day)
    outs = distnight.piece_paths(Layout(Path(home)), d, len(whole["pieces"]))
    done = [
        f.result()
        for f in [
            score_piece.submit(home, day, feature_files, p, o, model_version)
            for p, o in zip(whole["pieces"], outs, strict=True)
        ]
    ]
    feats = join_features.submit(home, day, [o["features"] for o in done], whole["rows"]).result()
    return feats, combine_pieces.submit(home, day, [o["scored"] for o in done], feats, model_version).result()


def _on_worker(task_):
    """Call ``task_`` as a task submitted to the flow's task runner (a Dask worker, not the
    process that runs the flow), waiting for its result."""

    def run(*args):
        return task_.submit(*args).result()

    return run


@task(
    name="stage-outputs",
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=1),
    timeout_seconds=IO_TIMEOUT_S,
)
def stage(home: str, day: str) -> dict[str, str]:
    layout, _ = _ctx(home)
    staged = publish.stage(layout, date.fromisoformat(day))
    return {k: str(v) for k, v in staged.dirs.items()}


@task(name="rank")
def rank(
    home: str,
    day: str,
    scored_file: str,
    staged: dict[str, str],
    capacity: int | None,
    quarantine_by_reason: dict[str, int],
) -> steps.NightSummary:
    layout, settings = _ctx(home)
    return steps.rank_and_stage_step(
        layout, settings, date.fromisoformat(day), Path(scored_file), staged, capacity, quarantine_by_reason
    )


@task(
    name="publish", retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=1), timeout_seconds=IO_TIMEOUT_S
)
def publish_outputs(home: str, day: str, staged: dict[str, str]) -> dict[str, str]:
    layout, _ = _ctx(home)
    final = publish.commit(layout, publish.Staged(date.fromisoformat(day), {k: Path(v) for k, v in staged.items()}))
    return {k: str(v) for k, v in final.items()}


@task(name="lookup-files")
def lookup_files(home: str, day: str) -> bool:
    """The shipment page's per-day look-up files, once the day is published (never fails the
    night: the workbench scans the day meanwhile and builds them on its first need)."""
    layout, _ = _ctx(home)
    return lookup.prepare_day(layout, date.fromisoformat(day))


@task(name="history-tables")
def history_tables(home: str, day: str) -> bool:
    """The day's history tables and the next night's window table, once the day is published
    (off the critical path; if it fails, the next night's features step writes them)."""
    layout, _ = _ctx(home)
    return steps.history_step(layout, date.fromisoformat(day))


def _step(name: str, fn, *args):
    """Run one step; a failure says which step failed and why (``StepFailed``)."""
    return runsteps.run_step("nightly", name, fn, *args)


def io_task(task_, settings: Settings):
    """An I/O task with the home's ``io_timeout_seconds``."""
    return task_.with_options(timeout_seconds=settings.io_timeout_seconds)


def _announce(flow_name: str) -> None:
    from prefect.runtime import flow_run

    runsteps.run_started(flow_name, flow_run.name, str(flow_run.id) if flow_run.id else None)


def _settings_and_day(layout: Layout, day: str | None) -> tuple[Settings, str]:
    settings = home_settings(layout.home)
    return settings, resolve_day(day, settings.timezone)


def resolve_day(day: str | None, timezone: str, now: datetime | None = None) -> str:
    """``day``, or (None, as in a scheduled run) today's date in ``timezone``: the run at 02:00
    scores the shipments arriving that day, before they arrive."""
    if day:
        return date.fromisoformat(day).isoformat()
    now = now or datetime.now(ZoneInfo(timezone))
    return now.astimezone(ZoneInfo(timezone)).date().isoformat()


@flow(
    name="nightly",
    flow_run_name=nightly_run_name,
    timeout_seconds=FLOW_TIMEOUT_S,
    on_failure=[notify_failure],
    on_crashed=[notify_failure],
)
def nightly_flow(
    home: str,
    day: str | None = None,
    capacity: int | None = None,
    ingest: bool = True,
    show_progress: bool = False,
    shards: int = 1,
    allow_rules_only: bool = False,
    distributed: bool = False,
) -> dict:
    """Score and rank every shipment arriving on ``day`` and publish scores, targets and report.

    ``day`` None means today in the configured time zone (scheduled runs). Without a usable
    champion model the night is ranked by the rules alone and published with a warning, a report
    banner and a ``rules-only-D`` artifact, then the flow fails (``RulesOnlyNight``) unless
    ``allow_rules_only``.

    ``distributed``: the features too are built shard by shard on the task runner (the row
    families, the whole-day columns as a map-reduce over ``shards`` key partitions, scoring and
    ranking all as tasks on the workers; :mod:`riskpipe.distnight`); else features are built in
    one task and ``shards > 1`` fans out scoring only."""
    from riskpipe.ingest import quarantine_reason_counts

    log = get_run_logger()
    _announce("nightly")
    layout = Layout(Path(home))
    settings, day = _step("resolve-date", _settings_and_day, layout, day)
    # what arrived since: the files the watcher ingested as they landed are not read again
    todo = unhandled_landing(layout) if ingest else []
    if todo != []:
        counts = _step("ingest", io_task(ingest_files, settings), home, todo, None, show_progress)
        log.info(
            "ingest: %s rows in, %s ingested, %s amended, %s quarantined, %s files quarantined",
            counts.get("rows_in"),
            counts.get("rows_ingested"),
            counts.get("rows_amended"),
            counts.get("rows_quarantined"),
            counts.get("files_quarantined"),
        )
    # the night's model, resolved once: the shards, pieces and combine step all load this version
    pinned = _night_champion(home) if distributed or shards > 1 else None
    if distributed:
        shard_files, whole = _step("features", _features_on_shards, home, day, shards)
        log.info("features of %s built in %s shards", day, shards)
        feats, scored = _step("score", _score_pieces, home, day, shard_files, whole, pinned)
        log.info("scored %s in %s pieces", day, len(whole["pieces"]))
    else:
        feats = _step("features", features, home, day)
        log.info("features written for %s", day)
        if shards > 1:
            scored = _step("score", _score_sharded, home, day, feats, shards, pinned)
            log.info("scored %s in %s shards", day, shards)
        else:
            scored = _step("score", score, home, day, feats)
    staged = _step("stage", io_task(stage, settings), home, day)
    try:
        quarantine = quarantine_reason_counts(layout)
        # the night on a cluster ranks on a worker: the client holds no column of the day
        summary = _step(
            "rank", _on_worker(rank) if distributed else rank, home, day, scored, staged, capacity, quarantine
        )
        final = _step("publish", io_task(publish_outputs, settings), home, day, staged)
    except BaseException:
        publish.abandon(publish.Staged(date.fromisoformat(day), {k: Path(v) for k, v in staged.items()}))
        raise
    log.info(
        "published %s: %s shipments scored, %s targets (%s exploration), model %s",
        day,
        summary.shipments,
        summary.targets,
        summary.exploration,
        summary.model_version,
    )
    # after publishing, off the critical path; on a cluster they run on a worker, like ranking
    # (each reads the day a range at a time: the flow's process holds no column of the day)
    _step("lookup", _on_worker(lookup_files) if distributed else lookup_files, home, day)
    _step("record", _record, layout, day, summary, quarantine, final)
    _step("history", _on_worker(history_tables) if distributed else history_tables, home, day)
    result = {"summary": summary.as_dict(), "outputs": final}
    problem = summary.champion_problem
    if problem:
        log.warning(
            "RULES-ONLY NIGHT %s: no usable champion model, targets ranked by the rules alone: %s", day, problem
        )
        if not allow_rules_only:
            raise steps.RulesOnlyNight(
                f"nightly {day}: no usable champion model, so the published targets were ranked by the rules "
                f"alone ({problem}); pass --allow-rules-only to accept a rules-only night",
                result,
            )
    return result


def _record(
    layout: Layout, day: str, summary: steps.NightSummary, quarantine: dict[str, int], final: dict[str, str]
) -> None:
    """The night's artifacts in Prefect and its run record in the home."""
    _artifacts(layout, day, summary, quarantine)
    steps.write_run_record(layout, date.fromisoformat(day), {"summary": summary.as_dict(), "outputs": final})


def _artifacts(layout: Layout, day: str, summary: steps.NightSummary, quarantine: dict[str, int]) -> None:
    """The night at a glance in the Prefect UI (no personal data)."""
    targets_file = layout.day_dir(layout.targets, date.fromisoformat(day)) / "targets.parquet"
    rows = steps.top_targets_rows(targets_file)
    key = f"targets-{day}"
    create_table_artifact(key=key, table=rows, description=f"Top targets for arrival date {day}")
    lines = [
        f"# Night of {day}",
        "",
        "| measure | value |",
        "|---|---|",
        f"| shipments scored | {summary.shipments:,} |",
        f"| targets | {summary.targets:,} ({summary.exploration:,} exploration) |",
        f"| rows quarantined (all time) | {sum(quarantine.values()):,} |",
        f"| model version | {summary.model_version} |",
        f"| mean score / p99 | {summary.score_mean:.4f} / {summary.score_p99:.4f} |",
        f"| features drifting (PSI > 0.25) | {', '.join(summary.drift_major) or 'none'} |",
    ]
    create_markdown_artifact(key=f"summary-{day}", markdown="\n".join(lines), description=f"Nightly summary {day}")
    if summary.champion_problem:
        kind = "a broken champion" if summary.champion_registered else "no champion registered yet"
        create_markdown_artifact(
            key=f"rules-only-{day}",
            markdown=(
                f"# Rules-only night: {day}\n\n**No usable model ({kind}): the targets were ranked by "
                f"the rules alone.**\n\n{summary.champion_problem}\n"
            ),
            description=f"WARNING: no usable champion model for {day}",
        )


def with_task_runner(
    task_runner: str = "local", dask_address: str | None = None, workers: int = 2, timeout_seconds: float | None = None
):
    """The nightly flow on a task runner: "local" (threads) or "dask" (a cluster at
    ``dask_address``, or a local one with ``workers`` single-threaded worker processes), with a
    timeout (``timeout_seconds``, else the flow's default)."""
    flow_ = nightly_flow if timeout_seconds is None else nightly_flow.with_options(timeout_seconds=timeout_seconds)
    if task_runner == "local":
        return flow_
    if task_runner != "dask":
        raise RiskpipeError(f"--task-runner: {task_runner!r} is not one of local, dask")
    from prefect_dask import DaskTaskRunner

    if dask_address:
        runner = DaskTaskRunner(address=dask_address)
    else:
        runner = DaskTaskRunner(
            cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "dashboard_address": None}
        )
    # prefect's TaskRunner is invariant in its future type: a DaskTaskRunner (futures of Dask) is refused
    return flow_.with_options(task_runner=runner)  # type: ignore[arg-type]


if __name__ == "__main__":
    import sys

    print(nightly_flow(home="data", day=sys.argv[1] if len(sys.argv) > 1 else date.today().isoformat()))
