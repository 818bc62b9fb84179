"""One shipment: its page and JSON, and the recording of an exam outcome (form and API).

A positive outcome becomes a positive training label, so it needs an explicit confirmation and
an examiner; an outcome is recorded only for a shipment the raw store knows."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from riskpipe import schema as S
from riskpipe.errors import RiskpipeError
from riskpipe.labels import LabelStore
from riskpipe.users import User
from riskpipe.web import svg
from riskpipe.web.data import WorkbenchData
from riskpipe.web.days import outcomes_changed
from riskpipe.web.routes.deps import api_csrf, current_user, day_param, posted_form, render, safe_next

router = APIRouter(dependencies=[Depends(current_user)])
MANIFEST_ORDER = list(S.RAW_SHIPMENT_SCHEMA)
PARTNER_PAIRS = [
    ("Description", S.DESCRIPTION, S.DESCRIPTION),
    ("Declared value (USD)", S.DECLARED_VALUE_USD, S.PARTNER_DECLARED_VALUE_USD),
    ("Gross weight (kg)", S.GROSS_WEIGHT_KG, S.GROSS_WEIGHT_KG),
    ("Export country", S.EXPORT_COUNTRY, S.EXPORT_COUNTRY),
    ("Shipper / exporter", S.SHIPPER_NAME, S.EXPORTER_NAME),
    ("Trusted trader / AEO", S.TRUSTED_TRADER, S.EXPORTER_AEO),
    ("Filed / declared at", S.FILED_AT, S.DECLARED_AT),
]


def shipment_context(request: Request, shipment_id: str, day: str | None) -> dict[str, Any]:
    data: WorkbenchData = request.app.state.data
    d = day_param(day)
    manifest = data.manifest(d, shipment_id) if d else None
    if manifest is None:
        d = data.find_day(shipment_id)
        manifest = data.manifest(d, shipment_id) if d else None
    if manifest is None or d is None:
        raise HTTPException(404, "no such shipment in the raw store")
    score = data.score(d, shipment_id)
    partner = data.partner(d, shipment_id)
    labels: LabelStore = request.app.state.labels
    history = data.party_history(d, manifest, lambda ids: labels.current(shipment_ids=ids))
    net = data.network(d, manifest, (score or {}).get(S.NETWORK_ID))
    return {
        "day": d,
        "sid": shipment_id,
        "manifest": manifest,
        "manifest_order": [c for c in MANIFEST_ORDER if c in manifest]
        + [c for c in manifest if c not in MANIFEST_ORDER],
        "score": score,
        "partner": partner,
        "history": history,
        "network": net,
        "label": labels.get(shipment_id),
        "audit": labels.history(shipment_id),
    }


@router.get("/shipment/{shipment_id}", response_class=HTMLResponse)
def shipment_page(request: Request, shipment_id: str, day: str | None = None) -> HTMLResponse:
    ctx = shipment_context(request, shipment_id, day)
    ctx["graph"] = svg.network_svg(shipment_id, ctx["network"], "/shipment/", f"?day={ctx['day'].isoformat()}")
    ctx.update(
        outcomes=S.OUTCOMES, reasons=S.EXAM_REASONS, partner_pairs=_partner_pairs(ctx["manifest"], ctx["partner"])
    )
    ctx["saved"] = request.query_params.get("saved") if request.query_params.get("saved") in ("1", "same") else None
    ctx["max_exam_date"] = request.app.state.labels.latest_exam_date()
    back = request.query_params.get("back") or ""
    ctx["back"] = (
        back
        if back.startswith("/list?") and len(back) <= 2000 and "\\" not in back
        else f"/list?day={ctx['day'].isoformat()}"
    )
    return render(request, "shipment.html", ctx)


@router.get("/api/shipment/{shipment_id}")
def api_shipment(request: Request, shipment_id: str, day: str | None = None) -> JSONResponse:
    ctx = shipment_context(request, shipment_id, day)
    return JSONResponse(
        _jsonable({k: ctx[k] for k in ("day", "manifest", "score", "partner", "label", "audit", "network")})
    )


def _require_ingested(request: Request, shipment_id: str, day: str | None) -> date:
    """The shipment's arrival day; 404 unless the shipment is in the raw store (the day given,
    else any day), as ``labels import`` quarantines outcomes of unknown shipments."""
    data: WorkbenchData = request.app.state.data
    d = day_param(day)
    if d is not None and data.manifest(d, shipment_id) is not None:
        return d
    found = data.find_day(shipment_id)
    if found is None:
        raise HTTPException(
            404, f"no shipment {shipment_id} in the raw store: outcomes are recorded for ingested shipments only"
        )
    return found


async def _record(request: Request, shipment_id: str, form: dict[str, str], user: User) -> bool:
    """Record one outcome; True when it changed the stored one (applied and audited), False
    when the same outcome was already recorded. Anything else is refused with the reason."""
    labels: LabelStore = request.app.state.labels
    try:
        exam_date = date.fromisoformat(form.get("exam_date") or labels.today().isoformat())
    except ValueError:
        raise HTTPException(400, "exam_date must be YYYY-MM-DD") from None
    if exam_date > labels.latest_exam_date():
        today = f"{labels.today().isoformat()}, {request.app.state.settings.timezone}"
        raise HTTPException(
            400,
            f"exam_date {exam_date.isoformat()} is in the future (today is {today}): record an exam once it has taken place",
        )
    outcome, reason = form.get("outcome", ""), form.get("exam_reason", "")
    if not outcome:
        raise HTTPException(400, "choose an outcome: none was selected, so nothing was recorded")
    if outcome not in S.OUTCOMES or reason not in S.EXAM_REASONS:
        raise HTTPException(400, "outcome or exam_reason is not one of the allowed values")
    arrival: date = await run_in_threadpool(_require_ingested, request, shipment_id, form.get("day"))
    if exam_date < arrival:  # a typo (0001-01-01) would become a training label dated before the shipment
        raise HTTPException(
            400,
            f"exam_date {exam_date.isoformat()} is before the shipment arrived ({arrival.isoformat()}): "
            "nothing was recorded",
        )
    examiner = (form.get("examiner") or "").strip()[:200] or None
    if outcome in S.POSITIVE_OUTCOMES and (form.get("confirm") != "yes" or examiner is None):
        # a wrong positive label is worse than none: it teaches the next retrain a seizure
        raise HTTPException(
            400,
            f"{outcome} is a positive finding and becomes a positive training label: confirm it (confirm=yes) "
            "and name the examiner; nothing was recorded",
        )
    try:
        changed: bool = await run_in_threadpool(
            labels.record_one,
            shipment_id,
            exam_date,
            outcome,
            reason,
            user.username,
            examiner,
            (form.get("notes") or "").strip()[:2000] or None,
        )
    except RiskpipeError as exc:
        raise HTTPException(400, str(exc)) from None
    if changed:
        request.app.state.list_generation += 1  # cached list pages were rendered before this outcome
        await run_in_threadpool(outcomes_changed, request.app.state.settings.home)  # ... in every worker
    return changed


@router.post("/shipment/{shipment_id}/outcome")
async def record_outcome(
    request: Request, shipment_id: str, user: User = Depends(current_user), form: dict[str, str] = Depends(posted_form)
) -> RedirectResponse:
    changed = await _record(request, shipment_id, form, user)
    default = f"/shipment/{quote(shipment_id, safe='')}?saved=1"
    target = safe_next(form.get("next"), default)
    if not changed:  # say so rather than "saved"
        target = target.replace("saved=1", "saved=same")
    return RedirectResponse(target, status_code=303)


@router.post("/api/outcome", dependencies=[Depends(api_csrf)])
async def api_outcome(request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    try:
        payload = await request.json()
    except ValueError:
        raise HTTPException(400, "body must be JSON") from None
    if not isinstance(payload, dict) or not payload.get(S.SHIPMENT_ID):
        raise HTTPException(400, "shipment_id is required")
    form = {k: str(v) for k, v in payload.items() if v is not None}
    changed = await _record(request, form[S.SHIPMENT_ID], form, user)
    return {"ok": True, "changed": changed, "history": _jsonable(request.app.state.labels.history(form[S.SHIPMENT_ID]))}


def _partner_pairs(manifest: dict[str, Any], partner: dict[str, Any] | None) -> list[tuple[str, Any, Any, bool]]:
    """(label, manifest value, partner value, differs) rows for the side-by-side table."""
    if partner is None:
        return []
    out = []
    for label, m, p in PARTNER_PAIRS:
        mv, pv = manifest.get(m), partner.get(p)
        differs = False
        if isinstance(mv, (int, float)) and isinstance(pv, (int, float)) and not isinstance(mv, bool):
            differs = abs(mv - pv) > 0.1 * max(abs(mv), abs(pv), 1e-9)
        elif isinstance(mv, str) and isinstance(pv, str) and label != "Filed / declared at":
            differs = mv.strip().lower() != pv.strip().lower()
        out.append((label, mv, pv, differs))
    return out


def _jsonable(value: Any) -> Any:
    """Dates as ISO text, recursively: the JSON answers carry the same values as the pages."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value
