from __future__ import annotations

import pytest

from riskpipe.config import DEFAULT_PORT_CAPACITY, load_settings


def test_defaults_without_file(tmp_path):
    s = load_settings(tmp_path)
    assert s.exploration_share == 0.10
    assert s.port_capacity == DEFAULT_PORT_CAPACITY
    assert s.models_dir == tmp_path / "models"
    assert s.db_url.startswith("sqlite:///") and s.db_url.endswith("riskpipe.db")


def test_toml_overrides_and_partial_capacity_table(tmp_path):
    (tmp_path / "riskpipe.toml").write_text('exploration_share = 0.2\n[port_capacity]\n"4701" = 80\n"9999" = 5\n')
    s = load_settings(tmp_path)
    assert s.exploration_share == 0.2
    assert s.port_capacity["4701"] == 80 and s.port_capacity["9999"] == 5
    assert s.port_capacity["2720"] == DEFAULT_PORT_CAPACITY["2720"]


def test_bad_toml_and_unknown_key_are_clear_errors(tmp_path):
    (tmp_path / "riskpipe.toml").write_text("exploration_share = \n")
    with pytest.raises(ValueError, match="riskpipe.toml: not valid TOML"):
        load_settings(tmp_path)
    (tmp_path / "riskpipe.toml").write_text("explorashun = 0.2\n")
    with pytest.raises(ValueError, match="explorashun"):
        load_settings(tmp_path)
