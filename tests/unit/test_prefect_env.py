"""riskpipe's Prefect environment: the ephemeral API server Prefect starts is stopped by the
kernel when the process that started it is killed (kill -9), even when Prefect starts it from a
short-lived thread. Prefect's own launch code runs for real; only the uvicorn it launches is a
stand-in (so this takes seconds; tests/flows/test_prefect_server_lifetime.py runs a real flow
on a real server, marked slow)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import sys, threading, time
from pathlib import Path
from riskpipe.prefect_env import configure_prefect
home = Path(sys.argv[1])
configure_prefect(home)
from prefect.server.api.server import SubprocessASGIServer
server = SubprocessASGIServer(port=int(sys.argv[2]))
box = {}
worker = threading.Thread(target=lambda: box.update(proc=server._run_uvicorn_command()))
worker.start()
worker.join()  # as when a Prefect worker thread starts the server and ends
(home / "server.pid").write_text(str(box["proc"].pid))
time.sleep(600)
"""

FAKE_UVICORN = """
import os, sys, time
from pathlib import Path
Path(os.environ["FAKE_UVICORN_ARGV"]).write_text(" ".join(sys.argv[1:]))
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # an unreaped zombie holds no memory and no port


def test_the_ephemeral_server_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    fake = tmp_path / "fake" / "uvicorn"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text(FAKE_UVICORN)
    home = tmp_path / "home"
    home.mkdir()
    argv_file = tmp_path / "argv.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PYTHONPATH"] = os.pathsep.join([str(fake.parent), str(ROOT), os.environ.get("PYTHONPATH", "")])
    env["FAKE_UVICORN_ARGV"] = str(argv_file)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(home), "18999"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    server_pid = None
    try:
        deadline = time.monotonic() + 120
        while not (argv_file.exists() and (home / "server.pid").exists()):
            assert child.poll() is None, f"child ended early: {child.stderr.read().decode()[-3000:]}"
            assert time.monotonic() < deadline, "the server was never started"
            time.sleep(0.05)
        time.sleep(0.5)
        server_pid = int((home / "server.pid").read_text())
        assert "--factory prefect.server.api.server:create_app" in argv_file.read_text()  # Prefect's command
        assert _alive(server_pid), "the server must outlive the thread that started it"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        deadline = time.monotonic() + 10
        while _alive(server_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(server_pid), "the ephemeral API server outlived its parent"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if server_pid is not None and _alive(server_pid):
            os.kill(server_pid, signal.SIGKILL)  # the orphan this test made (fails above)


LOGGING_PROBE = """
import json, logging, os, sys
from pathlib import Path
from riskpipe.prefect_env import configure_prefect, console_level
if sys.argv[2] != "library":
    console_level(debug=sys.argv[2] == "debug")
configure_prefect(Path(sys.argv[1]))
from prefect import flow  # noqa: F401 - sets up Prefect's logging, as a flow module does
from prefect.logging.handlers import APILogHandler, PrefectConsoleHandler
run_logger = logging.getLogger("prefect.flow_runs")
handlers = logging.getLogger().handlers + run_logger.handlers
print(json.dumps({
    "run_level": run_logger.getEffectiveLevel(),
    "task_level": logging.getLogger("prefect.task_runs").getEffectiveLevel(),
    "api": [h.level for h in run_logger.handlers if isinstance(h, APILogHandler)],
    "console": [h.level for h in handlers if isinstance(h, PrefectConsoleHandler)],
    "ui_enabled": os.environ.get("PREFECT_UI_ENABLED"),
}))
"""


def _logging_of(tmp_path: Path, mode: str) -> dict:
    import json

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", LOGGING_PROBE, str(tmp_path), mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_flow_and_task_logs_reach_the_api_at_info_while_the_console_stays_quiet(tmp_path: Path) -> None:
    """Runs used to log nothing to the API (PREFECT_LOGGING_LEVEL=WARNING: "This run didn't
    generate logs" in the UI); now INFO goes to the API handler, the console shows warnings
    (library use), nothing in a CLI run, and INFO with --debug."""
    import logging

    library = _logging_of(tmp_path, "library")
    assert library["run_level"] == library["task_level"] == logging.INFO
    assert library["api"] and all(level <= logging.INFO for level in library["api"])
    assert library["console"] and all(level == logging.WARNING for level in library["console"])
    assert library["ui_enabled"] is None  # a server's UI is not switched off
    cli = _logging_of(tmp_path, "cli")
    assert cli["run_level"] == logging.INFO and all(level <= logging.INFO for level in cli["api"])
    assert cli["console"] and all(level == logging.CRITICAL for level in cli["console"])
    debug = _logging_of(tmp_path, "debug")
    assert debug["console"] and all(level == logging.INFO for level in debug["console"])
