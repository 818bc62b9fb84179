"""A warm process for the served nightly: Prefect's start paid before the cut-off, not after it.

``riskpipe schedule`` serves the deployments with a Prefect ``Runner``, which runs each flow run
in a fresh ``spawn`` process (``prefect.flow_engine.run_flow_in_subprocess``): a new interpreter
that imports Prefect, Polars, scikit-learn and riskpipe (3-5 s on a busy 2-core machine) after the
run was triggered. With :class:`WarmPool` installed the runner hands a nightly run to a process
spawned *before* it was triggered, which has already imported all of that and set up Prefect's
settings against the served API; it runs exactly what the runner would have run in its fresh
process (the same serialized call, the same exit-code and kill semantics: the runner still
holds a real ``SpawnProcess``), then exits. The next warm process is spawned once that run has
ended, so its imports never compete with a night for the two cores.

How: the runner's ``DirectSubprocessStarter`` calls the module-level ``run_flow_in_subprocess``
(Prefect documents patching it); our wrapper takes a ready warm process for the flows named in
``flows`` and lets Prefect build the call as usual, but with a ``multiprocessing`` context whose
``Process(...)`` is that warm process: ``start()`` sends it the target and its arguments over a
pipe instead of starting an interpreter. Any other flow (retrain, ingest-landed), or a nightly
with no warm process alive, is started the original way.

Each hand-off is recorded (:attr:`WarmPool.handoffs`): the process id, when the process became
ready, and, once the run is over, whether Prefect's server module was imported in it (it never
is when runs go to the served API: no ephemeral server is started per run).
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

#: flows whose runs get a warm process (the others keep Prefect's fresh process)
WARM_FLOWS = ("nightly",)
#: imported by a warm process before it is ready: what a night imports, lazily included
PRELOAD = (
    "flows.nightly",
    "flows.hooks",
    "riskpipe.nightly",
    "riskpipe.publish",
    "riskpipe.lookup",
    "riskpipe.shard",
    "riskpipe.ingest",
    "sklearn.ensemble",
    "prefect.flow_engine",
    "prefect.task_engine",
    "prefect.client.orchestration",
)
SERVER_MODULE = "prefect.server.api.server"


def _warm_child(conn: Connection, env: dict[str, str], preload: tuple[str, ...]) -> None:
    """A warm process: Prefect's settings of the served API, the night's imports, then wait for
    one call (or the parent's end: EOF) and run it; report afterwards whether Prefect's server
    module was ever imported here."""
    # while idle, Ctrl-C is for the serving process: its exit (EOF on the pipe) ends this one
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.update(env)
    for name in preload:
        try:
            importlib.import_module(name)
        except ImportError:  # an optional extra (e.g. Dask) missing: imported at run time, or not at all
            pass
    from prefect.settings.context import get_current_settings

    get_current_settings()
    try:
        conn.send(("ready", time.time()))
        message = conn.recv()
    except (EOFError, OSError):  # the serving process ended
        return
    if message is None:
        return
    target, args = message
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a fresh process, once it runs
    try:
        target(*args)
    finally:
        try:
            conn.send(("done", SERVER_MODULE in sys.modules))
        except (OSError, ValueError):
            pass
        conn.close()


@dataclass
class Handoff:
    """One run handed to a warm process."""

    pid: int
    ready_at: float | None  # epoch seconds the process reported ready (None: not yet when taken)
    handed_at: float
    flow: str
    ended_at: float | None = None
    server_imported: bool | None = None  # Prefect's server module imported in that process


@dataclass
class _Warm:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    ready_at: float | None = None

    def poll_ready(self) -> float | None:
        if self.ready_at is None and self.conn.poll():
            try:
                kind, at = self.conn.recv()
            except (EOFError, OSError):
                return None
            if kind == "ready":
                self.ready_at = at
        return self.ready_at


class _HandoffContext:
    """Stands in for ``multiprocessing.get_context("spawn")`` in one ``run_flow_in_subprocess``
    call: ``Process(target, args)`` is the warm process, whose ``start()`` hands it the call."""

    def __init__(self, warm: _Warm) -> None:
        self.warm = warm

    def Process(self, target: Callable[..., Any], args: tuple = (), **_: Any) -> Any:  # multiprocessing API
        proc, conn = self.warm.process, self.warm.conn

        def start() -> None:
            conn.send((target, args))

        proc.start = start  # type: ignore[method-assign]  # already running: start() hands over the call
        return proc


class _MultiprocessingProxy:
    """``prefect.flow_engine.multiprocessing`` while the pool is installed: the real module,
    except ``get_context`` during a hand-off (a thread-local says which warm process)."""

    def __init__(self, local: threading.local) -> None:
        self._local = local

    def __getattr__(self, name: str) -> Any:
        return getattr(multiprocessing, name)

    def get_context(self, method: str | None = None) -> Any:
        warm = getattr(self._local, "warm", None)
        if warm is not None and method == "spawn":
            return _HandoffContext(warm)
        return multiprocessing.get_context(method)


class WarmPool:
    """One warm process for each flow named in ``flows``, kept ready while installed."""

    def __init__(self, flows: Iterable[str] = WARM_FLOWS, preload: tuple[str, ...] = PRELOAD) -> None:
        self.flows = tuple(flows)
        self.preload = preload
        self.handoffs: list[Handoff] = []
        self._warm: dict[str, _Warm] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        self._closed = False
        self._original: Callable[..., Any] | None = None
        self._engine_mp: Any = None
        self._env: dict[str, str] = {}

    # -- processes ---------------------------------------------------------------------------
    def _spawn(self, flow: str) -> None:
        with self._lock:
            if self._closed or flow in self._warm:
                return
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_warm_child, args=(child, self._env, self.preload), name=f"riskpipe-warm-{flow}")
        proc.start()
        child.close()
        with self._lock:
            keep = not self._closed and flow not in self._warm
            if keep:
                self._warm[flow] = _Warm(proc, parent)
        if not keep:  # closed meanwhile, or another thread warmed one first: this one ends on EOF
            parent.close()
            proc.join(timeout=10)

    def wait_ready(self, timeout_s: float = 120.0) -> dict[str, int]:
        """Block until every warm process reported ready; their process ids by flow."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                warm = dict(self._warm)
            ready = {f: w for f, w in warm.items() if w.poll_ready() is not None}
            if len(ready) == len(self.flows):
                return {f: int(w.process.pid or 0) for f, w in ready.items()}
            dead = [f for f, w in warm.items() if not w.process.is_alive()]
            if dead:
                raise RuntimeError(f"warm process for {', '.join(dead)} exited before it was ready")
            if time.monotonic() > deadline:
                raise TimeoutError(f"warm processes not ready after {timeout_s:.0f} s")
            time.sleep(0.1)

    def _take(self, flow: str) -> _Warm | None:
        with self._lock:
            warm = self._warm.pop(flow, None)
        if warm is None or not warm.process.is_alive():
            if warm is not None:
                warm.conn.close()
            return None
        warm.poll_ready()
        return warm

    def _after(self, flow: str, warm: _Warm, record: Handoff) -> None:
        """When the handed-off run ends: read its report, then spawn the next warm process. (The
        runner joins the process; this only waits for its end, never reaps it.)"""
        try:
            while True:  # the "ready" message if not read yet, then "done"; EOF when the process ends
                kind, value = warm.conn.recv()
                if kind == "ready":
                    record.ready_at = record.ready_at or value
                elif kind == "done":
                    record.server_imported = bool(value)
        except (EOFError, OSError):
            pass
        wait([warm.process.sentinel])
        record.ended_at = time.time()
        warm.conn.close()
        self._spawn(flow)

    def _spawn_after(self, flow: str, process: Any) -> None:
        """Warm the next process once ``process`` (a run started the usual way) has ended."""
        wait([process.sentinel])
        self._spawn(flow)

    # -- the patch ---------------------------------------------------------------------------
    def _run_flow_in_subprocess(self, flow: Any, *args: Any, **kwargs: Any) -> Any:
        assert self._original is not None
        name = getattr(flow, "name", None)
        if name not in self.flows or self._closed:
            return self._original(flow, *args, **kwargs)
        warm = self._take(name)
        if warm is None:  # none alive (died while idle; or two nights at once): a fresh process
            process = self._original(flow, *args, **kwargs)
            threading.Thread(target=self._spawn_after, args=(str(name), process), daemon=True).start()
            return process
        self._local.warm = warm
        try:
            process = self._original(flow, *args, **kwargs)
        finally:
            self._local.warm = None
        record = Handoff(int(process.pid or 0), warm.ready_at, time.time(), str(name))
        self.handoffs.append(record)
        threading.Thread(target=self._after, args=(str(name), warm, record), daemon=True).start()
        return process

    def __enter__(self) -> WarmPool:
        import prefect.flow_engine as engine
        from prefect.runner import _starter_direct
        from prefect.settings.context import get_current_settings

        # the settings of this context (the served API), which threads started later do not see
        self._env = {k: str(v) for k, v in get_current_settings().to_environment_variables(exclude_unset=True).items()}
        self._original = _starter_direct.run_flow_in_subprocess
        self._engine_mp = engine.multiprocessing
        engine.multiprocessing = _MultiprocessingProxy(self._local)  # type: ignore[assignment]
        _starter_direct.run_flow_in_subprocess = self._run_flow_in_subprocess
        for flow in self.flows:
            self._spawn(flow)
        return self

    def __exit__(self, *exc: object) -> None:
        import prefect.flow_engine as engine
        from prefect.runner import _starter_direct

        with self._lock:
            self._closed = True
            idle = list(self._warm.values())
            self._warm.clear()
        for warm in idle:  # an idle process ends on EOF
            warm.conn.close()
            warm.process.join(timeout=15)
            if warm.process.is_alive():
                warm.process.terminate()
        _starter_direct.run_flow_in_subprocess = self._original  # type: ignore[assignment]
        engine.multiprocessing = self._engine_mp
