"""``riskpipe bench``: wall time, rows/s and peak memory of each nightly stage, and the floor.

Why this shape:

* Every measured stage runs in its own fresh Python process (``python -m riskpipe.bench child``)
  and the parent reaps it with ``os.wait4``, whose ``ru_maxrss`` is the peak resident memory of
  exactly that process (and any child it waited for). So a stage's peak memory is its own, not
  that of whatever ran before it in the same interpreter. ``seconds`` is the wall time of the
  stage's work measured inside the child after its imports; ``process_s`` is the parent's view
  (interpreter start and imports included).
* The world: the day scored (arrival date ``D``) comes from the synthetic world
  (:func:`riskpipe.synth.generate`, ``rows`` shipments, mixed CSV / Parquet / NDJSON files, partner
  exports). Its ``history_days`` days of history are written at FULL size (``rows`` a day) straight
  into the raw store by the fast vectorised generator of :mod:`riskpipe.features.bench` (generating
  30 days through the full world would take 30 x the generate time): the history aggregates the
  feature windows sum therefore have the size a ``rows``-a-day history gives. Their parties are not
  the world's, so few of the day's parties are found in history: the cost (reading and summing 30
  days of aggregates, joining them) is there, the matches are not.
* A champion model is fitted once on a small synthetic day through the real feature path with the
  full tree budget (:func:`riskpipe.score._bench_day`) and saved in the registry, so scoring costs
  what it costs in production.
* All of it is cached under the work directory, keyed by rows, history days and seed; each measured
  run works on a hard-linked clone of a cached home (every write of the pipeline is an atomic
  rename, so the cache is never modified).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from riskpipe.errors import RiskpipeError

#: the day benchmarked: a Thursday, whose weekday factor in the synthetic world is 1.0
BENCH_DAY = date(2026, 3, 5)
REFERENCE_ROWS = 4_000_000
ALL_STAGES = ("generate", "ingest", "features", "score", "rank", "nightly", "floor", "prefect", "web")
DEFAULT_STAGES = ("generate", "ingest", "features", "score", "rank", "nightly", "floor")
STAGE_ALIASES = {"publish": "rank", "all": "default"}
SCALING_ROWS = (1_000_000, 2_000_000, 4_000_000)
WEB_USERS = 20

#: targets of the issues, for 4 M rows on the 2-core machine: seconds, peak MB (None: no target)
#: latency stages (seconds = p95 of one request; judged at any size)
WEB_STAGES = ("web list p95", "web shipment p95")
TARGETS: dict[str, tuple[float | None, float | None]] = {
    "generate": (30, None),
    "ingest parquet": (15, 3 * 1024),
    "ingest csv": (30, 3 * 1024),
    "features": (60, 4 * 1024),
    "score": (20, None),
    "nightly": (90, 4 * 1024),
    "web list p95": (0.2, None),
    "web shipment p95": (0.3, None),
}


# ---------------------------------------------------------------------------------------------
# stage bodies: run inside a child process, return plain JSON-able dicts
# ---------------------------------------------------------------------------------------------
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

    from riskpipe import nightly

    layout, d = _layout(home), date.fromisoformat(day)
    t0 = time.perf_counter()
    path = nightly.score_step(layout, _settings(home), d, nightly.features_path(layout, d))
    secs = time.perf_counter() - t0
    rows = pl.scan_parquet(path).select(pl.len()).collect().item()
    return {"seconds": secs, "rows": rows, "detail": {"model": nightly.load_champion(_settings(home)) is not None}}


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
        "rows": summary["shipments"],
        "detail": {
            "rank_and_report_s": round(t1 - t0, 2),
            "publish_s": round(t2 - t1, 2),
            "targets": summary["targets"],
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
    nightly.write_run_record(layout, d, {"summary": summary, "outputs": {k: str(v) for k, v in final.items()}})
    lap("publish")
    return {
        "seconds": time.perf_counter() - t0,
        "rows": summary["shipments"],
        "detail": {
            "steps_s": steps,
            "peak_mb_after": peaks,
            "rows_in": ingested.rows_in,
            "targets": summary["targets"],
            "model": summary["model_version"],
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
    from riskpipe.features import history
    from riskpipe.features.bench import synthetic_raw_day
    from riskpipe.registry import champion_version, save_model, set_champion
    from riskpipe.store import write_parquet_atomic

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
        from riskpipe.score import _bench_day

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
    raw.write_parquet(out / ".day.parquet")
    os.replace(out / ".day.parquet", out / "day.parquet")
    raw.with_columns(pl.col(S.FILED_AT).dt.strftime("%Y-%m-%dT%H:%M:%SZ")).write_csv(out / ".day.csv")
    os.replace(out / ".day.csv", out / "day.csv")
    return {"seconds": 0.0, "rows": summary.rows_ingested}


def prep_scaling_world(home: str, day: str, rows: int, history_days: int, seed: int) -> dict:
    """The fast synthetic raw world of :mod:`riskpipe.features.bench` (history and day at ``rows``)."""
    from riskpipe.features import history
    from riskpipe.features.bench import make_bench_world

    layout, d = _layout(home), date.fromisoformat(day)
    make_bench_world(layout, d, rows, history_days, seed)
    history.ensure_history(layout, d)
    return {"seconds": 0.0, "rows": rows}


_CHILD_FUNCS: dict[str, Callable[..., dict]] = {
    f.__name__: f
    for f in (
        do_generate,
        do_ingest,
        do_features,
        do_score,
        do_rank_publish,
        do_nightly,
        do_prefect,
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
    try:
        result = fn(**spec["kwargs"])
        code = 0
    except BaseException as exc:  # noqa: BLE001 - reported to the parent as the stage's error
        result = {"error": " ".join(f"{type(exc).__name__}: {exc}".split())[:500]}
        traceback.print_exc()
        code = 1
    result["self_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(spec["out"]).write_text(json.dumps(result, default=str), encoding="utf-8")
    return code


# ---------------------------------------------------------------------------------------------
# the parent: isolation, caching, repeats
# ---------------------------------------------------------------------------------------------
def run_child(fn: str, kwargs: dict, scratch: Path, isolate: bool = True) -> dict:
    """Run ``fn(**kwargs)`` in a fresh process; add ``peak_mb`` (that process's max RSS, from
    ``os.wait4``) and ``process_s``. ``isolate=False`` runs it here (tests): peak is then this
    process's peak so far."""
    import resource

    scratch.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if not isolate:
        try:
            res = _CHILD_FUNCS[fn](**kwargs)
        except Exception as exc:  # noqa: BLE001 - same contract as a child
            res = {"error": " ".join(f"{type(exc).__name__}: {exc}".split())[:500]}
        res["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        res["process_s"] = time.perf_counter() - t0
        return res
    tag = f"{fn}-{os.getpid()}-{time.time_ns()}"
    spec, out, log = scratch / f"{tag}.spec.json", scratch / f"{tag}.out.json", scratch / f"{tag}.log"
    spec.write_text(json.dumps({"fn": fn, "kwargs": kwargs, "out": str(out)}), encoding="utf-8")
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "riskpipe.bench", "child", str(spec)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    res = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
    if proc.returncode != 0 and "error" not in res:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] or ["no output"]
        res["error"] = f"child exited with {proc.returncode}: {tail[0][:300]}"
    res["peak_mb"] = usage.ru_maxrss / 1024  # kilobytes on Linux
    res["process_s"] = time.perf_counter() - t0
    if "error" in res:
        res["log"] = str(log)
    else:
        for p in (spec, out, log):
            p.unlink(missing_ok=True)
    return res


