"""A kill -9 of a process running flows on Prefect's ephemeral API server takes the server with
it (no orphan holding ~200 MB and a port): riskpipe's Prefect environment ties the server's
lifetime to its parent process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import json, sys, time
from pathlib import Path

import pytest
from riskpipe.prefect_env import configure_prefect
home = Path(sys.argv[1])
configure_prefect(home)
from prefect import flow

@flow
def probe():
    from prefect.server.api.server import SubprocessASGIServer
    server = next(s for s in SubprocessASGIServer._instances.values() if s.server_process is not None)
    (home / "server.json").write_text(json.dumps({"pid": server.server_process.pid, "port": server.port}))
    time.sleep(600)

probe()
"""


def _alive(pid: int) -> bool:
    """Running (a zombie nobody reaps counts as gone: it holds no memory and no port)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow  # ~25 s: a real ephemeral server starts (tests/unit/test_prefect_env.py is the fast check)
def test_killing_the_flow_process_stops_its_ephemeral_api_server(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(home)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    info_file = home / "server.json"
    server_pid = None
    try:
        deadline = time.monotonic() + 180
        while not info_file.exists():
            assert child.poll() is None, f"child ended early: {child.stderr.read().decode()[-3000:]}"
            assert time.monotonic() < deadline, "the flow never started"
            time.sleep(0.1)
        time.sleep(0.2)  # the file is written in one call; let it land
        info = json.loads(info_file.read_text())
        server_pid, port = info["pid"], info["port"]
        assert _alive(server_pid) and _listening(port)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        deadline = time.monotonic() + 15
        while (_alive(server_pid) or _listening(port)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(server_pid), "the ephemeral API server outlived its parent"
        assert not _listening(port), "the ephemeral API server's port is still open"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if server_pid is not None and _alive(server_pid):
            os.kill(server_pid, signal.SIGKILL)  # the orphan this test made (fails above)
