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
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(home), "18999"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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
