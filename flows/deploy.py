"""Deployments: the nightly flow on a cron, retraining weekly, and the landing folder ingested as
files arrive (``ingest-landed`` on an interval: :mod:`riskpipe.watch`), served by ``riskpipe schedule``.

Cron schedules only fire with a real Prefect server (an ephemeral API has no scheduler), so
:func:`start_local_server` starts ``prefect server start`` on loopback, UI included, when the user
has not pointed ``PREFECT_API_URL`` at one. :func:`deployment_specs` gives the flows (with the
home's timeouts) and their deployment settings; :func:`serve` serves those flow objects in this
process (each scheduled or manual run in a subprocess). Serving the objects rather than
entrypoints matters: a run re-imported from ``flows.nightly`` would lose the home's timeouts.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from prefect.deployments.runner import EntrypointType
from prefect.schedules import Cron, Interval

from flows.ingest import landed_flow
from flows.nightly import nightly_flow
from flows.retrain import retrain_flow
from riskpipe.config import Settings
from riskpipe.errors import RiskpipeError

if TYPE_CHECKING:
    from prefect.runner import Runner

NIGHTLY_DEPLOYMENT = "riskpipe-nightly"
RETRAIN_DEPLOYMENT = "riskpipe-retrain"
LANDED_DEPLOYMENT = "riskpipe-ingest-landed"
#: seconds between runs of the landed-files deployment (each run is one look at the landing folder;
#: a Prefect flow run costs a few seconds, so ``riskpipe watch`` polls more often on one machine)
LANDED_INTERVAL_S = 60
#: seconds between the runner's looks for runs to start (Prefect's default, 10 s, would let a run
#: triggered at the cut-off wait up to that long; a look is one query to the local server)
POLL_S = 1


def deployment_specs(home: Path, settings: Settings) -> list[tuple]:
    """(flow, deployment options) of the nightly run (date resolved at run time: today in
    ``settings.timezone``) and the weekly retraining, both on their crons in
    ``settings.timezone``, the flows with the home's timeouts; and the landing folder's new files
    ingested (and their days scored provisionally) every ``LANDED_INTERVAL_S`` seconds, one run
    at a time (a run still going when the next is due makes it wait)."""
    home_str = str(Path(home).resolve())
    nightly = nightly_flow.with_options(timeout_seconds=settings.nightly_timeout_seconds)
    retrain = retrain_flow.with_options(timeout_seconds=settings.retrain_timeout_seconds)
    return [
        (
            nightly,
            {
                "name": NIGHTLY_DEPLOYMENT,
                "schedule": Cron(settings.nightly_cron, timezone=settings.timezone),
                "parameters": {"home": home_str, "day": None},
                "description": "Ingest, features, score, rank and publish the arrival date of the run (today).",
                "tags": ["riskpipe"],
                "entrypoint_type": EntrypointType.MODULE_PATH,
            },
        ),
        (
            retrain,
            {
                "name": RETRAIN_DEPLOYMENT,
                "schedule": Cron(settings.retrain_cron, timezone=settings.timezone),
                "parameters": {"home": home_str},
                "description": "Import outcomes, train a challenger, promote it only if better.",
                "tags": ["riskpipe"],
                "entrypoint_type": EntrypointType.MODULE_PATH,
            },
        ),
        (
            landed_flow.with_options(timeout_seconds=settings.io_timeout_seconds),
            {
                "name": LANDED_DEPLOYMENT,
                "schedule": Interval(LANDED_INTERVAL_S, timezone=settings.timezone),
                "parameters": {"home": home_str},
                "concurrency_limit": 1,
                "description": "Ingest the landing folder's new files; score their days provisionally.",
                "tags": ["riskpipe"],
                "entrypoint_type": EntrypointType.MODULE_PATH,
            },
        ),
    ]


async def add_to_runner(runner: Runner, home: Path, settings: Settings) -> None:
    """Register the deployments with ``runner``, which will run the flow objects themselves."""
    for flow_, options in deployment_specs(home, settings):
        await runner.aadd_flow(flow_, **options)


def serve(
    home: Path, settings: Settings, on_ready: Callable[[dict[str, int]], None] | None = None, warm: bool = True
) -> None:
    """Serve the deployments until interrupted (Ctrl-C, SIGTERM); their schedules are paused
    on the way out, as ``prefect.serve`` does. The runner looks for runs to start every
    ``POLL_S`` seconds, and (``warm``) a nightly run goes to a warm process started before it
    was triggered (:mod:`flows.warm`): Prefect's start is paid before the cut-off. ``on_ready``
    gets the warm processes' ids once they are ready."""
    import asyncio

    import anyio
    from prefect.exceptions import TerminationSignal
    from prefect.runner import Runner

    from flows.warm import WARM_FLOWS, WarmPool

    async def run() -> None:
        runner = Runner(pause_on_shutdown=True, query_seconds=POLL_S)
        await add_to_runner(runner, home, settings)
        with WarmPool(WARM_FLOWS if warm else ()) as pool:
            announced = None
            if on_ready is not None:
                callback = on_ready

                async def announce() -> None:
                    try:
                        callback(await anyio.to_thread.run_sync(pool.wait_ready))
                    except (RuntimeError, TimeoutError) as exc:  # runs then start fresh processes
                        print(f"warning: no warm process for the nightly: {exc}", file=sys.stderr)

                announced = asyncio.create_task(announce())
            await runner.start()
            if announced is not None:
                announced.cancel()

    try:
        asyncio.run(run())
    except (KeyboardInterrupt, TerminationSignal):
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def ui_url(api_url: str) -> str:
    """The UI of the Prefect server whose API is at ``api_url``."""
    return api_url.rstrip("/").removesuffix("/api")


def start_local_server(
    prefect_home: Path, port: int | None = None, timeout_s: float = 90.0, log_file: Path | None = None
) -> tuple[subprocess.Popen, str]:
    """Start ``prefect server start`` on loopback with its database under ``prefect_home``;
    returns the process and its API URL once healthy (the caller stops the process). The UI is
    served at the same address (the API URL without ``/api``), told where its API is, and its
    static files are copied under ``prefect_home``."""
    import httpx

    port = port or free_port()
    if not port_free(port):
        raise RiskpipeError(
            f"schedule: port {port} on 127.0.0.1 is in use (another Prefect server?); "
            "pass --port, or point PREFECT_API_URL at the running server"
        )
    api_url = f"http://127.0.0.1:{port}/api"
    env = dict(os.environ)
    env.update(
        {
            "PREFECT_HOME": str(prefect_home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "true",
            "PREFECT_UI_API_URL": api_url,
            "PREFECT_UI_STATIC_DIRECTORY": str(prefect_home / "ui"),
        }
    )
    env.pop("PREFECT_API_URL", None)
    prefect_home.mkdir(parents=True, exist_ok=True)
    log = open(log_file or prefect_home / "server.log", "ab")  # owned by the child
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RiskpipeError(f"schedule: the local Prefect server exited (status {proc.returncode}); see {log.name}")
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return proc, api_url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise RiskpipeError(f"schedule: the local Prefect server was not healthy after {timeout_s:.0f} s; see {log.name}")
