"""``riskpipe serve --workers N``: uvicorn worker processes, each building the workbench of the
home with the factory (an app object cannot be handed to several processes)."""

from __future__ import annotations

import io
import sys

import pytest

from riskpipe import cli
from riskpipe.cli import run as cli_run
from riskpipe.users import UserStore
from riskpipe.web import serving


def _serve(monkeypatch, capsys, home, *args: str) -> dict:
    import uvicorn

    import riskpipe.prefect_env

    calls: list[tuple[tuple, dict]] = []
    monkeypatch.setattr(riskpipe.prefect_env, "configure_prefect", lambda home, environ=None: None)
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: calls.append((a, kw)))
    monkeypatch.setattr(sys, "argv", ["riskpipe", "--home", str(home), "serve", *args])
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    monkeypatch.setenv("RISKPIPE_HOME", str(home))  # serve sets it for its workers: restored after the test
    with pytest.raises(SystemExit) as done:
        cli.main()
    capsys.readouterr()
    assert (done.value.code or 0) == 0 and len(calls) == 1
    (target,), kw = calls[0]
    return {"target": target, **kw}


def test_serve_starts_n_worker_processes_from_the_factory(monkeypatch, capsys, tmp_path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    call = _serve(monkeypatch, capsys, home, "--workers", "3")
    assert call["target"] == "riskpipe.cli.run:workbench_app" and call["factory"] is True and call["workers"] == 3
    assert call["host"] == "127.0.0.1" and call["access_log"] is False
    # what a worker process does: the workbench of the home serve named
    app = cli_run.workbench_app()
    assert app.state.settings.home.resolve() == home.resolve()
    UserStore(app.state.settings.db_url)  # the database was made ready before the workers started
    assert (home / ".web_secret").exists()


def test_serve_default_workers_fit_the_machine(monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.setattr(serving.os, "cpu_count", lambda: 16)
    assert serving.default_workers() == 4
    monkeypatch.setattr(serving.os, "cpu_count", lambda: None)
    assert serving.default_workers() == 1
    monkeypatch.setattr(serving.os, "cpu_count", lambda: 2)
    assert serving.default_workers() == 2  # this machine: 2 workers measured better (see the docstring)
    monkeypatch.setattr(serving.os, "cpu_count", lambda: 3)
    home = tmp_path / "home"
    home.mkdir()
    assert _serve(monkeypatch, capsys, home)["workers"] == 3