def clone_home(src: Path, dst: Path) -> Path:
    """A working copy of a data home: Parquet files hard-linked (never written in place: every
    writer renames a new file in), everything else copied (SQLite, JSON lines are appended to)."""
    shutil.rmtree(dst, ignore_errors=True)
    for root, _dirs, files in os.walk(src):
        rel = Path(root).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in files:
            s, t = Path(root) / name, dst / rel / name
            if name.endswith(".parquet"):
                try:
                    os.link(s, t)
                    continue
                except OSError:
                    pass
            shutil.copy2(s, t)
    dst.mkdir(parents=True, exist_ok=True)
    return dst


def parse_stages(text: str) -> list[str]:
    """``all`` or a comma list of stage names (``publish`` is the rank + publish stage)."""
    out: list[str] = []
    for raw in text.split(","):
        name = STAGE_ALIASES.get(raw.strip().lower(), raw.strip().lower())
        if not name:
            continue
        if name == "default":
            out.extend(DEFAULT_STAGES)
        elif name in ALL_STAGES:
            out.append(name)
        else:
            raise RiskpipeError(f"bench: unknown stage {raw.strip()!r} (known: all, {', '.join(ALL_STAGES)}, publish)")
    return [s for s in ALL_STAGES if s in out]


def _target(name: str, rows: int) -> tuple[float | None, float | None, bool]:
    """Target seconds and MB of a stage; judged (third item) only at the reference size."""
    secs, mb = TARGETS.get(name, (None, None))
    return secs, mb, rows == REFERENCE_ROWS or name in WEB_STAGES


