"""Rich progress bars for long steps, as callbacks the library accepts (``progress(done, total)``),
and the CLI's rows per step of a run (:class:`StepBars`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

ProgressFn = Callable[[int, int], None]


@contextmanager
def progress_bar(description: str, enabled: bool = True, console: Console | None = None) -> Iterator[ProgressFn | None]:
    """Yield a ``progress(done, total)`` callback drawing a bar on stderr, or None if disabled."""
    if not enabled:
        yield None
        return
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
        transient=False,
    )
    task_id = bar.add_task(description, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task_id, completed=done, total=total)

    with bar:
        yield update


class StepBars:
    """The CLI's view of a run's steps (a listener of :mod:`riskpipe.runsteps`): on a terminal, a
    row per step while the run goes (a bar when the step reports progress, else a pulse, and
    the time), cleared at the end; on any console, the steps' names and times for a one-line
    summary (:meth:`summary`). A failed run leaves nothing behind: its error line names the step."""

    def __init__(self, console: Console) -> None:
        from rich.progress import SpinnerColumn

        self.console = console
        self.run_name: str | None = None
        self.run_id: str | None = None
        self.finished: list[tuple[str, float]] = []
        self._rows: dict[str, Any] = {}
        self._progress = (
            Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[count]}"),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            )
            if console.is_terminal
            else None
        )

    def __enter__(self) -> StepBars:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def __call__(self, event) -> None:
        if event.kind == "run":
            self.run_name, self.run_id = event.step, event.detail
            return
        if event.kind == "done":
            self.finished.append((event.step, event.seconds or 0.0))
        if self._progress is None:
            return
        row = self._rows.get(event.step)
        if event.kind == "start" or row is None:
            row = self._rows[event.step] = self._progress.add_task(event.step, total=None, count="")
        if event.kind == "progress" and event.total:
            self._progress.update(row, completed=event.done, total=event.total, count=f"{event.done}/{event.total}")
        elif event.kind == "done":
            self._progress.update(row, total=1, completed=1, description=f"[green]{event.step}[/green]")
            self._progress.stop_task(row)
        elif event.kind == "failed":
            self._progress.update(row, description=f"[red]{event.step} failed[/red]")
            self._progress.stop_task(row)

    def summary(self) -> str:
        """``steps: a 0.1 s, b 2.3 s`` in the order they finished."""
        return "steps: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.finished)
