"""Rich progress bars for long steps, as callbacks the library accepts (``progress(done, total)``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

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
