"""Model health (KPIs first, then charts, model metadata folded away) and the nightly reports."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse
from markupsafe import Markup

from riskpipe import charts
from riskpipe.drift import psi_from_counts
from riskpipe.names import ReferenceNames
from riskpipe.web.data import WorkbenchData
from riskpipe.web.days import SingleFlightLRU
from riskpipe.web.health import hit_rates, weekly_hit_rates
from riskpipe.web.routes.deps import current_user, render

router = APIRouter(dependencies=[Depends(current_user)])
HEALTH_CHART_CACHE_SIZE = 8


@router.get("/health", response_class=HTMLResponse)
def health(request: Request) -> HTMLResponse:
    state = request.app.state
    data: WorkbenchData = state.data
    names: ReferenceNames = state.names
    vols = data.volumes()
    labels = state.labels.current()
    rates = hit_rates(labels)
    weekly = weekly_hit_rates(labels)
    latest = vols[-1] if vols else None
    slot_rows = data.slot_use(latest["day"]) if latest else []
    for r in slot_rows:
        r["name"] = names.port(r["port"])
    base = next((v["hist"] for v in vols if v["hist"]), None)
    drift = [psi_from_counts(base, v["hist"]) if base and v["hist"] else None for v in vols]
    # the charts only change with the data they show: rendered once per distinct data
    key = repr(
        (
            [
                (
                    v["day"],
                    v["scored"],
                    v["risk"],
                    v["exploration"],
                    v["mean_score"],
                    v["p99_score"],
                    tuple(v["hist"]),
                )
                for v in vols
            ],
            weekly,
            slot_rows,
        )
    )
    cache: SingleFlightLRU = state.health_charts
    rendered = cache.get_or_compute(key, lambda: _health_charts(vols, drift, weekly, slot_rows))
    kpis = _health_kpis(vols, weekly)
    champion = data.champion()
    meta = _flatten((champion or {}).get("meta", {}))
    return render(
        request,
        "health.html",
        {
            "vols": vols,
            "rates": rates,
            "charts": {k: Markup(v) for k, v in rendered.items()},
            "kpis": kpis,
            "latest": latest,
            "champion": champion,
            "metrics": meta,
        },
    )


@router.get("/report/{day}")
def report(request: Request, day: str) -> FileResponse:
    try:
        d = date.fromisoformat(day)
    except ValueError:
        raise HTTPException(400, "day must be YYYY-MM-DD") from None
    path = request.app.state.data.report_path(d)
    if not path.exists():
        raise HTTPException(404, "no report for that day")
    return FileResponse(path, media_type="text/html; charset=utf-8")


def _health_charts(
    vols: list[dict[str, Any]], drift: list[float | None], weekly: list[dict[str, Any]], slot_rows: list[dict[str, Any]]
) -> dict[str, str]:
    """The health page's charts (matplotlib SVG via :mod:`riskpipe.charts`)."""
    days = [v["day"].isoformat()[5:] for v in vols]
    latest = vols[-1] if vols else None
    return {
        "volumes": charts.lines(
            days, {"scored": [v["scored"] for v in vols]}, "Scored shipments per night", "shipments"
        ),
        "targets": charts.lines(
            days,
            {"risk": [v["risk"] for v in vols], "exploration": [v["exploration"] for v in vols]},
            "Targets by selection",
            "targets",
        ),
        "scores": charts.lines(
            days,
            {"mean score": [v["mean_score"] for v in vols], "p99 score": [v["p99_score"] for v in vols]},
            "Score level",
            "risk score",
            y_max=1.0,
        ),
        "psi": charts.lines(
            days,
            {"PSI vs first night": drift},
            "Score distribution shift (PSI)",
            "PSI",
            hlines=[(0.1, "moderate"), (0.25, "major")],
        ),
        "hist": charts.score_histogram(
            latest["hist"] if latest else [], f"Risk scores on {latest['day'].isoformat()}" if latest else ""
        ),
        "hits": charts.hit_rate_by_week(weekly),
        "slots": charts.slot_use(
            slot_rows, f"Exam slots used per port on {latest['day'].isoformat()}" if latest else ""
        ),
    }


def _health_kpis(vols: list[dict[str, Any]], weekly: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(value, label, detail) tiles shown first on the health page."""
    out: list[tuple[str, str, str]] = []
    if vols:
        v = vols[-1]
        out.append((f"{v['scored']:,}", "shipments scored", v["day"].isoformat()))
        out.append((f"{v['targets']:,}", "selected for exam", f"{v['exploration']:,} of them exploration"))
    recent = weekly[-8:] if weekly else []
    for reason in ("random", "targeted"):
        rows = [r for r in weekly if r["reason"] == reason and r["week"] in {x["week"] for x in recent}]
        n, k = sum(r["exams"] for r in rows), sum(r["positives"] for r in rows)
        if n:
            lo, hi = charts.wilson(k, n)
            out.append(
                (f"{k / n:.1%}", f"hit rate, {reason} exams", f"{k:,} of {n:,}; 95 % interval {lo:.1%} to {hi:.1%}")
            )
    return out


def _flatten(meta: dict[str, Any], prefix: str = "", depth: int = 0) -> list[tuple[str, Any]]:
    """Scalar entries of a model's meta.json, dotted keys (lists shortened)."""
    out: list[tuple[str, Any]] = []
    if depth > 3 or not isinstance(meta, dict):
        return out
    for k, v in meta.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.extend(_flatten(v, key + ".", depth + 1))
        elif isinstance(v, list):
            if len(v) <= 12 and all(not isinstance(x, (dict, list)) for x in v):
                out.append((key, ", ".join(str(x) for x in v)))
            else:
                out.append((key, f"[{len(v)} items]"))
        else:
            out.append((key, v))
    return out[:200]
