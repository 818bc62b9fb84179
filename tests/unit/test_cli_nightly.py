"""``riskpipe nightly`` and a night without a usable champion: a warning line always, exit
status 1 unless ``--allow-rules-only`` (the flow and the pre-flight checks are replaced by
stand-ins here; the flow's own behaviour is tested in tests/flows/test_nightly_flow.py, the
pre-flight checks in tests/unit/test_preflight.py)."""

from __future__ import annotations

import sys

import pytest

from riskpipe import cli
from riskpipe.cli import base, run
from riskpipe.nightly import RulesOnlyNight

PROBLEM = "no champion model has been registered in data/models yet: run `riskpipe retrain`"


def _result(problem: str | None) -> dict:
    return {"summary": {"model_version": "rules-only" if problem else "m1", "champion_problem": problem}, "outputs": {}}


def _run(monkeypatch, tmp_path, capsys, flow, *flags: str) -> tuple[int, str, dict]:
    import flows.nightly
    from riskpipe import preflight
    from riskpipe.config import load_settings

    seen: dict = {}

    def fake_flow(home, day, **kwargs):
        seen.update(kwargs)
        return flow(kwargs)

    def with_task_runner(*args, **kwargs):
        seen["runner"] = kwargs
        return fake_flow

    monkeypatch.setattr(flows.nightly, "with_task_runner", with_task_runner)
    monkeypatch.setattr(preflight, "check_nightly", lambda *a, **k: seen.setdefault("preflight", k))
    monkeypatch.setenv("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")  # restored after the test
    monkeypatch.setattr(run, "settings", lambda **o: load_settings(base.state.home, o))  # no Prefect env
    monkeypatch.setattr(run, "_print_night", lambda home, day, night, n=15: seen.setdefault("printed", night))
    monkeypatch.setattr(
        sys, "argv", ["riskpipe", "--home", str(tmp_path), "nightly", "--date", "2026-01-14", "--skip-ingest", *flags]
    )
    with pytest.raises(SystemExit) as done:
        cli.main()
    return done.value.code or 0, capsys.readouterr().err, seen


def test_a_night_with_a_champion_exits_0_quietly(monkeypatch, tmp_path, capsys):
    (tmp_path / "riskpipe.toml").write_text("nightly_timeout_seconds = 900\n")
    code, err, seen = _run(monkeypatch, tmp_path, capsys, lambda kw: _result(None))
    assert code == 0 and "warning" not in err and seen["allow_rules_only"] is False and "printed" in seen
    assert seen["runner"]["timeout_seconds"] == 900  # the home's flow timeout
    assert seen["preflight"] == {"ingest": False, "allow_rules_only": False}


def test_a_rules_only_night_warns_and_exits_1(monkeypatch, tmp_path, capsys):
    def flow(kw):
        raise RulesOnlyNight("nightly 2026-01-14: no usable champion model", _result(PROBLEM))

    code, err, seen = _run(monkeypatch, tmp_path, capsys, flow)
    assert code == 1
    assert "warning: rules-only night 2026-01-14" in err and "no champion model has been registered" in err
    assert "error: nightly 2026-01-14: published a rules-only night; pass --allow-rules-only" in err
    assert seen["printed"]["summary"]["champion_problem"] == PROBLEM  # the published night is still shown


def test_allow_rules_only_exits_0_but_still_warns(monkeypatch, tmp_path, capsys):
    code, err, seen = _run(monkeypatch, tmp_path, capsys, lambda kw: _result(PROBLEM), "--allow-rules-only")
    assert code == 0 and seen["allow_rules_only"] is True
    assert "warning: rules-only night 2026-01-14" in err and "error" not in err


def test_the_dask_runner_spreads_the_whole_night_and_local_does_not(monkeypatch, tmp_path, capsys):
    code, _, seen = _run(monkeypatch, tmp_path, capsys, lambda kw: _result(None), "--task-runner", "dask")
    assert code == 0 and seen["distributed"] is True and seen["shards"] == 4
    code, _, seen = _run(monkeypatch, tmp_path, capsys, lambda kw: _result(None), "--shards", "3")
    assert code == 0 and seen["distributed"] is False and seen["shards"] == 3
