"""Deployments: the nightly flow on a cron, retraining weekly, served by ``riskpipe schedule``.

Cron schedules only fire with a real Prefect server (an ephemeral API has no scheduler), so
:func:`start_local_server` starts ``prefect server start`` on loopback when the user has not
pointed ``PREFECT_API_URL`` at one. Deployments are built by :func:`build_deployments` (tested)
and served in this process by ``prefect.serve`` (which runs each scheduled or manual run in a
subprocess).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from prefect.deployments.runner import EntrypointType
from prefect.schedules import Cron

from riskpipe.config import Settings
from riskpipe.errors import RiskpipeError

from flows.nightly import nightly_flow
from flows.retrain import retrain_flow

NIGHTLY_DEPLOYMENT = "riskpipe-nightly"
RETRAIN_DEPLOYMENT = "riskpipe-retrain"


def build_deployments(home: Path, settings: Settings) -> list:
    """The nightly deployment (date resolved at run time: today in ``settings.timezone``) and the
    weekly retraining, both on their crons in ``settings.timezone``."""
    home_str = str(Path(home).resolve())
    nightly = nightly_flow.to_deployment(
        NIGHTLY_DEPLOYMENT,
        schedule=Cron(settings.nightly_cron, timezone=settings.timezone),
        parameters={"home": home_str, "day": None},
        description="Ingest, features, score, rank and publish the arrival date of the run (today).",
        tags=["riskpipe"],
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    retrain = retrain_flow.to_deployment(
        RETRAIN_DEPLOYMENT,
        schedule=Cron(settings.retrain_cron, timezone=settings.timezone),
        parameters={"home": home_str},
        description="Import outcomes, train a challenger, promote it only if better.",
        tags=["riskpipe"],
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    return [nightly, retrain]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_local_server(prefect_home: Path, port: int | None = None, timeout_s: float = 90.0,
                       log_file: Path | None = None) -> tuple[subprocess.Popen, str]:
    """Start ``prefect server start`` on loopback with its database under ``prefect_home``;
    returns the process and its API URL once healthy (the caller stops the process)."""
    import httpx

    port = port or free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = dict(os.environ)
    env.update({"PREFECT_HOME": str(prefect_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_UI_ENABLED": "false"})
    env.pop("PREFECT_API_URL", None)
    prefect_home.mkdir(parents=True, exist_ok=True)
    log = open(log_file or prefect_home / "server.log", "ab")  # noqa: SIM115 - owned by the child
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
