"""Smoke tests of ``riskpipe bench`` at a tiny size: structure of the result, positive numbers."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest

from riskpipe import schema as S
from riskpipe.bench import core as bench
from riskpipe.bench import output
from riskpipe.errors import RiskpipeError


def test_parse_stages_all_aliases_and_unknown() -> None:
    assert bench.parse_stages("all") == list(bench.DEFAULT_STAGES)
    assert bench.parse_stages("web,publish, generate") == ["generate", "rank", "web"]
    with pytest.raises(RiskpipeError, match="unknown stage 'bogus'"):
        bench.parse_stages("score,bogus")


def test_row_median_and_targets_judged_only_at_reference_size() -> None:
    runs = [{"seconds": s, "rows": 4_000_000, "peak_mb": 1000.0 + s, "process_s": s + 1} for s in (10.0, 70.0, 20.0)]
    row = bench._row("features", runs, 4_000_000)
    assert row["seconds"] == 20.0
    assert row["rows_per_s"] == 200_000
    assert row["peak_mb"] == 1070.0
    assert (row["target_s"], row["target_mb"], row["passed"]) == (60, 4096, True)
    slow = bench._row("features", [{**runs[0], "seconds": 61.0}], 4_000_000)
    assert slow["passed"] is False
    assert bench._row("features", runs, 1000)["passed"] is None
    failed = bench._row("score", [{"error": "boom", "peak_mb": 1.0, "process_s": 1.0}], 4_000_000)
    assert failed["passed"] is False and failed["error"] == "boom"


def test_clone_home_links_parquet_and_copies_the_rest(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "raw").mkdir(parents=True)
    pl.DataFrame({"a": [1]}).write_parquet(src / "raw" / "x.parquet")
    (src / "runs.jsonl").write_text("{}\n", encoding="utf-8")
    dst = bench.clone_home(src, tmp_path / "dst")
    assert os.stat(dst / "raw" / "x.parquet").st_ino == os.stat(src / "raw" / "x.parquet").st_ino
    with open(dst / "runs.jsonl", "a", encoding="utf-8") as fh:
        fh.write("{}\n")
    assert (src / "runs.jsonl").read_text(encoding="utf-8") == "{}\n"


def test_child_process_reports_time_rows_and_its_own_peak(tmp_path: Path) -> None:
    csv = tmp_path / "m.csv"
    pl.DataFrame({S.SHIPMENT_ID: ["a", "b", "c"], "x": ["1", "2", "3"]}).write_csv(csv)
    out = tmp_path / "ids.parquet"
    res = bench.run_child("do_floor_landing", {"files": [str(csv)], "out": str(out)}, tmp_path / "logs")
    assert "error" not in res
    assert res["rows"] == 3
    assert res["seconds"] > 0 and res["process_s"] >= res["seconds"]
    assert 10 < res["peak_mb"] < 2000
    assert pl.read_parquet(out)[S.RISK_SCORE].to_list() == [0.0, 0.0, 0.0]


def test_child_error_is_reported_not_raised(tmp_path: Path) -> None:
    res = bench.run_child(
        "do_floor_landing", {"files": [str(tmp_path / "missing.csv")], "out": str(tmp_path / "o")}, tmp_path / "logs"
    )
    assert "missing.csv" in res["error"]
    assert Path(res["log"]).exists()


def test_run_bench_generate_stage_structure(tmp_path: Path) -> None:
    result = bench.run_bench(tmp_path / "work", rows=300, history_days=0, stages=["generate"], isolate=False)
    assert set(result) >= {"config", "machine", "world", "method", "stages", "ratio_nightly_floor", "scaling"}
    [row] = result["stages"]
    assert row["stage"] == "generate"
    assert 250 < row["rows"] < 350
    assert row["seconds"] > 0 and row["rows_per_s"] > 0 and row["peak_mb"] > 0
    assert row["target_s"] == 30 and row["passed"] is None  # judged at 4 M rows only
    landing = tmp_path / "work" / "world-r300-h0-s7" / "landing"
    assert any(p.name.startswith("manifest-2026-03-05") for p in landing.iterdir())
    tables = output.render_table(result)
    assert tables[0].row_count == 1
    assert any("method:" in line for line in output.summary_lines(result))
    path = output.write_results(result, tmp_path / "bench-results")
    assert path.suffix == ".json" and path.stat().st_size > 100


def test_prep_ingest_writes_the_day_as_parquet_and_csv_atomically(tmp_path: Path) -> None:
    from riskpipe.bench import stages

    day = bench.BENCH_DAY.isoformat()
    gen = tmp_path / "gen"
    stages.do_generate(str(gen), day, 300, 7)
    files = sorted(str(p) for p in (gen / "landing").iterdir() if p.is_file())
    home, inputs = tmp_path / "home", tmp_path / "inputs"
    res = stages.prep_ingest(str(home), files, str(inputs), day)
    assert sorted(p.name for p in inputs.iterdir()) == ["day.csv", "day.parquet"]  # no temporaries left
    parquet = pl.read_parquet(inputs / "day.parquet")
    csv = pl.read_csv(inputs / "day.csv", infer_schema=False)
    assert parquet.height == csv.height > 0
    assert res["rows"] >= parquet.height  # rows ingested, amendments included
    assert csv.columns == parquet.columns == list(S.MANIFEST_SCHEMA)
    assert csv[S.FILED_AT][0].endswith("Z")


def test_parse_stages_critical_group() -> None:
    assert bench.parse_stages("critical,spread") == ["spread", "features", "score", "rank", "floor"]


def test_critical_path_sums_its_stages_and_takes_the_largest_peak() -> None:
    path = {
        "features": {"seconds": 20.0, "rows": 4_000_000, "peak_mb": 2900.0, "process_s": 22.0},
        "score": {"seconds": 9.0, "rows": 4_000_000, "peak_mb": 2500.0, "process_s": 11.0},
        "rank+publish": {"seconds": 6.0, "rows": 4_000_000, "peak_mb": 1800.0, "process_s": 8.0},
    }
    run = bench.critical_run(path)
    assert (run["seconds"], run["peak_mb"], run["process_s"], run["rows"]) == (35.0, 2900.0, 41.0, 4_000_000)
    assert run["detail"]["stages_s"] == {"features": 20.0, "score": 9.0, "rank+publish": 6.0}
    row = bench._row(bench.CRITICAL, [run], 4_000_000)
    assert (row["target_s"], row["target_mb"], row["passed"]) == (45, 3072, True)
    slow = bench._row(bench.CRITICAL, [{**run, "seconds": 46.0}], 4_000_000)
    assert slow["passed"] is False
    assert "error" in bench.critical_run({**path, "score": {"error": "boom"}})
    assert "error" in bench.critical_run({"features": path["features"]})


def test_summary_prints_critical_path_floor_ratio_and_spread() -> None:
    crit = bench._row(
        bench.CRITICAL,
        [
            bench.critical_run(
                {s: {"seconds": 10.0, "rows": 5, "peak_mb": 100.0, "process_s": 11.0} for s in bench.CRITICAL_STAGES}
            )
        ],
        5,
    )
    floor = bench._row("floor", [{"seconds": 2.0, "rows": 5, "peak_mb": 50.0, "process_s": 3.0}], 5)
    spread = bench._row(
        bench.SPREAD,
        [
            {
                "seconds": 6.0,
                "rows": 5,
                "peak_mb": 50.0,
                "process_s": 7.0,
                "detail": {"chunks": 3, "chunk_s": [1, 2, 3], "largest_chunk_s": 3},
            }
        ],
        5,
    )
    result = {
        "stages": [crit, floor, spread],
        "ratio_nightly_floor": {},
        "ratio_critical_floor": {"floor": 15.0},
        "machine": {"load_avg_before": [1.0], "load_avg_after": [1.0], "cpus": 2, "total_s": 1.0},
        "world": "w",
        "method": "m",
    }
    text = "\n".join(output.summary_lines(result))
    assert "critical path (cut-off to published list" in text and "30.00 s = features 10.00 + score 10.00" in text
    assert "floor (read the day's raw partition, write scores): 2.00 s" in text
    assert "critical path / floor: 15.0x" in text
    assert "ingest spread over the day (off the critical path): 6.00 s in 3 chunks, largest 3 s" in text


def test_ingest_spread_in_chunks_equals_one_ingest(tmp_path: Path) -> None:
    from riskpipe.bench import stages
    from riskpipe.store import Layout, scan_raw_shipments

    day = bench.BENCH_DAY.isoformat()
    gen = tmp_path / "gen"
    stages.do_generate(str(gen), day, 300, 7)
    files = sorted(str(p) for p in (gen / "landing").iterdir() if p.is_file())
    assert len(files) >= 3
    res = stages.do_ingest_spread(str(tmp_path / "spread"), files, 3)
    assert res["detail"]["chunks"] == 3 and len(res["detail"]["chunk_s"]) == 3
    stages.do_ingest_spread(str(tmp_path / "once"), files, 1)

    def raw(home: Path) -> pl.DataFrame:
        frame = scan_raw_shipments(Layout(home), [bench.BENCH_DAY]).collect()
        return frame.drop(
            [c for c in frame.columns if c.startswith("_") or c in ("ingested_at", "source_file")], strict=False
        ).sort(S.SHIPMENT_ID)

    spread, once = raw(tmp_path / "spread"), raw(tmp_path / "once")
    assert spread.height > 250 and res["rows"] >= spread.height
    assert spread.equals(once)


def test_child_reports_the_cpu_time_of_its_work_and_the_row_its_median(tmp_path: Path) -> None:
    csv = tmp_path / "m.csv"
    pl.DataFrame({S.SHIPMENT_ID: [str(i) for i in range(1000)]}).write_csv(csv)
    res = bench.run_child("do_floor_landing", {"files": [str(csv)], "out": str(tmp_path / "o.parquet")}, tmp_path / "l")
    assert 0 < res["cpu_s"] < res["process_s"]
    runs = [{"seconds": 1.0, "rows": 1, "peak_mb": 1.0, "process_s": 2.0, "cpu_s": c} for c in (3.0, 1.0, 2.0)]
    assert bench._row("features", runs, 1)["cpu_s"] == 2.0


def test_window_stage_moves_the_table_on_and_is_printed_apart(tmp_path: Path) -> None:
    from datetime import timedelta

    from riskpipe.bench import stages
    from riskpipe.features import history
    from riskpipe.features.testing import write_raw_day
    from riskpipe.store import Layout

    lay = Layout(tmp_path / "home")
    for k in (1, 2, 8):
        write_raw_day(lay, bench.BENCH_DAY - timedelta(days=k), [{S.SHIPPER_NAME: f"S{k}"}, {S.SHIPPER_NAME: "S1"}])
    write_raw_day(lay, bench.BENCH_DAY, [{S.SHIPPER_NAME: "S1"}])
    res = stages.do_window(str(lay.home), bench.BENCH_DAY.isoformat())
    assert history.window_current(lay, bench.BENCH_DAY)
    assert history.window_current(lay, bench.BENCH_DAY - timedelta(days=1))
    assert res["rows"] == pl.read_parquet(history.window_path(lay, bench.BENCH_DAY)).height > 0
    row = bench._row(bench.WINDOW, [{**res, "peak_mb": 10.0, "process_s": 1.0}], 5)
    result = {
        "stages": [row],
        "ratio_nightly_floor": {},
        "machine": {"load_avg_before": [1.0], "load_avg_after": [1.0], "cpus": 2, "total_s": 1.0},
        "world": "w",
        "method": "m",
    }
    text = "\n".join(output.summary_lines(result))
    assert "history window table for the night (the night before's history step, off the critical path)" in text


@pytest.mark.slow  # ~2 min on 2 cores: a small world, riskpipe schedule started, one served night
def test_served_stage_times_trigger_to_published_on_an_ingested_day(tmp_path: Path) -> None:
    """``riskpipe schedule`` started as users do, the nightly deployment triggered: the night
    runs its tasks, never the ingest (its files were ingested as they landed), and the start-up
    is reported apart from the timed interval."""
    result = bench.run_bench(
        tmp_path / "work", rows=2000, history_days=1, stages=["features", "score", "rank", "served"]
    )
    by_name = {r["stage"]: r for r in result["stages"]}
    served = by_name[bench.SERVED]
    assert "error" not in served, served
    d = served["detail"]
    assert set(d["steps_s"]) == {"features", "score", "stage-outputs", "rank", "publish"}  # no ingest-files
    assert 0 < d["first_task_s"] < served["seconds"] <= d["publish_task_end_s"] + 0.1 < d["completed_s"] + 0.1
    assert 0 <= d["overhead_s"] < served["seconds"]
    assert d["startup_s"] > 0 and served["rows"] == by_name["features"]["rows"]
    assert served["over_critical_s"] == round(served["seconds"] - by_name[bench.CRITICAL]["seconds"], 2)
    text = "\n".join(output.summary_lines(result))
    assert "critical path as users run it (served" in text and "not timed: before the cut-off" in text


def test_served_lines_say_what_the_interval_holds() -> None:
    served = bench._row(
        bench.SERVED,
        [
            {
                "seconds": 12.0,
                "rows": 5,
                "peak_mb": 100.0,
                "process_s": 40.0,
                "detail": {
                    "startup_s": 20.0,
                    "run_started_s": 0.8,
                    "first_task_s": 1.1,
                    "completed_s": 14.0,
                    "steps_s": {"features": 5.0, "score": 3.0, "rank": 2.0, "publish": 1.0},
                    "overhead_s": 1.0,
                },
            }
        ],
        5,
    )
    text = "\n".join(output.served_lines(served, None))
    assert "triggered -> the day's targets file published): 12.00 s" in text
    assert (
        "features 5.00 + score 3.00 + rank 2.00 + publish 1.00; Prefect's share up to the publish task: 1.0 s" in text
    )
    assert "(Running 0.8 s, first task 1.1 s after the trigger)" in text
    assert "riskpipe schedule's start (server, deployments, warm process) 20.0 s" in text
