"""Prefect settings for local, self-contained runs (set before ``import prefect``).

Local ephemeral mode keeps its SQLite database under the data home; analytics are off because
the machines have no internet (otherwise every start logs a telemetry error); the ephemeral
server gets 60 s to start because a busy 2-core machine can need more than the default 20 s.

Logs: flow and task runs log at INFO to the Prefect API (the run's page in the UI shows them),
while Prefect's console handler shows WARNING and above only (``riskpipe nightly`` raises it
further: its own progress rows and one-line error replace Prefect's console log, see
:func:`console_level`). A server's UI (``riskpipe schedule``, ``prefect server start``) is on;
its static files are copied under the Prefect home rather than into the installed package.

The ephemeral API server is a child process (``python -m uvicorn``, started by Prefect's
``SubprocessASGIServer``) that Prefect stops at exit; a kill -9 of the flow process skips that
and used to leave the server running (218 MB, still listening). :func:`tie_ephemeral_server`
makes the kernel stop it instead: the server is started through a two-line wrapper that sets
``PR_SET_PDEATHSIG`` (SIGTERM when its parent dies) before running uvicorn, from a thread that
lives as long as the process (the signal follows the *thread* that forked the child, and
Prefect may start the server from a short-lived worker thread).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, TypeVar, runtime_checkable

#: the level of Prefect's console handler (its logging.yml ``handlers.console.level``)
CONSOLE_LEVEL_ENV = "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"


def console_level(debug: bool, environ: dict[str, str] | None = None) -> None:
    """Prefect's console in a CLI run (set before ``import prefect``): silent, since the CLI shows
    progress and a one-line error while the run's full log, tracebacks included, goes to the
    API; with ``--debug`` everything from INFO up, tracebacks included."""
    env = os.environ if environ is None else environ
    env.setdefault(CONSOLE_LEVEL_ENV, "INFO" if debug else "CRITICAL")


def configure_prefect(home: Path, environ: dict[str, str] | None = None) -> None:
    """Prefect's environment for flows run on ``home``; for this process (``environ`` None) the
    ephemeral API server is also tied to the process's lifetime."""
    from riskpipe.store import private_dir

    env = os.environ if environ is None else environ
    prefect_home = private_dir((home / ".prefect").resolve())  # flow parameters, logs: owner only
    env.setdefault("PREFECT_HOME", str(prefect_home))
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "60")
    env.setdefault("PREFECT_RESULTS_LOCAL_STORAGE_PATH", str(prefect_home / "results"))
    env.setdefault("PREFECT_LOGGING_LEVEL", "INFO")  # what flow and task runs send to the API
    env.setdefault(CONSOLE_LEVEL_ENV, "WARNING")  # what Prefect prints
    env.setdefault("PREFECT_UI_STATIC_DIRECTORY", str(prefect_home / "ui"))
    if environ is None:
        tie_ephemeral_server()


# ---------------------------------------------------------------------------------------------
# the ephemeral API server dies with its parent
# ---------------------------------------------------------------------------------------------
SERVER_MODULE = "prefect.server.api.server"
PARENT_ENV = "RISKPIPE_PREFECT_PARENT_PID"
T = TypeVar("T")

#: run in the server process instead of ``python -m uvicorn``: ask for SIGTERM when the parent
#: dies (PR_SET_PDEATHSIG = 1), give up if it already has, then run uvicorn with the same args.
SERVER_WRAPPER = (
    "import ctypes, os, runpy, signal, sys\n"
    "ctypes.CDLL(None).prctl(1, int(signal.SIGTERM), 0, 0, 0)\n"
    f"os.getppid() == int(os.environ.pop({PARENT_ENV!r})) or sys.exit(0)\n"
    "sys.argv = ['uvicorn', *sys.argv[1:]]\n"
    "runpy.run_module('uvicorn', run_name='__main__', alter_sys=True)\n"
)


class _Spawner:
    """A daemon thread that starts child processes and lives until the process ends."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], object], dict[str, Any], threading.Event]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def call(self, fn: Callable[[], T]) -> T:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="riskpipe-prefect-spawner", daemon=True)
                self._thread.start()
        done = threading.Event()
        box: dict[str, Any] = {}
        self._jobs.put((fn, box, done))
        done.wait()
        if "error" in box:
            raise box["error"]
        return box["value"]

    def _serve(self) -> None:
        while True:
            fn, box, done = self._jobs.get()
            try:
                box["value"] = fn()
            except BaseException as exc:  # handed to the caller
                box["error"] = exc
            done.set()


_SPAWNER = _Spawner()


class _TiedSubprocess:
    """Stands in for the ``subprocess`` module inside Prefect's server module: a ``python -m
    uvicorn`` child is started through :data:`SERVER_WRAPPER` by the spawner thread; anything
    else is the real module."""

    def __getattr__(self, name: str) -> Any:
        return getattr(subprocess, name)

    def Popen(self, args: Any, *rest: Any, **kwargs: Any) -> subprocess.Popen:  # subprocess API
        cmd = list(args) if isinstance(args, list | tuple) else None
        if rest or cmd is None or cmd[1:3] != ["-m", "uvicorn"]:
            return subprocess.Popen(args, *rest, **kwargs)
        env = dict(kwargs.pop("env", None) or os.environ)
        env[PARENT_ENV] = str(os.getpid())
        tied = [cmd[0], "-c", SERVER_WRAPPER, *cmd[3:]]
        return _SPAWNER.call(lambda: subprocess.Popen(tied, env=env, **kwargs))


def _tie(module: ModuleType) -> None:
    if sys.platform.startswith("linux") and not isinstance(getattr(module, "subprocess", None), _TiedSubprocess):
        module.__dict__["subprocess"] = _TiedSubprocess()  # the module's global, as its code sees it


@runtime_checkable
class _ExecLoader(Protocol):
    """A loader with ``exec_module`` (PEP 451), which the finder below wraps."""

    exec_module: Callable[[ModuleType], None]


class _TieOnImport(importlib.abc.MetaPathFinder):
    """Ties Prefect's server module when (if ever) it is imported: importing it up front costs
    ~1.2 s, and a run against a real server (PREFECT_API_URL) never needs it."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != SERVER_MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        loader = getattr(spec, "loader", None)
        if not isinstance(loader, _ExecLoader):
            return spec
        exec_module = loader.exec_module

        def exec_and_tie(module: ModuleType) -> None:
            exec_module(module)
            _tie(module)

        loader.exec_module = exec_and_tie
        return spec


def tie_ephemeral_server() -> None:
    """From now on, an ephemeral Prefect API server started by this process is stopped by the
    kernel when this process dies, however it dies (Linux; elsewhere Prefect's own exit hook
    is all there is)."""
    if not sys.platform.startswith("linux"):
        return
    module = sys.modules.get(SERVER_MODULE)
    if module is not None:
        _tie(module)
    elif not any(isinstance(f, _TieOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _TieOnImport())
