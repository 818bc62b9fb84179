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
  into the raw store by the fast vectorised generator of :mod:`riskpipe.bench.features` (generating
  30 days through the full world would take 30 x the generate time): the history aggregates the
  feature windows sum therefore have the size a ``rows``-a-day history gives. Their parties are not
  the world's, so few of the day's parties are found in history: the cost (reading and summing 30
  days of aggregates, joining them) is there, the matches are not.
* A champion model is fitted once on a small synthetic day through the real feature path with the
  full tree budget (:func:`riskpipe.bench.score._bench_day`) and saved in the registry, so scoring costs
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
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from riskpipe.bench.stages import _CHILD_FUNCS
from riskpipe.errors import RiskpipeError

#: the day benchmarked: a Thursday, whose weekday factor in the synthetic world is 1.0
BENCH_DAY = date(2026, 3, 5)
REFERENCE_ROWS = 4_000_000
ALL_STAGES = (
    "generate",
    "ingest",
    "spread",
    "features",
    "score",
    "rank",
    "nightly",
    "floor",
    "prefect",
    "served",
    "web",
)
DEFAULT_STAGES = ("generate", "ingest", "spread", "features", "score", "rank", "nightly", "floor")
STAGE_ALIASES = {"publish": "rank", "all": "default"}
#: ``critical``: the stages of the critical path and the floor it is compared with
STAGE_GROUPS = {"critical": ("features", "score", "rank", "floor")}
#: the critical path: cut-off to published list, the day's files already ingested as they landed
#: (``riskpipe watch`` / the ingest deployment); its stages, measured one after the other on one home
CRITICAL = "critical path"
CRITICAL_STAGES = ("features", "score", "rank+publish")
#: ``spread`` ingests the day's landing files in this many chunks (at most one per file), one
#: after the other into the history home, as the watcher does while they land during the day
SPREAD_CHUNKS = 12
SPREAD = "ingest spread over the day"
#: the window table of the night, moved on by the history step of the night before (after it
#: published: off the critical path); measured before the features stage, on the same home
WINDOW = "history window (night before)"
#: the night as users run it: ``riskpipe schedule`` serving, the nightly deployment triggered
#: for the day (its files ingested as they landed), trigger -> published (:mod:`riskpipe.bench.served`)
SERVED = "critical path as users run it (served)"
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
    CRITICAL: (45, 3 * 1024),
    SERVED: (45, 3 * 1024),
    "web list p95": (0.05, None),  # issue 16 (20 concurrent users); the earlier target was 0.2 s
    "web shipment p95": (0.3, None),
}


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
        cpu = time.process_time()
        try:
            res = _CHILD_FUNCS[fn](**kwargs)
            res["cpu_s"] = time.process_time() - cpu
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
        elif name in STAGE_GROUPS:
            out.extend(STAGE_GROUPS[name])
        elif name in ALL_STAGES:
            out.append(name)
        else:
            raise RiskpipeError(
                f"bench: unknown stage {raw.strip()!r} (known: all, {', '.join(ALL_STAGES)}, publish, critical)"
            )
    return [s for s in ALL_STAGES if s in out]


def _target(name: str, rows: int) -> tuple[float | None, float | None, bool]:
    """Target seconds and MB of a stage; judged (third item) only at the reference size."""
    secs, mb = TARGETS.get(name, (None, None))
    return secs, mb, rows == REFERENCE_ROWS or name in WEB_STAGES


