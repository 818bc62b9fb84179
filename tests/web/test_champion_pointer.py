"""The health page reads the champion's metadata through the registry's own version-name check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from riskpipe.config import Settings
from riskpipe.web.data import WorkbenchData


@pytest.mark.parametrize("version", ["../outside", "..", "/etc", "a/b", "v1\\..\\x"])
def test_a_champion_pointer_outside_the_registry_is_no_model(tmp_path: Path, version: str) -> None:
    models = tmp_path / "home" / "models"
    models.mkdir(parents=True)
    outside = tmp_path / "home" / "outside"
    outside.mkdir()
    (outside / "meta.json").write_text(json.dumps({"secret": "read through ../"}))
    (models / "champion.json").write_text(json.dumps({"version": version}))
    data = WorkbenchData(Settings(home=tmp_path / "home"))
    assert data.champion() is None


def test_a_plain_champion_version_is_read(tmp_path: Path) -> None:
    models = tmp_path / "home" / "models"
    (models / "m1").mkdir(parents=True)
    (models / "m1" / "meta.json").write_text(json.dumps({"feature_columns": ["a"]}))
    (models / "champion.json").write_text(json.dumps({"version": "m1"}))
    data = WorkbenchData(Settings(home=tmp_path / "home"))
    assert data.champion() == {"version": "m1", "meta": {"feature_columns": ["a"]}}
