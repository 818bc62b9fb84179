"""Deployments of ``riskpipe schedule``: registered with their cron and time zone, and a manual run
of the nightly deployment is picked up by a runner and completes."""

from __future__ import annotations

import asyncio
from datetime import datetime
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from riskpipe import schema as S
from riskpipe.config import load_settings
from riskpipe.store import Layout


def test_resolve_day_uses_the_configured_time_zone():
    from flows.nightly import resolve_day

    now = datetime(2026, 3, 1, 3, 30, tzinfo=ZoneInfo("UTC"))  # 22:30 on Feb 28 in New York
    assert resolve_day(None, "America/New_York", now) == "2026-02-28"
    assert resolve_day(None, "UTC", now) == "2026-03-01"
    assert resolve_day("2026-01-14", "America/New_York", now) == "2026-01-14"


@pytest.mark.slow  # ~13 s: the runner executes the flow run in a fresh subprocess
def test_deployments_are_registered_and_a_manual_run_is_picked_up(world, home_copy):
    """As ``riskpipe schedule`` serves them (:func:`flows.deploy.serve`): the flow objects with
    the home's timeouts, each run in a subprocess, named after its day."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.runner import Runner

    from flows.deploy import NIGHTLY_DEPLOYMENT, RETRAIN_DEPLOYMENT, add_to_runner

    settings = load_settings(home_copy, {"timezone": "America/Chicago", "retrain_cron": "30 5 * * 1"})

    async def scenario():
        runner = Runner(query_seconds=1, pause_on_shutdown=False)
        await add_to_runner(runner, home_copy, settings)
        async with get_client() as client:
            nightly = await client.read_deployment_by_name(f"nightly/{NIGHTLY_DEPLOYMENT}")
            retrain = await client.read_deployment_by_name(f"retrain/{RETRAIN_DEPLOYMENT}")
        run = await run_deployment(
            name=f"nightly/{NIGHTLY_DEPLOYMENT}", parameters={"day": world["day"], "ingest": False}, timeout=0
        )
        await asyncio.wait_for(runner.start(run_once=True), timeout=180)
        async with get_client() as client:
            done = await client.read_flow_run(run.id)
        return nightly, retrain, done

    nightly, retrain, done = asyncio.run(scenario())
    n_sched, r_sched = nightly.schedules[0].schedule, retrain.schedules[0].schedule
    assert (n_sched.cron, n_sched.timezone) == ("0 2 * * *", "America/Chicago")
    assert (r_sched.cron, r_sched.timezone) == ("30 5 * * 1", "America/Chicago")
    assert nightly.parameters == {"home": str(home_copy.resolve()), "day": None}
    assert done.state is not None and done.state.is_completed(), done.state
    assert done.name == f"nightly-{world['day']}"
    layout = Layout(home_copy)
    scores = pl.read_parquet(layout.scores / world["day"] / "scores.parquet")
    assert scores.columns == list(S.SCORES_FILE_SCHEMA) and scores.height > 1000