def critical_run(path: dict[str, dict]) -> dict:
    """One run of the critical path from its stages' results (each a child process, one after
    the other on the same home): seconds and process time summed, peak the largest of theirs
    (the stages never run at once). An error when a stage failed or did not run."""
    missing = [s for s in CRITICAL_STAGES if s not in path]
    failed = [s for s in CRITICAL_STAGES if s in path and "error" in path[s]]
    if missing or failed:
        return {"error": f"critical path incomplete: {', '.join(failed or missing)} failed or did not run"}
    parts = [path[s] for s in CRITICAL_STAGES]
    return {
        "seconds": sum(p["seconds"] for p in parts),
        "rows": path["features"].get("rows", 0),
        "peak_mb": max(p["peak_mb"] for p in parts),
        "process_s": sum(p["process_s"] for p in parts),
        **({"cpu_s": sum(p["cpu_s"] for p in parts)} if all("cpu_s" in p for p in parts) else {}),
        "detail": {
            "stages_s": {s: round(path[s]["seconds"], 2) for s in CRITICAL_STAGES},
            "stages_cpu_s": {s: round(path[s].get("cpu_s", 0.0), 2) for s in CRITICAL_STAGES},
            "peak_mb": {s: round(path[s]["peak_mb"]) for s in CRITICAL_STAGES},
        },
    }


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
        cpu_s=round(statistics.median(r["cpu_s"] for r in ok), 2) if all("cpu_s" in r for r in ok) else None,
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
    want_world = any(
        s in stages for s in ("ingest", "features", "score", "rank", "nightly", "floor", "prefect", "served", "web")
    )
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
            if "spread" in stages:
                h = clone_home(base, scratch / "spread")
                record(SPREAD, child("do_ingest_spread", home=str(h), files=files, chunks=SPREAD_CHUNKS))
                shutil.rmtree(h, ignore_errors=True)
            if any(s in stages for s in ("features", "score", "rank")):
                c = clone_home(ingested, scratch / "steps")
                # the night before's history step leaves the window table (off the path, apart)
                record(WINDOW, child("do_window", home=str(c), day=day))
                path: dict[str, dict] = {"features": child("do_features", home=str(c), day=day)}
                if "features" in stages:
                    record("features", path["features"])
                if "error" not in path["features"] and any(s in stages for s in ("score", "rank")):
                    path["score"] = child("do_score", home=str(c), day=day)
                    if "score" in stages:
                        record("score", path["score"])
                    if "error" not in path["score"] and "rank" in stages:
                        path["rank+publish"] = record("rank+publish", child("do_rank_publish", home=str(c), day=day))
                if all(s in stages for s in ("features", "score", "rank")):
                    record(CRITICAL, critical_run(path))
                shutil.rmtree(c, ignore_errors=True)
            if "floor" in stages:
                record("floor", child("do_floor", home=str(ingested), day=day, out=str(scratch / "floor.parquet")))
                record(
                    "floor (landing files)",
                    child("do_floor_landing", files=files, out=str(scratch / "floor-landing.parquet")),
                )
            if "nightly" in stages or ("web" in stages and i == repeat - 1):
                night = clone_home(base, scratch / "nightly")
                res = child("do_nightly", home=str(night), day=day, files=files)
                if "nightly" in stages:
                    record("nightly", res)
                if "web" in stages and i == repeat - 1 and "error" not in res:
                    record("web list p95", child("do_web", home=str(night), users=WEB_USERS))
                    record("web shipment p95", child("do_web", home=str(night), users=WEB_USERS, page="shipment"))
                shutil.rmtree(night, ignore_errors=True)
            if "prefect" in stages:
                p = clone_home(base, scratch / "prefect")
                (p / "landing").mkdir(parents=True, exist_ok=True)
                for f in files:
                    os.link(f, p / "landing" / Path(f).name)
                record("nightly via Prefect", child("do_prefect", home=str(p), day=day))
                shutil.rmtree(p, ignore_errors=True)
            if "served" in stages:
                served = clone_home(ingested, scratch / "served")
                (served / "landing").mkdir(parents=True, exist_ok=True)
                for f in files:
                    os.link(f, served / "landing" / Path(f).name)
                # as the day leaves the home before its cut-off (not measured): the watcher has
                # ingested and recorded its files, the night before moved the window table on
                need(child("prepare_landed", home=str(served)), "the served home")
                need(child("do_window", home=str(served), day=day), "the served home's window table")
                record(SERVED, child("do_served", home=str(served), day=day))
                shutil.rmtree(served, ignore_errors=True)

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
    ratio_critical = {}
    for floor_name in ("floor", "floor (landing files)"):
        cr, fr = by_name.get(CRITICAL), by_name.get(floor_name)
        if cr and fr and cr.get("seconds") and fr.get("seconds"):
            ratio_critical[floor_name] = round(cr["seconds"] / fr["seconds"], 1)
    pr = by_name.get("nightly via Prefect")
    if pr and by_name.get("nightly", {}).get("seconds") and pr.get("seconds"):
        pr["prefect_overhead_s"] = round(pr["seconds"] - by_name["nightly"]["seconds"], 2)
        cr = by_name.get(CRITICAL)
        if cr and cr.get("seconds"):
            # `riskpipe nightly` as users run it starts Prefect: its start is then on the path
            cr["with_prefect_start_s"] = round(cr["seconds"] + max(pr["prefect_overhead_s"], 0.0), 2)
    sv, cr = by_name.get(SERVED), by_name.get(CRITICAL)
    if sv and cr and sv.get("seconds") and cr.get("seconds"):
        sv["over_critical_s"] = round(sv["seconds"] - cr["seconds"], 2)  # other runs: load moves it
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
            "generator of riskpipe.bench.features (other parties than the day's: history cost, few matches); "
            "champion model fitted on a synthetic day with the full tree budget"
        ),
        "method": (
            "each stage in a fresh process; seconds = wall time of the stage's work inside it (median of "
            "repeats), process_s = including interpreter start and imports; CPU s = CPU time of the "
            "stage's work, all threads (steadier than wall time on a shared machine); peak MB = max RSS of that "
            "process from os.wait4 (ru_maxrss)"
            if isolate
            else "in-process (tests): peak MB is this process's peak so far"
        ),
        "stages": table,
        "ratio_nightly_floor": ratio,
        "ratio_critical_floor": ratio_critical,
        "scaling": scaling_rows_out,
    }