def _row(name: str, runs: list[dict], nominal_rows: int) -> dict:
    ok = [r for r in runs if "error" not in r]
    row: dict[str, Any] = {"stage": name, "runs": len(runs)}
    if not ok:
        row.update(error=runs[-1].get("error", "failed"), log=runs[-1].get("log"), passed=False)
        return row
    secs = statistics.median(r["seconds"] for r in ok)
    rows = int(ok[-1].get("rows") or 0)
    t_s, t_mb, judged = _target(name, nominal_rows)
    peak = max(r["peak_mb"] for r in ok)
    passed = None
    if judged and (t_s is not None or t_mb is not None):
        passed = (t_s is None or secs <= t_s) and (t_mb is None or peak <= t_mb)
    row.update(
        rows=rows,
        seconds=round(secs, 3),
        seconds_all=[round(r["seconds"], 3) for r in ok],
        process_s=round(statistics.median(r["process_s"] for r in ok), 2),
        rows_per_s=round(rows / secs) if secs > 0 and name not in WEB_STAGES else None,
        peak_mb=round(peak, 1),
        target_s=None if t_s is None else round(t_s, 3),
        target_mb=t_mb,
        passed=passed,
        detail=ok[-1].get("detail"),
    )
    if len(ok) < len(runs):
        row["error"] = next(r["error"] for r in runs if "error" in r)
    return row


