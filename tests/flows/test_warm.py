"""The served nightly in a warm process (:mod:`flows.warm`): Prefect's start paid before the
trigger, the same published outputs as ``riskpipe nightly``, and no server started per run."""

from __future__ import annotations

import asyncio
import shutil
import time

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from riskpipe.config import load_settings
from riskpipe.store import Layout


def _published(home, day: str) -> dict[str, pl.DataFrame]:
    layout = Layout(home)
    return {
        k: pl.read_parquet(getattr(layout, k) / day / f"{k}.parquet").sort("shipment_id") for k in ("scores", "targets")
    }


@pytest.mark.slow  # ~40 s on 2 cores: two served runs, each warm process imports the night
def test_served_runs_go_to_warm_processes_started_before_their_trigger(world, baseline, tmp_path):
    import anyio
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.runner import Runner

    from flows.deploy import NIGHTLY_DEPLOYMENT, add_to_runner
    from flows.warm import WarmPool

    home = tmp_path / "home"
    shutil.copytree(world["home"], home)
    day = world["day"]
    settings = load_settings(home)
    expected = {k: baseline[k].sort("shipment_id") for k in ("scores", "targets")}

    async def scenario():
        runner = Runner(query_seconds=1, pause_on_shutdown=False)
        await add_to_runner(runner, home, settings)
        seen = []
        with WarmPool() as pool:
            for _ in range(2):
                pids = await anyio.to_thread.run_sync(pool.wait_ready)
                triggered = time.time()
                run = await run_deployment(
                    name=f"nightly/{NIGHTLY_DEPLOYMENT}", parameters={"day": day, "ingest": False}, timeout=0
                )
                await asyncio.wait_for(runner.start(run_once=True), timeout=180)
                async with get_client() as client:
                    done = await client.read_flow_run(run.id)
                for _ in range(100):  # the hand-off's report arrives as the process exits
                    if pool.handoffs and pool.handoffs[-1].ended_at is not None:
                        break
                    await asyncio.sleep(0.1)
                seen.append((pids["nightly"], triggered, done, _published(home, day)))
            handoffs = list(pool.handoffs)
        return seen, handoffs

    seen, handoffs = asyncio.run(scenario())
    assert len(handoffs) == 2
    for (pid, triggered, done, published), handoff in zip(seen, handoffs, strict=True):
        assert done.state is not None and done.state.is_completed(), done.state
        assert handoff.pid == pid  # the run went to the process that was warm before the trigger
        assert handoff.ready_at is not None and handoff.ready_at < triggered
        assert handoff.server_imported is False  # no ephemeral API server in that process
        for k in ("scores", "targets"):
            assert_frame_equal(published[k], expected[k])
    assert handoffs[0].pid != handoffs[1].pid  # one process per night, the next one warmed after it


def test_runs_of_other_flows_start_the_usual_way_and_a_dead_warm_process_is_replaced(monkeypatch):
    """Only the flows named get a warm process; with none alive a nightly starts the usual way and
    the next one is warmed once it has ended; the patch is undone on exit."""
    import os
    import time

    import prefect.flow_engine as engine
    from prefect.runner import _starter_direct

    from flows.warm import WarmPool

    original, original_mp = _starter_direct.run_flow_in_subprocess, engine.multiprocessing
    read, write = os.pipe()
    os.close(write)  # the stand-in process has already ended: its sentinel is readable

    class Ended:
        sentinel = read

    calls, spawned = [], []
    monkeypatch.setattr(
        _starter_direct, "run_flow_in_subprocess", lambda flow, **kw: calls.append(flow.name) or Ended()
    )
    monkeypatch.setattr(WarmPool, "_spawn", lambda self, flow: spawned.append(flow))  # no process here

    class Flow:
        name = "retrain"

    with WarmPool(("nightly",)) as pool:
        assert spawned == ["nightly"]  # warmed on entry
        _starter_direct.run_flow_in_subprocess(Flow(), flow_run=None)
        Flow.name = "nightly"  # no warm process alive (the stand-in spawned none)
        _starter_direct.run_flow_in_subprocess(Flow(), flow_run=None)
        assert engine.multiprocessing is not original_mp
        for _ in range(100):
            if len(spawned) == 2:
                break
            time.sleep(0.02)
    os.close(read)
    assert calls == ["retrain", "nightly"] and pool.handoffs == []
    assert spawned == ["nightly", "nightly"]  # the next night warmed after the fresh one ended
    assert engine.multiprocessing is original_mp
    assert _starter_direct.run_flow_in_subprocess is not original  # monkeypatch's stand-in restored
