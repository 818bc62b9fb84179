"""Rule feedback (hits, exams, findings, precision per rule) and rule editing by supervisors.

An edit is validated by the loader's own validator (:func:`riskpipe.rules.parse_rules`: no
evaluation of rule text), shown as a diff, and saved only on confirmation and only if the file
has not changed since the diff was shown. It is written atomically to the file the nights read
(:func:`riskpipe.rules.rules_file`: ``rules_path``, else ``<home>/rules.toml``), so the next
night uses it and a night already running keeps the rules it loaded; every save is audited.
"""

from __future__ import annotations

import difflib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from riskpipe import schema as S
from riskpipe.errors import RiskpipeError
from riskpipe.rules import DEFAULT_RULES_PATH, HOME_RULES_FILE, load_rules, parse_rules, rules_file
from riskpipe.rulestats import rule_stats
from riskpipe.store import PRIVATE_FILE, Layout, write_text_atomic
from riskpipe.users import User
from riskpipe.web.routes.deps import case_store, render, supervisor_form, supervisor_user

router = APIRouter(dependencies=[Depends(supervisor_user)])
MAX_RULES_TEXT = 200_000
MAX_NIGHTS_SHOWN = 14


def _paths(request: Request) -> tuple[Path, Path]:
    """(the file the nights read now, the file a save writes)."""
    settings = request.app.state.settings
    current = rules_file(settings)
    target = Path(settings.rules_path) if settings.rules_path is not None else Path(settings.home) / HOME_RULES_FILE
    return (current or DEFAULT_RULES_PATH), target


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _stats(request: Request) -> dict:
    settings = request.app.state.settings
    stats, per_night = rule_stats(Layout(settings.home), request.app.state.labels.current())
    try:
        texts = dict(load_rules(rules_file(settings)).texts)
    except RiskpipeError:
        texts = {}
    nights = sorted(set(per_night[S.ARRIVAL_DATE].to_list()))[-MAX_NIGHTS_SHOWN:]
    counts: dict[tuple[date, str], int] = {(d, c): n for d, c, n in per_night.iter_rows()}
    rows = [
        {**r, "text": texts.get(r["code"], ""), "per_night": [counts.get((d, r["code"]), 0) for d in nights]}
        for r in stats.iter_rows(named=True)
    ]
    silent = [c for c in texts if c not in set(stats["code"].to_list())]
    return {"stats": rows, "nights": nights, "silent": silent}


@router.get("/rules", response_class=HTMLResponse)
async def rules_page(request: Request, user: User = Depends(supervisor_user)):
    current, target = _paths(request)
    text = current.read_text(encoding="utf-8", errors="replace") if current.exists() else ""
    ctx = await run_in_threadpool(_stats, request)
    return render(
        request,
        "rules_feedback.html",
        {
            **ctx,
            "path": current,
            "target": target,
            "text": text,
            "base_sha": _sha(text),
            "edits": case_store(request).rule_edits(),
            "msg": request.query_params.get("msg"),
        },
    )


@router.post("/rules/preview", response_class=HTMLResponse)
def rules_preview(request: Request, user: User = Depends(supervisor_user), form: dict = Depends(supervisor_form)):
    current, target = _paths(request)
    new = form.get("text", "").replace("\r\n", "\n")
    old = current.read_text(encoding="utf-8", errors="replace") if current.exists() else ""
    error = None
    if len(new) > MAX_RULES_TEXT:
        error = f"the rules text is longer than {MAX_RULES_TEXT} characters"
    else:
        try:
            parse_rules(new, str(target))
        except RiskpipeError as exc:
            error = str(exc).splitlines()[0]
    diff = "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=f"{current} (now)",
            tofile=f"{target} (proposed)",
        )
    )
    return render(
        request,
        "rules_preview.html",
        {
            "error": error,
            "diff": diff,
            "text": new,
            "base_sha": form.get("base_sha", ""),
            "target": target,
        },
        status=400 if error else 200,
    )


@contextmanager
def _save_lock(target: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``<rules file>.lock`` (0600, beside the file a save writes), held
    from reading the current rules to the end of the write: two supervisors saving from the same
    version (threads or worker processes) are serialised, and the second gets the 409."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target.with_name(target.name + ".lock"), os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


@router.post("/rules/save")
def rules_save(request: Request, user: User = Depends(supervisor_user), form: dict = Depends(supervisor_form)):
    new = form.get("text", "").replace("\r\n", "\n")
    if len(new) > MAX_RULES_TEXT:
        raise HTTPException(400, f"the rules text is longer than {MAX_RULES_TEXT} characters")
    with _save_lock(_paths(request)[1]):
        current, target = _paths(request)  # under the lock: the first save changes the file the nights read
        old = current.read_text(encoding="utf-8", errors="replace") if current.exists() else ""
        if not form.get("base_sha") or form.get("base_sha") != _sha(old):
            raise HTTPException(
                409, "the rules changed since this edit began: open the Rules page again and redo the edit"
            )
        try:
            parse_rules(new, str(target))
        except RiskpipeError as exc:
            raise HTTPException(400, str(exc).splitlines()[0]) from None
        if new == old and current == target:
            return RedirectResponse("/rules?msg=no+change", status_code=303)
        diff = "".join(
            difflib.unified_diff(
                old.splitlines(keepends=True), new.splitlines(keepends=True), fromfile=str(current), tofile=str(target)
            )
        )
        write_text_atomic(new, target)
        case_store(request).record_rule_edit(user.username, str(target), _sha(old) if old else None, _sha(new), diff)
    return RedirectResponse("/rules?msg=saved:+the+next+night+uses+these+rules", status_code=303)
