"""Flow runs read the home's settings the way the CLI does: ``RISKPIPE_`` variables override
riskpipe.toml (a served deployment runs flows without the CLI)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.settings import home_settings


def test_flow_settings_apply_the_environment_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "riskpipe.toml").write_text('exploration_share = 0.05\ntimezone = "America/Chicago"\n')
    monkeypatch.setenv("RISKPIPE_EXPLORATION_SHARE", "0.2")
    settings = home_settings(tmp_path)
    assert settings.exploration_share == 0.2
    assert settings.timezone == "America/Chicago"


def test_every_flow_reads_settings_through_the_environment_aware_loader() -> None:
    flows_dir = Path(__file__).resolve().parents[2] / "flows"
    offenders = [
        p.name for p in flows_dir.glob("*.py") if p.name != "settings.py" and "load_settings(" in p.read_text()
    ]
    assert offenders == []