def run_bench(
    workdir: Path,
    rows: int = REFERENCE_ROWS,
    history_days: int = 30,
    repeat: int = 1,
    stages: list[str] | None = None,
    seed: int = 7,
    scaling: bool = False,
    isolate: bool = True,
    log: Callable[[str], None] | None = None,
    scaling_rows: tuple[int, ...] = SCALING_ROWS,
) -> dict:
    """Run the benchmark; returns ``{"config", "machine", "world", "method", "stages": [...],
    "ratio_nightly_floor", "scaling"}``. Cached inputs live under ``workdir``."""
    say = log or (lambda _m: None)
    stages = list(DEFAULT_STAGES) if stages is None else stages
    if rows < 1 or repeat < 1 or history_days < 0:
        raise RiskpipeError("bench: --rows and --repeat must be at least 1, --history-days at least 0")
    workdir = Path(workdir).resolve()
    world = workdir / f"world-r{rows}-h{history_days}-s{seed}"
    scratch = workdir / "scratch"
    logs = workdir / "logs"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True, exist_ok=True)
    day = BENCH_DAY.isoformat()
    load_before = os.getloadavg()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    results: dict[str, list[dict]] = {}
    started = time.perf_counter()

    def child(fn: str, **kwargs) -> dict:
        return run_child(fn, kwargs, logs, isolate)

    def record(name: str, res: dict) -> dict:
        results.setdefault(name, []).append(res)
        if "error" in res:
            say(f"{name}: FAILED {res['error']}")
        else:
            say(f"{name}: {res['seconds']:.2f} s, {res.get('rows', 0):,} rows, peak {res['peak_mb']:.0f} MB")
        return res

    def need(ok: dict, what: str) -> None:
        if "error" in ok:
            raise RiskpipeError(f"bench: preparing {what} failed: {ok['error']} (log: {ok.get('log')})")

    # 1. the day's landing files (first generate run is kept as the cache)
    landing = world / "landing"
    need_landing = not (landing.exists() and any(landing.iterdir()))
    want_world = any(s in stages for s in ("ingest", "features", "score", "rank", "nightly", "floor", "prefect", "web"))
    if "generate" in stages or (need_landing and want_world):
        for _ in range(repeat if "generate" in stages else 1):
            gen_home = scratch / "generate"
            res = child("do_generate", home=str(gen_home), day=day, rows=rows, seed=seed)
            if "generate" in stages:
                record("generate", res)
            else:
                need(res, "the day's landing files")
            if "error" not in res and need_landing:
                landing.parent.mkdir(parents=True, exist_ok=True)
                shutil.rmtree(landing, ignore_errors=True)
                shutil.move(str(gen_home / "landing"), str(landing))
                need_landing = False
            shutil.rmtree(gen_home, ignore_errors=True)
    files = sorted(str(p) for p in landing.iterdir() if p.is_file()) if landing.exists() else []

    if want_world:
        if not files:
            raise RiskpipeError("bench: no landing files for the benchmark day (generate failed)")
        # 2. history home and model; 3. the day ingested into a copy of it
        base, ingested, inputs = world / "base", world / "ingested", world / "inputs"
        if not (base / ".ready").exists():
            say(f"preparing {history_days} days of history at {rows:,} rows a day (cached in {world})")
            need(
                child("prep_history", home=str(base), day=day, rows=rows, history_days=history_days, seed=seed),
                "history",
            )
            (base / ".ready").write_text("ok", encoding="utf-8")
        if not (ingested / ".ready").exists():
            say("ingesting the benchmark day once (cached)")
            clone_home(base, ingested)
            need(child("prep_ingest", home=str(ingested), files=files, inputs_dir=str(inputs), day=day), "ingest")
            (ingested / ".ready").write_text("ok", encoding="utf-8")

        for i in range(repeat):
            if "ingest" in stages:
                for fmt in ("parquet", "csv"):
                    h = scratch / f"ingest-{fmt}"
                    record(f"ingest {fmt}", child("do_ingest", home=str(h), path=str(inputs / f"day.{fmt}")))
                    shutil.rmtree(h, ignore_errors=True)
            if any(s in stages for s in ("features", "score", "rank")):
                c = clone_home(ingested, scratch / "steps")
                res = child("do_features", home=str(c), day=day)
                if "features" in stages:
                    record("features", res)
                if "error" not in res and any(s in stages for s in ("score", "rank")):
                    res = child("do_score", home=str(c), day=day)
                    if "score" in stages:
                        record("score", res)
                    if "error" not in res and "rank" in stages:
                        record("rank+publish", child("do_rank_publish", home=str(c), day=day))
                shutil.rmtree(c, ignore_errors=True)
            if "floor" in stages:
                record("floor", child("do_floor", home=str(ingested), day=day, out=str(scratch / "floor.parquet")))
                record(
                    "floor (landing files)",
                    child("do_floor_landing", files=files, out=str(scratch / "floor-landing.parquet")),
                )
            if "nightly" in stages or ("web" in stages and i == repeat - 1):
                n = clone_home(base, scratch / "nightly")
                res = child("do_nightly", home=str(n), day=day, files=files)
                if "nightly" in stages:
                    record("nightly", res)
                if "web" in stages and i == repeat - 1 and "error" not in res:
                    record("web list p95", child("do_web", home=str(n), users=WEB_USERS))
                    record("web shipment p95", child("do_web", home=str(n), users=WEB_USERS, page="shipment"))
                shutil.rmtree(n, ignore_errors=True)
            if "prefect" in stages:
                p = clone_home(base, scratch / "prefect")
                (p / "landing").mkdir(parents=True, exist_ok=True)
                for f in files:
                    os.link(f, p / "landing" / Path(f).name)
                record("nightly via Prefect", child("do_prefect", home=str(p), day=day))
                shutil.rmtree(p, ignore_errors=True)

    scaling_rows_out: list[dict] = []
    if scaling:
        for n in scaling_rows:
            sw = workdir / f"scaling-r{n}-h{history_days}-s{seed}"
            if not (sw / ".ready").exists():
                say(f"preparing the scaling world at {n:,} rows a day (cached)")
                same = workdir / f"world-r{n}-h{history_days}-s{seed}" / "base"
                if (same / ".ready").exists():  # same generator, rows and seed: identical history days
                    clone_home(same, sw)
                need(
                    child("prep_scaling_world", home=str(sw), day=day, rows=n, history_days=history_days, seed=seed),
                    f"the scaling world at {n} rows",
                )
                (sw / ".ready").write_text("ok", encoding="utf-8")
            runs = []
            for _ in range(repeat):
                c = clone_home(sw, scratch / "scaling")
                runs.append(child("do_features", home=str(c), day=day))
                shutil.rmtree(c, ignore_errors=True)
            r = _row(f"features {n:,}", runs, n)
            if "error" not in r:
                r["us_per_row"] = round(r["seconds"] / max(r["rows"], 1) * 1e6, 3)
                say(f"scaling: {n:,} rows, {r['seconds']:.2f} s, {r['us_per_row']} us/row")
            scaling_rows_out.append(r)

    shutil.rmtree(scratch, ignore_errors=True)
    table = [_row(name, runs, rows) for name, runs in results.items()]
    by_name = {r["stage"]: r for r in table}
    ratio = {}
    for floor_name in ("floor", "floor (landing files)"):
        nr, fr = by_name.get("nightly"), by_name.get(floor_name)
        if nr and fr and nr.get("seconds") and fr.get("seconds"):
            ratio[floor_name] = round(nr["seconds"] / fr["seconds"], 1)
    pr = by_name.get("nightly via Prefect")
    if pr and by_name.get("nightly", {}).get("seconds") and pr.get("seconds"):
        pr["prefect_overhead_s"] = round(pr["seconds"] - by_name["nightly"]["seconds"], 2)
    return {
        "config": {
            "rows": rows,
            "history_days": history_days,
            "repeat": repeat,
            "stages": stages,
            "seed": seed,
            "day": day,
            "workdir": str(workdir),
            "isolated": isolate,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_before": [round(x, 2) for x in load_before],
            "load_avg_after": [round(x, 2) for x in os.getloadavg()],
            "started_at": started_at,
            "total_s": round(time.perf_counter() - started, 1),
        },
        "world": (
            f"day {day}: {rows:,} shipments of the synthetic world (riskpipe.synth), mixed CSV/Parquet/NDJSON "
            f"files; {history_days} history days at full size ({rows:,} rows a day) from the fast raw "
            "generator of riskpipe.features.bench (other parties than the day's: history cost, few matches); "
            "champion model fitted on a synthetic day with the full tree budget"
        ),
        "method": (
            "each stage in a fresh process; seconds = wall time of the stage's work inside it (median of "
            "repeats), process_s = including interpreter start and imports; peak MB = max RSS of that "
            "process from os.wait4 (ru_maxrss)"
            if isolate
            else "in-process (tests): peak MB is this process's peak so far"
        ),
        "stages": table,
        "ratio_nightly_floor": ratio,
        "scaling": scaling_rows_out,
    }


