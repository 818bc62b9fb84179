"""Prefect glue shared by the flows: run names that say what a run is about, and the hook that
alerts the on-call when a nightly or retraining run fails or crashes (:mod:`riskpipe.notify`).

Run names: ``nightly-2026-02-01`` (the arrival date scored; a scheduled run's date is resolved
as the flow resolves it), ``retrain-until-2026-02-01`` (today in the configured time zone when
no ``until`` is given), so the UI's run list reads as a calendar.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from riskpipe.runsteps import StepFailed, failed_step, one_line

if TYPE_CHECKING:
    from prefect import Flow
    from prefect.client.schemas.objects import FlowRun, State

    from riskpipe.notify import Failure

STEP_RE = re.compile(r"\bstep '([^']+)' failed: ")


def _params() -> dict[str, Any]:
    from prefect.runtime import flow_run

    return dict(flow_run.parameters or {})


def _timezone(home: str | Path) -> str:
    try:
        from flows.settings import home_settings

        return home_settings(Path(home)).timezone
    except Exception:  # a name must never fail a run; the flow reports bad settings
        return "UTC"


def day_of(flow: str, params: dict[str, Any]) -> str:
    """The day a run is about: the nightly's ``day`` or the retraining's ``until``, else today in
    the home's time zone (as a scheduled run resolves it)."""
    from flows.nightly import resolve_day

    given = params.get("until" if flow == "retrain" else "day")
    if given:
        try:
            return date.fromisoformat(str(given)).isoformat()
        except ValueError:
            return str(given)[:40]  # the flow rejects it; the name just shows it
    return resolve_day(None, _timezone(params.get("home", "data")))


def nightly_run_name() -> str:
    return f"nightly-{day_of('nightly', _params())}"


def retrain_run_name() -> str:
    return f"retrain-until-{day_of('retrain', _params())}"


def ingest_run_name() -> str:
    return f"ingest-{datetime.now(UTC):%Y-%m-%dT%H%M%SZ}"


def _exception(state: State) -> BaseException | None:
    try:
        value = state.result(raise_on_failure=False)
    except Exception:  # a crash has no result; its message is all there is
        return None
    return value if isinstance(value, BaseException) else None


def describe_failure(flow_name: str, run_name: str, params: dict[str, Any], state: State) -> Failure:
    """The :class:`riskpipe.notify.Failure` of a failed or crashed run (step and one-line error
    from the exception, else from the state's message)."""
    from riskpipe.nightly import RulesOnlyNight
    from riskpipe.notify import Failure

    exc = _exception(state)
    step: str | None
    if isinstance(exc, StepFailed):
        step, error = exc.step, exc.error
    elif isinstance(exc, RulesOnlyNight):
        step, error = "champion", one_line(exc)
    else:
        error = one_line(exc) if exc is not None else " ".join((state.message or state.name or "").split())
        match = STEP_RE.search(error)
        step = match.group(1) if match else (failed_step(exc) or (None, None))[1]
        if match:
            error = error[match.end() :]
    return Failure(
        flow=flow_name,
        run_name=run_name,
        day=day_of(flow_name, params),
        step=step,
        error=error or "no error message",
        state=state.name or state.type.value.title(),
    )


def notify_failure(flow: Flow, flow_run: FlowRun, state: State) -> None:
    """on_failure / on_crashed hook: one alert to ``notify_url`` (if set) naming the run, the day,
    the failing step and the error. A failed alert is logged on the run, never raised."""
    from prefect.logging.loggers import flow_run_logger

    from flows.settings import home_settings
    from riskpipe.notify import send

    params = dict(flow_run.parameters or {})
    logger = flow_run_logger(flow_run, flow)
    try:
        url = home_settings(Path(params.get("home", "data"))).notify_url
    except Exception as exc:  # reported on the run
        logger.error("alert not sent: the home's settings could not be read: %s", one_line(exc))
        return
    if not url:
        return
    failure = describe_failure(flow.name, flow_run.name, params, state)
    try:
        send(url, failure)
    except Exception as exc:  # reported on the run
        logger.error("alert not sent: %s", one_line(exc))
    else:
        logger.info("alert sent for %s (step %s)", flow_run.name, failure.step or "unknown")
