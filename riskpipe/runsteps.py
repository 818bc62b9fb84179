"""Step boundaries of a run (a night, a retraining), for whoever watches: the CLI draws a
progress row per step from them, the failure hook names the failing step.

The flows (and :func:`riskpipe.retrain.retrain`) call :func:`run_step` around each step, or
:class:`Steps` for straight-line code; listeners registered with :func:`watching` receive a
:class:`StepEvent` when a step starts, reports progress and ends. Events are process-local and
in memory: a run in another process (a scheduled run) has no listener and pays nothing. No
console I/O here: rendering is the CLI's (:class:`riskpipe.progress.StepBars`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, ParamSpec, TypeVar

from riskpipe.errors import RiskpipeError

EventKind = Literal["run", "start", "progress", "done", "failed"]
#: the longest error text a step failure carries (it goes into notifications and one-line errors)
MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class StepEvent:
    """``kind`` "run": a flow run started (``step`` is its run name, ``detail`` its id);
    "start" / "done" / "failed": a step's boundaries (``seconds`` taken, ``detail`` the one-line
    error of a failure); "progress": ``done`` of ``total`` units of the step."""

    flow: str
    step: str
    kind: EventKind
    done: int | None = None
    total: int | None = None
    seconds: float | None = None
    detail: str | None = None


class StepFailed(RiskpipeError):
    """A step of a run failed: names the flow, the step and the one-line error."""

    def __init__(self, flow: str, step: str, error: str) -> None:
        super().__init__(f"{flow} step '{step}' failed: {error}")
        self.flow, self.step, self.error = flow, step, error

    def __reduce__(self) -> tuple[type[StepFailed], tuple[str, str, str]]:
        """Pickled across processes (Dask, Prefect results) with its fields."""
        return (type(self), (self.flow, self.step, self.error))


def one_line(exc: BaseException, limit: int = MAX_ERROR_CHARS) -> str:
    """The exception's message on one line (its type name if it has none), at most ``limit``
    characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


Listener = Callable[[StepEvent], None]
_listeners: list[Listener] = []
_active: dict[str, str] = {}  # running step -> its flow (progress reported by name)
_lock = threading.Lock()
#: attribute naming the (flow, step) a cancellation or interrupt escaped from (any exception type)
STEP_ATTR = "riskpipe_step"
P = ParamSpec("P")
T = TypeVar("T")


@contextmanager
def watching(listener: Listener) -> Iterator[None]:
    """Send this process's step events to ``listener`` while in the block."""
    with _lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(listener)


def emit(event: StepEvent) -> None:
    """Hand ``event`` to the listeners; a listener that fails never fails the run."""
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        try:
            listener(event)
        except Exception:  # a display problem must not fail a night
            continue


def run_started(flow: str, name: str | None, run_id: str | None = None) -> None:
    """A flow run of ``flow`` named ``name`` started (the CLI prints where to see it)."""
    emit(StepEvent(flow, name or flow, "run", detail=run_id))


def run_step(flow: str, step: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` as step ``step`` of ``flow``: its start and end are announced, and
    an exception becomes :class:`StepFailed` naming the step (the original is its cause)."""
    emit(StepEvent(flow, step, "start"))
    with _lock:
        _active[step] = flow
    t0 = time.perf_counter()
    try:
        value = fn(*args, **kwargs)
    except BaseException as exc:
        error = exc.error if isinstance(exc, StepFailed) else one_line(exc)
        emit(StepEvent(flow, step, "failed", seconds=time.perf_counter() - t0, detail=error))
        if isinstance(exc, Exception) and not isinstance(exc, StepFailed):
            raise StepFailed(flow, step, error) from exc
        if not isinstance(exc, StepFailed):  # a cancellation (timeout), an interrupt: marked
            try:
                setattr(exc, STEP_ATTR, (flow, step))
            except AttributeError:
                pass
        raise
    finally:
        with _lock:
            _active.pop(step, None)
    emit(StepEvent(flow, step, "done", seconds=time.perf_counter() - t0))
    return value


def failed_step(exc: BaseException | None) -> tuple[str, str] | None:
    """(flow, step) of the step an exception escaped from, searched along its causes: a step's
    own failure (:class:`StepFailed`) or a timeout or interrupt that cancelled it."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, StepFailed):
            return exc.flow, exc.step
        marked = getattr(exc, STEP_ATTR, None)
        if marked:
            return marked
        exc = exc.__cause__ or exc.__context__
    return None


def progress_for(step: str) -> Callable[[int, int], None] | None:
    """A ``progress(done, total)`` callback reporting on the running step ``step``, or None when
    nobody listens (the library then skips its progress bookkeeping)."""
    with _lock:
        if not _listeners:
            return None
        flow = _active.get(step, "")

    def report(done: int, total: int) -> None:
        emit(StepEvent(flow, step, "progress", done=done, total=total))

    return report


class Steps:
    """Step boundaries in straight-line code: ``steps.next("fit")`` ends the running step and
    starts the next, ``steps.end()`` ends the last. A step left running when an exception
    escapes is reported failed by the listener's owner (the CLI), which sees the exception."""

    def __init__(self, flow: str) -> None:
        self.flow = flow
        self._step: str | None = None
        self._t0 = 0.0

    def next(self, step: str) -> None:
        self.end()
        self._step, self._t0 = step, time.perf_counter()
        emit(StepEvent(self.flow, step, "start"))

    def end(self) -> None:
        if self._step is not None:
            emit(StepEvent(self.flow, self._step, "done", seconds=time.perf_counter() - self._t0))
            self._step = None
