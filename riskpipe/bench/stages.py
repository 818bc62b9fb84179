"""The measured stages and the cached preparations of ``riskpipe bench``: each runs inside a
child process (``python -m riskpipe.bench child SPEC`` -> :func:`_child_main`) and returns a plain
JSON-able dict (``seconds``, ``rows``, ``detail``); the parent (:mod:`riskpipe.bench.core`) measures
the process around it."""

from __future__ import annotations

import json
import shutil
import time
import traceback
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

from riskpipe.bench.served import do_served, prepare_landed
from riskpipe.store import write_atomic, write_parquet_atomic


def _layout(home: str):
    from riskpipe.store import Layout

    return Layout(Path(home))


def _settings(home: str):
    from riskpipe.config import load_settings

    return load_settings(Path(home))


def do_generate(home: str, day: str, rows: int, seed: int) -> dict:
    """One synthetic day of ``rows`` shipments into a fresh home (landing files, truth, partner)."""
    from riskpipe.synth import generate

    shutil.rmtree(home, ignore_errors=True)
    t0 = time.perf_counter()
    summary = generate(_layout(home), date.fromisoformat(day), 1, rows, seed)
    secs = time.perf_counter() - t0
    d = summary.days[0]
    return {"seconds": secs, "rows": d.shipments, "detail": {"files": d.files, "manifest_rows": d.rows}}


def do_ingest(home: str, path: str) -> dict:
    """Ingest one file into a fresh home."""
    from riskpipe.ingest import ingest_paths

    shutil.rmtree(home, ignore_errors=True)
    layout = _layout(home)
    layout.landing.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    summary = ingest_paths(layout, [Path(path)])
    secs = time.perf_counter() - t0
    return {
        "seconds": secs,
        "rows": summary.rows_in,
        "detail": {
            "ingested": summary.rows_ingested,
            "quarantined": summary.rows_quarantined,
            "file_mb": round(Path(path).stat().st_size / 2**20, 1),
        },
    }


