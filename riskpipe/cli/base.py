"""The ``riskpipe`` command's shared parts: the app and its global options, the data home,
settings, date options, the step-progress runner and ``main`` (one-line errors).

The command line is thin: parse options, build settings, call the library or a flow. Heavy
imports (polars, prefect, scikit-learn) happen inside commands so ``--help`` is instant. Every failure ends as a one-line message and a non-zero exit status (``--debug`` shows the
traceback).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar, overload

import typer
from rich.console import Console

from riskpipe.errors import RiskpipeError

if TYPE_CHECKING:  # config imports pydantic: not at start-up, so that --help stays instant
    from riskpipe.config import Settings

T = TypeVar("T")


class TaskRunner(StrEnum):
    """Where the nightly scoring shards run (``--task-runner``)."""

    LOCAL = "local"
    DASK = "dask"


class Role(StrEnum):
    """A workbench user's role (``riskpipe.users.ROLES``)."""

    ANALYST = "analyst"
    SUPERVISOR = "supervisor"


#: commands that may be given a data home that does not exist yet: they create it
HOME_CREATING_COMMANDS = ("demo", "generate")

app = typer.Typer(
    name="riskpipe",
    help="Risk-scoring of low-value shipments: ingest manifests, build indicators, score, rank "
    "under exam capacity, publish targeting lists, learn from exam outcomes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

console = Console()
err_console = Console(stderr=True)


class _State:
    home: Path = Path("data")
    debug: bool = False


state = _State()


def _show_version(value: bool) -> None:
    if not value:
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        number = version("riskpipe")
    except PackageNotFoundError:  # run from a source tree that was never installed
        from riskpipe import __version__ as number
    console.print(f"riskpipe {number}", highlight=False)
    raise typer.Exit()


@app.callback()
def _global(
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            help="Data home (default ./data, or $RISKPIPE_HOME). Must exist, except for "
            "demo and generate, which create it.",
            show_default=False,
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=_show_version, is_eager=True)
    ] = False,
) -> None:
    state.home = home or Path(os.environ.get("RISKPIPE_HOME", "data"))
    state.debug = debug


def require_home(create: bool = False) -> Path:
    """The data home; a home that does not exist is created only by the commands that make
    homes (``create``), so a mistyped --home fails at once and leaves nothing behind."""
    home = state.home
    if create:
        home.mkdir(parents=True, exist_ok=True)
    else:
        from riskpipe.preflight import check_home

        check_home(home)
    return home


def settings(create: bool = False, **overrides: object) -> Settings:
    """Settings for the current home: defaults, ``riskpipe.toml`` there, ``RISKPIPE_``
    environment variables, then ``overrides``. The home must exist unless ``create``."""
    from riskpipe.config import load_settings
    from riskpipe.prefect_env import configure_prefect

    require_home(create)
    loaded = load_settings(state.home, overrides, environ=os.environ)  # checked before Prefect is set up
    configure_prefect(state.home)
    return loaded


@overload
def parse_day(value: str, option: str) -> date: ...
@overload
def parse_day(value: None, option: str) -> None: ...
@overload
def parse_day(value: str | None, option: str) -> date | None: ...


def parse_day(value: str | None, option: str) -> date | None:
    """A ``YYYY-MM-DD`` option as a date, or a one-line error (``--date 2026-02-30``)."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        if len(value) == 10 and value[4] == "-" and value[7] == "-" and value.replace("-", "").isdigit():
            raise RiskpipeError(f"{option}: {value!r} is not a date ({exc})") from None
        raise RiskpipeError(f"{option}: {value!r} is not a date YYYY-MM-DD") from None


def _checked_settings(check: Callable[[Settings], object]) -> Settings:
    """The home's settings after ``check(settings)``, read without touching Prefect (no
    ``.prefect`` folder, no database) so that a call that cannot succeed costs nothing."""
    from riskpipe.config import load_settings
    from riskpipe.preflight import check_home

    check_home(state.home)
    cfg = load_settings(state.home, environ=os.environ)
    check(cfg)
    return cfg


@overload
def _run_with_steps(run: Callable[[], T], catch: None = None) -> tuple[T, bool]: ...
@overload
def _run_with_steps(run: Callable[[], T], catch: type[BaseException]) -> tuple[T | None, bool]: ...


def _run_with_steps(run: Callable[[], T], catch: type[BaseException] | None = None) -> tuple[T | None, bool]:
    """``run()`` with a progress row per step on stderr; after success one line of step times
    and where to see the run. Returns (result, False), or (the exception's ``result``, True) for
    an exception of type ``catch``."""
    from riskpipe.progress import StepBars
    from riskpipe.runsteps import watching

    bars = StepBars(err_console)
    failed = False
    result: T | None
    with bars, watching(bars):
        try:
            result = run()
        except BaseException as exc:
            if catch is None or not isinstance(exc, catch):
                if bars.run_name and isinstance(exc, Exception):  # the error line follows (main)
                    err_console.print(_where_to_see(bars.run_name, bars.run_id), highlight=False, soft_wrap=True)
                raise
            result, failed = getattr(exc, "result", None), True
    if bars.finished:
        err_console.print(bars.summary(), highlight=False, soft_wrap=True)
    if bars.run_name:
        err_console.print(_where_to_see(bars.run_name, bars.run_id), highlight=False, soft_wrap=True)
    return result, failed


def _where_to_see(run_name: str, run_id: str | None) -> str:
    """The run's page on a Prefect server, or (an ephemeral run: its API ended with the command)
    how to browse the home's runs."""
    api_url = os.environ.get("PREFECT_API_URL")
    if api_url and run_id:
        from flows.deploy import ui_url

        return f"Prefect run {run_name}: {ui_url(api_url)}/runs/flow-run/{run_id}"
    prefect_home = (state.home / ".prefect").resolve()
    return (
        f"Prefect run {run_name} is recorded in {prefect_home}; to browse runs and their logs: "
        f"PREFECT_HOME={prefect_home} prefect server start (or `riskpipe schedule`)"
    )


def main() -> None:
    """Entry point: usage errors are reported by typer; everything else as one line."""
    try:
        app()  # standalone mode: prints usage errors itself and exits
    except (RiskpipeError, ValueError, FileNotFoundError, PermissionError) as exc:
        if state.debug:
            raise
        err_console.print(f"[red]error:[/red] {_one_line(exc)}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("[red]interrupted[/red]")
        sys.exit(130)
    except Exception as exc:  # last resort: still one line
        if state.debug:
            raise
        from riskpipe.runsteps import failed_step

        where = failed_step(exc)  # e.g. a run's timeout cancelled one of its steps
        step = f" in {where[0]} step '{where[1]}'" if where else ""
        err_console.print(
            f"[red]error:[/red] {type(exc).__name__}{step}: {_one_line(exc)} (rerun with --debug for the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(1)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())