# ---------------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------------
def _fmt_target(r: dict) -> str:
    parts = []
    if r.get("target_s") is not None:
        if r["stage"] in WEB_STAGES:
            parts.append(f"<={r['target_s'] * 1000:.0f} ms")
        else:
            parts.append(f"<={r['target_s']:g} s")
    if r.get("target_mb") is not None:
        parts.append(f"<={r['target_mb'] / 1024:g} GB")
    return ", ".join(parts)


def render_table(result: dict):
    """A rich table of the stages (and a second one for scaling when present)."""
    from rich.table import Table

    cfg = result["config"]
    t = Table(
        min_width=80,
        title=f"riskpipe bench: {cfg['rows']:,} rows, {cfg['history_days']} days of history, median of {cfg['repeat']}",
    )
    for col, just in (
        ("stage", "left"),
        ("rows", "right"),
        ("seconds", "right"),
        ("rows/s", "right"),
        ("peak MB", "right"),
        ("target", "left"),
        ("pass", "center"),
    ):
        t.add_column(col, justify=just, no_wrap=True)
    for r in result["stages"]:
        if "seconds" not in r:
            t.add_row(r["stage"], "", "", "", "", _fmt_target(r), "[red]error[/red]")
            continue
        secs = f"{r['seconds'] * 1000:.0f} ms" if r["stage"] in WEB_STAGES else f"{r['seconds']:.2f}"
        verdict = {True: "[green]pass[/green]", False: "[red]FAIL[/red]", None: ""}[r["passed"]]
        if r["passed"] is None and _fmt_target(r):
            verdict = "n/a"  # targets are for 4 M rows
        t.add_row(
            r["stage"],
            f"{r['rows']:,}",
            secs,
            f"{r['rows_per_s']:,}" if r.get("rows_per_s") else "",
            f"{r['peak_mb']:,.0f}",
            _fmt_target(r),
            verdict,
        )
    tables = [t]
    if result.get("scaling"):
        s = Table(title="features scaling (history days at the same size as the day)")
        for col in ("rows", "seconds", "us/row", "peak MB"):
            s.add_column(col, justify="right")
        for r in result["scaling"]:
            if "seconds" in r:
                s.add_row(f"{r['rows']:,}", f"{r['seconds']:.2f}", f"{r['us_per_row']:.2f}", f"{r['peak_mb']:,.0f}")
            else:
                s.add_row(r["stage"], "error", "", "")
        tables.append(s)
    return tables