def do_ingest_spread(home: str, files: list[str], chunks: int) -> dict:
    """The day's landing files ingested in ``chunks`` groups (consecutive in name order, at most
    one per file), one after the other into the history home, as ``riskpipe watch`` / the ingest
    deployment does while they land: the ingest cost taken off the night's critical path.
    ``seconds`` is the sum; ``detail`` has each chunk's time and the largest."""
    from riskpipe.ingest import ingest_paths

    layout = _layout(home)
    layout.landing.mkdir(parents=True, exist_ok=True)
    n = max(1, min(chunks, len(files)))
    bounds = [i * len(files) // n for i in range(n + 1)]
    times, rows = [], 0
    for a, b in zip(bounds, bounds[1:], strict=False):
        t0 = time.perf_counter()
        summary = ingest_paths(layout, [Path(f) for f in files[a:b]])
        times.append(time.perf_counter() - t0)
        rows += summary.rows_in
    return {
        "seconds": sum(times),
        "rows": rows,
        "detail": {"chunks": n, "chunk_s": [round(t, 2) for t in times], "largest_chunk_s": round(max(times), 2)},
    }


def do_window(home: str, day: str) -> dict:
    """The window table of the night of ``day`` as the night before leaves it (its history step,
    after publishing: off the critical path). The table of the day before is summed in full
    first (``detail.full_s``: what a first night or a re-ingested past day costs); ``seconds``
    is moving it on by one day, the cost every night."""
    import polars as pl

    from riskpipe.features import history

    layout, d = _layout(home), date.fromisoformat(day)
    t0 = time.perf_counter()
    history.update_window(layout, d - timedelta(days=1))
    t1 = time.perf_counter()
    history.update_window(layout, d)
    secs = time.perf_counter() - t1
    rows = pl.scan_parquet(history.window_path(layout, d)).select(pl.len()).collect().item()
    return {"seconds": secs, "rows": rows, "detail": {"full_s": round(t1 - t0, 2)}}


def do_features(home: str, day: str) -> dict:
    """The nightly features step (labels loaded, features written)."""
    import polars as pl

    from riskpipe import nightly

    d = date.fromisoformat(day)
    t0 = time.perf_counter()
    path = nightly.build_features_step(_layout(home), _settings(home), d)
    secs = time.perf_counter() - t0
    rows = pl.scan_parquet(path).select(pl.len()).collect().item()
    return {"seconds": secs, "rows": rows}


def do_score(home: str, day: str) -> dict:
    """The nightly score step on features already built."""
    import polars as pl

    from riskpipe import nightly, score

    layout, d = _layout(home), date.fromisoformat(day)
    t0 = time.perf_counter()
    path = nightly.score_step(layout, _settings(home), d, nightly.features_path(layout, d))
    secs = time.perf_counter() - t0
    rows = pl.scan_parquet(path).select(pl.len()).collect().item()
    return {"seconds": secs, "rows": rows, "detail": {"model": score.load_champion(_settings(home)) is not None}}


def do_rank_publish(home: str, day: str) -> dict:
    """Rank, stage the scores/targets/report files and publish them atomically."""
    from riskpipe import nightly, publish
    from riskpipe.ingest import quarantine_reason_counts

    layout, settings, d = _layout(home), _settings(home), date.fromisoformat(day)
    t0 = time.perf_counter()
    staged = publish.stage(layout, d)
    summary = nightly.rank_and_stage_step(
        layout,
        settings,
        d,
        nightly.work_dir(layout, d) / nightly.SCORED_FILE,
        {k: str(v) for k, v in staged.dirs.items()},
        None,
        quarantine_reason_counts(layout),
    )
    t1 = time.perf_counter()
    publish.commit(layout, staged)
    t2 = time.perf_counter()
    return {
        "seconds": t2 - t0,
        "rows": summary.shipments,
        "detail": {
            "rank_and_report_s": round(t1 - t0, 2),
            "publish_s": round(t2 - t1, 2),
            "targets": summary.targets,
        },
    }


def do_nightly(home: str, day: str, files: list[str]) -> dict:
    """The whole night as the flow runs its library steps, in one process, without Prefect."""
    from riskpipe import nightly, publish
    from riskpipe.ingest import ingest_paths, quarantine_reason_counts

    layout, settings, d = _layout(home), _settings(home), date.fromisoformat(day)
    import resource

    steps: dict[str, float] = {}
    peaks: dict[str, float] = {}  # the process's peak RSS so far after each step (MB): which step raised it
    t0 = t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        steps[name] = round(now - t, 2)
        peaks[name] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        t = now

    ingested = ingest_paths(layout, [Path(f) for f in files])
    lap("ingest")
    feats = nightly.build_features_step(layout, settings, d)
    lap("features")
    scored = nightly.score_step(layout, settings, d, feats)
    lap("score")
    staged = publish.stage(layout, d)
    try:
        summary = nightly.rank_and_stage_step(
            layout,
            settings,
            d,
            scored,
            {k: str(v) for k, v in staged.dirs.items()},
            None,
            quarantine_reason_counts(layout),
        )
        lap("rank_and_report")
        final = publish.commit(layout, staged)
    except BaseException:
        publish.abandon(staged)
        raise
    lap("publish")
    nightly.write_run_record(
        layout, d, {"summary": summary.as_dict(), "outputs": {k: str(v) for k, v in final.items()}}
    )
    nightly.history_step(layout, d)  # the flow's record step: after publishing
    lap("record_and_history")
    return {
        "seconds": time.perf_counter() - t0,
        "rows": summary.shipments,
        "detail": {
            "steps_s": steps,
            "peak_mb_after": peaks,
            "rows_in": ingested.rows_in,
            "targets": summary.targets,
            "model": summary.model_version,
        },
    }


def do_prefect(home: str, day: str) -> dict:
    """The nightly Prefect flow (ephemeral server start-up included) on a home whose landing
    folder holds the day's files."""
    from riskpipe.prefect_env import configure_prefect

    configure_prefect(Path(home))
    from flows.nightly import nightly_flow

    t0 = time.perf_counter()
    out = nightly_flow(home=str(home), day=day)
    return {"seconds": time.perf_counter() - t0, "rows": out["summary"]["shipments"]}


def do_floor(home: str, day: str, out: str) -> dict:
    """The floor: read the day's raw partition (every column) and write shipment_id + a constant
    score. Nothing a nightly run does can be faster than this."""
    import polars as pl

    from riskpipe import schema as S

    layout = _layout(home)
    files = sorted(layout.raw_shipments_day(date.fromisoformat(day)).glob("*.parquet"))
    t0 = time.perf_counter()
    frame = pl.read_parquet(files)
    frame.select(S.SHIPMENT_ID, pl.lit(0.0).alias(S.RISK_SCORE)).write_parquet(out)
    return {"seconds": time.perf_counter() - t0, "rows": frame.height, "detail": {"input": "raw partition (parquet)"}}


def do_floor_landing(files: list[str], out: str) -> dict:
    """The floor from the landing files themselves (what the nightly really reads first)."""
    import polars as pl

    from riskpipe import schema as S

    t0 = time.perf_counter()
    ids = []
    for f in files:
        name = Path(f).name
        if name.endswith(".parquet"):
            part = pl.read_parquet(f)
        elif name.endswith((".csv", ".csv.gz")):
            part = pl.read_csv(f, infer_schema=False)
        else:
            part = pl.read_ndjson(f, infer_schema_length=None)
        ids.append(part.get_column(S.SHIPMENT_ID).cast(pl.String))
    frame = pl.DataFrame({S.SHIPMENT_ID: pl.concat(ids)}).with_columns(pl.lit(0.0).alias(S.RISK_SCORE))
    frame.write_parquet(out)
    return {"seconds": time.perf_counter() - t0, "rows": frame.height, "detail": {"input": "landing files"}}


def do_web(home: str, users: int, page: str = "list") -> dict:
    """List-page (or shipment-page) latency with concurrent users on the published day."""
    from riskpipe.bench.web import bench_list, bench_shipment

    res = (bench_shipment if page == "shipment" else bench_list)(Path(home), users=users)
    return {"seconds": res["p95_ms"] / 1000.0, "rows": res["requests"], "detail": res}


# -- preparation (cached, not measured) ---------------------------------------------------------
def prep_history(home: str, day: str, rows: int, history_days: int, seed: int) -> dict:
    """Full-size raw history days, their aggregates, and a champion model."""
    from riskpipe.bench.features import synthetic_raw_day
    from riskpipe.features import history
    from riskpipe.registry import champion_version, save_model, set_champion

    layout, d = _layout(home), date.fromisoformat(day)
    population = max(1000, rows // 4)
    for k in range(history_days, 0, -1):
        dk = d - timedelta(days=k)
        path = layout.raw_shipments_day(dk) / "part-0.parquet"
        if not path.exists():
            write_parquet_atomic(synthetic_raw_day(dk, rows, seed, population), path)
    history.ensure_history(layout, d)
    models = _settings(home).models_dir
    if champion_version(models) is None:
        from riskpipe.bench.score import _bench_day

        _, loaded = _bench_day(seed)
        set_champion(models, save_model(models, loaded.model, loaded.meta))
    return {"seconds": 0.0, "rows": rows * history_days}


def prep_ingest(home: str, files: list[str], inputs_dir: str, day: str) -> dict:
    """Ingest the day's landing files into a history home; write the day as one Parquet and one
    CSV file of contract columns (the inputs of the ingest benchmark)."""
    import polars as pl

    from riskpipe import schema as S
    from riskpipe.ingest import ingest_paths
    from riskpipe.store import scan_raw_shipments

    layout = _layout(home)
    summary = ingest_paths(layout, [Path(f) for f in files])
    raw = scan_raw_shipments(layout, [date.fromisoformat(day)]).select(list(S.MANIFEST_SCHEMA)).collect()
    out = Path(inputs_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_parquet_atomic(raw, out / "day.parquet")
    as_text = raw.with_columns(pl.col(S.FILED_AT).dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    write_atomic(out / "day.csv", as_text.write_csv)
    return {"seconds": 0.0, "rows": summary.rows_ingested}


def prep_scaling_world(home: str, day: str, rows: int, history_days: int, seed: int) -> dict:
    """The fast synthetic raw world of :mod:`riskpipe.bench.features` (history and day at ``rows``)."""
    from riskpipe.bench.features import make_bench_world
    from riskpipe.features import history

    layout, d = _layout(home), date.fromisoformat(day)
    make_bench_world(layout, d, rows, history_days, seed)
    history.ensure_history(layout, d)
    return {"seconds": 0.0, "rows": rows}


_CHILD_FUNCS: dict[str, Callable[..., dict]] = {
    f.__name__: f
    for f in (
        do_generate,
        do_ingest,
        do_ingest_spread,
        do_window,
        do_features,
        do_score,
        do_rank_publish,
        do_nightly,
        do_prefect,
        do_served,
        prepare_landed,
        do_floor,
        do_floor_landing,
        do_web,
        prep_history,
        prep_ingest,
        prep_scaling_world,
    )
}


def _child_main(spec_path: str) -> int:
    """Entry of a child process: run one named function, write its result as JSON."""
    import resource

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    fn = _CHILD_FUNCS[spec["fn"]]
    cpu = time.process_time()
    try:
        result = fn(**spec["kwargs"])
        result["cpu_s"] = time.process_time() - cpu  # all threads: steadier than wall time on a busy machine
        code = 0
    except BaseException as exc:  # noqa: BLE001 - reported to the parent as the stage's error
        result = {"error": " ".join(f"{type(exc).__name__}: {exc}".split())[:500]}
        traceback.print_exc()
        code = 1
    result["self_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(spec["out"]).write_text(json.dumps(result, default=str), encoding="utf-8")
    return code
