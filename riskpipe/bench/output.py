"""What ``riskpipe bench`` prints and writes: the stage table (and the scaling table), the plain
summary lines under it, and the results file."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from rich.console import JustifyMethod

from riskpipe.bench.core import CRITICAL, SERVED, SPREAD, WEB_STAGES, WINDOW


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
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("stage", "left"),
        ("rows", "right"),
        ("seconds", "right"),
        ("CPU s", "right"),
        ("rows/s", "right"),
        ("peak MB", "right"),
        ("target", "left"),
        ("pass", "center"),
    )
    for col, just in columns:
        t.add_column(col, justify=just, no_wrap=True)
    for r in result["stages"]:
        if "seconds" not in r:
            t.add_row(r["stage"], "", "", "", "", "", _fmt_target(r), "[red]error[/red]")
            continue
        secs = f"{r['seconds'] * 1000:.0f} ms" if r["stage"] in WEB_STAGES else f"{r['seconds']:.2f}"
        verdict = {True: "[green]pass[/green]", False: "[red]FAIL[/red]", None: ""}[r["passed"]]
        if r["passed"] is None and _fmt_target(r):
            verdict = "n/a"  # targets are for 4 M rows
        t.add_row(
            r["stage"],
            f"{r['rows']:,}",
            secs,
            f"{r['cpu_s']:.2f}" if r.get("cpu_s") is not None and r["stage"] not in WEB_STAGES else "",
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
    lines += critical_lines(result)
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


def critical_lines(result: dict) -> list[str]:
    """The critical path (cut-off to published list, the day already ingested as its files
    landed), its stages, the floor and their ratio; the ingest spread over the day, apart."""
    by_name = {r["stage"]: r for r in result["stages"]}
    lines = []
    cr = by_name.get(CRITICAL)
    if cr and cr.get("seconds") is not None:
        parts = " + ".join(f"{k} {v:.2f}" for k, v in (cr.get("detail") or {}).get("stages_s", {}).items())
        lines.append(
            f"critical path (cut-off to published list, day ingested as it landed): {cr['seconds']:.2f} s "
            f"= {parts}; peak {cr['peak_mb']:,.0f} MB (target 45 s, 3 GB; features 20 s, score 10 s)"
        )
        if cr.get("with_prefect_start_s") is not None:
            lines.append(f"critical path with Prefect's start on it (riskpipe nightly): {cr['with_prefect_start_s']} s")
        fl = by_name.get("floor")
        if fl and fl.get("seconds"):
            lines.append(f"floor (read the day's raw partition, write scores): {fl['seconds']:.2f} s")
        for name, ratio in (result.get("ratio_critical_floor") or {}).items():
            lines.append(f"critical path / {name}: {ratio}x")
    lines += served_lines(by_name.get(SERVED), cr)
    wi = by_name.get(WINDOW)
    if wi and wi.get("seconds") is not None:
        lines.append(
            f"history window table for the night (the night before's history step, off the critical path): "
            f"{wi['seconds']:.2f} s to move it on one day ({wi.get('rows', 0):,} keys; summing it in full, as a "
            f"first night does: {(wi.get('detail') or {}).get('full_s', 0)} s); peak {wi['peak_mb']:,.0f} MB"
        )
    sp = by_name.get(SPREAD)
    if sp and sp.get("seconds") is not None and sp.get("detail"):
        d = sp["detail"]
        lines.append(
            f"ingest spread over the day (off the critical path): {sp['seconds']:.2f} s in {d['chunks']} chunks, "
            f"largest {d['largest_chunk_s']} s"
        )
    return lines


def served_lines(sv: dict | None, cr: dict | None) -> list[str]:
    """The critical path as users run it: ``riskpipe schedule`` serving, the nightly deployment
    triggered; what the timed interval holds, and what Prefect adds over the steps."""
    if not sv or sv.get("seconds") is None:
        return []
    d = sv.get("detail") or {}
    steps = " + ".join(f"{k} {v:.2f}" for k, v in (d.get("steps_s") or {}).items())
    lines = [
        f"critical path as users run it (served: riskpipe schedule, nightly deployment triggered -> the day's "
        f"targets file published): {sv['seconds']:.2f} s; peak {sv['peak_mb']:,.0f} MB, the largest process of "
        "the served tree over the whole run (target 45 s, 3 GB)",
        f"  inside it: run created, picked up by the runner, handed to the warm process (Running "
        f"{d.get('run_started_s')} s, first task {d.get('first_task_s')} s after the trigger), then the tasks "
        f"{steps}; Prefect's share up to the publish task: {d.get('overhead_s')} s",
        f"  not timed: before the cut-off, riskpipe schedule's start (server, deployments, warm process) "
        f"{d.get('startup_s')} s; after publishing, the look-up files (publish task ended at "
        f"{d.get('publish_task_end_s')} s), record and history (run completed at {d.get('completed_s')} s)",
    ]
    if cr and cr.get("seconds") is not None and sv.get("over_critical_s") is not None:
        lines.append(
            f"  served minus the critical stages run alone ({cr['seconds']:.2f} s, other processes and "
            f"runs): {sv['over_critical_s']:+.2f} s"
        )
    return lines


def write_results(result: dict, directory: Path) -> Path:
    """``bench-results/<timestamp>.json``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    return path