def summary_lines(result: dict) -> list[str]:
    """Plain lines printed under the table: ratio, Prefect overhead, load, errors, method."""
    lines = []
    for name, ratio in result["ratio_nightly_floor"].items():
        lines.append(f"nightly / {name}: {ratio}x")
    for r in result["stages"]:
        if r.get("prefect_overhead_s") is not None:
            lines.append(f"Prefect overhead (flow minus library steps): {r['prefect_overhead_s']:.1f} s")
        if r["stage"] == "nightly" and r.get("detail"):
            lines.append("nightly steps (s): " + ", ".join(f"{k} {v}" for k, v in r["detail"]["steps_s"].items()))
            if r["detail"].get("peak_mb_after"):
                lines.append(
                    "nightly peak MB after each step: "
                    + ", ".join(f"{k} {v:,}" for k, v in r["detail"]["peak_mb_after"].items())
                )
        if r["stage"] in WEB_STAGES and r.get("detail"):
            from riskpipe.bench.web import web_summary_line  # the workbench's imports: slow, web rows only

            lines.append(web_summary_line(r["stage"], r["detail"]))
        if r.get("error"):
            lines.append(f"{r['stage']}: error: {r['error']}" + (f" (log {r['log']})" if r.get("log") else ""))
    m = result["machine"]
    lines.append(
        f"load average before/after: {m['load_avg_before'][0]} / {m['load_avg_after'][0]} "
        f"on {m['cpus']} cores; total {m['total_s']} s"
    )
    lines.append("world: " + result["world"])
    lines.append("method: " + result["method"])
    return lines


def write_results(result: dict, directory: Path) -> Path:
    """``bench-results/<timestamp>.json``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    return path
