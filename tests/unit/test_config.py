from __future__ import annotations

import pytest

from riskpipe.config import DEFAULT_PORT_CAPACITY, Settings, check_cron, load_settings
from riskpipe.errors import RiskpipeError


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
    with pytest.raises(RiskpipeError, match="riskpipe.toml: not valid TOML"):
        load_settings(tmp_path)
    (tmp_path / "riskpipe.toml").write_text("explorashun = 0.2\n")
    with pytest.raises(RiskpipeError, match="explorashun"):
        load_settings(tmp_path)


# ---------------------------------------------------------------------------------------------
# settings that tell the truth (issue 15): environment over file over defaults, one-line errors
# naming the file or variable and the key, time zones, cron strings and paths checked at load
# ---------------------------------------------------------------------------------------------
def _toml(home, text: str):
    (home / "riskpipe.toml").write_text(text)
    return home / "riskpipe.toml"


def test_environment_overrides_the_file_which_overrides_the_defaults(tmp_path):
    _toml(tmp_path, 'exploration_share = 0.2\ntimezone = "America/Chicago"\n[port_capacity]\n"4701" = 80\n')
    env = {
        "RISKPIPE_EXPLORATION_SHARE": "0.3",
        "RISKPIPE_DATABASE_URL": "sqlite:////tmp/x.db",
        "RISKPIPE_PORT_CAPACITY": '{"2720": 7}',
        "RISKPIPE_HOME": "/elsewhere",
        "PATH": "/bin",
    }
    s = load_settings(tmp_path, environ=env)
    assert s.exploration_share == 0.3 and s.db_url == "sqlite:////tmp/x.db"
    assert s.timezone == "America/Chicago"  # from the file: no variable for it
    assert s.port_capacity["4701"] == 80 and s.port_capacity["2720"] == 7  # file and env tables merge
    assert s.port_capacity["4196"] == DEFAULT_PORT_CAPACITY["4196"]
    assert s.home == tmp_path  # RISKPIPE_HOME is the CLI's --home, not a setting
    # explicit overrides beat the environment
    assert load_settings(tmp_path, {"exploration_share": 0.05}, environ=env).exploration_share == 0.05


def test_library_callers_never_read_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("RISKPIPE_EXPLORATION_SHARE", "0.9")
    monkeypatch.setenv("RISKPIPE_TIMEZONE", "Mars/Base")
    assert load_settings(tmp_path).exploration_share == 0.10
    assert Settings(home=tmp_path).exploration_share == 0.10
    assert load_settings(tmp_path, environ={}).timezone == "UTC"


def test_mistyped_key_names_the_file_and_the_closest_key(tmp_path):
    path = _toml(tmp_path, "exploraton_share = 0.2\n")
    with pytest.raises(RiskpipeError) as err:
        load_settings(tmp_path)
    assert str(err.value) == f"{path}: unknown setting 'exploraton_share' (did you mean 'exploration_share'?)"
    _toml(tmp_path, '[capacity]\n"4701" = 3\n')
    with pytest.raises(RiskpipeError, match="unknown setting 'capacity' \\(did you mean 'port_capacity'\\?\\)"):
        load_settings(tmp_path)
    _toml(tmp_path, 'home = "/srv/other"\n')
    with pytest.raises(RiskpipeError, match="'home' cannot be set"):
        load_settings(tmp_path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("exploration_share = 1.5\n", "exploration_share: must be <= 1 (got 1.5)"),
        ("exploration_share = -0.1\n", "exploration_share: must be >= 0 (got -0.1)"),
        ('exploration_share = "lots"\n', "exploration_share: must be a number (got 'lots')"),
        ('[port_capacity]\n"4701" = "many"\n', "port_capacity.4701: must be a whole number (got 'many')"),
        ('[port_capacity]\n"4701" = -3\n', "port_capacity: exams per day must be >= 0 (port 4701)"),
        ("port_capacity = 5\n", "port_capacity: must be a table of port code = exams per day (got 5)"),
        ('timezone = "Mars/Base"\n', "timezone: not a known time zone"),
        ('nightly_cron = "61 2 * * *"\n', "nightly_cron: minute field '61' is outside 0-59 (got '61 2 * * *')"),
        ('retrain_cron = "0 4 * *"\n', "retrain_cron: a cron string has 5 fields"),
        ('rules_path = "no-such-rules.toml"\n', "rules_path: no such file"),
        ('fx_rates_path = "."\n', "fx_rates_path: not a file"),
        ('registry_key_path = "no-such-dir/registry.key"\n', "registry_key_path: no such file, and no folder"),
        ("database_url = 5\n", "database_url: must be text (got <hidden>)"),
    ],
)
def test_bad_values_name_the_file_and_the_key_in_one_line(tmp_path, text, expected):
    path = _toml(tmp_path, text)
    with pytest.raises(RiskpipeError) as err:
        load_settings(tmp_path)
    message = str(err.value)
    assert message.startswith(f"{path}: {expected}") and "\n" not in message
    assert "validation error" not in message and "pydantic" not in message


def test_bad_environment_values_name_the_variable(tmp_path):
    with pytest.raises(RiskpipeError) as err:
        load_settings(tmp_path, environ={"RISKPIPE_EXPLORATION_SHARE": "1.5"})
    assert (
        str(err.value) == "environment variable RISKPIPE_EXPLORATION_SHARE: exploration_share: must be <= 1 (got '1.5')"
    )
    with pytest.raises(RiskpipeError, match="^environment variable RISKPIPE_TIMEZONE: timezone: not a known time zone"):
        load_settings(tmp_path, environ={"RISKPIPE_TIMEZONE": "Mars/Base"})
    with pytest.raises(RiskpipeError, match="^environment variable RISKPIPE_PORT_CAPACITY: port_capacity: not a JSON"):
        load_settings(tmp_path, environ={"RISKPIPE_PORT_CAPACITY": "{4701: 80}"})
    with pytest.raises(
        RiskpipeError,
        match="^environment variable RISKPIPE_EXPLORATON_SHARE: unknown setting "
        "'exploraton_share' \\(did you mean 'exploration_share'\\?\\)",
    ):
        load_settings(tmp_path, environ={"RISKPIPE_EXPLORATON_SHARE": "0.2"})
    with pytest.raises(RiskpipeError) as err:  # a secret is never echoed
        load_settings(tmp_path, environ={"RISKPIPE_DATABASE_URL": "postgresql://u:s3cret@h/db", "RISKPIPE_SEED": "x"})
    assert "RISKPIPE_SEED" in str(err.value) and "s3cret" not in str(err.value)
    # a RISKPIPE_ variable far from any setting may be another tool's: left alone
    assert load_settings(tmp_path, environ={"RISKPIPE_PREFECT_PARENT_PID": "1", "RISKPIPE_CI_POSTGRES": "x"}).seed == 7


def test_paths_are_checked_and_relative_to_the_home(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path.parent)  # a relative path in the file does not depend on the cwd
    (tmp_path / "rules.toml").write_text("")
    (tmp_path / "keys").mkdir()
    _toml(tmp_path, 'rules_path = "rules.toml"\nregistry_key_path = "keys/registry.key"\n')
    s = load_settings(tmp_path)
    assert s.rules_path == tmp_path / "rules.toml" and s.registry_key_path == tmp_path / "keys" / "registry.key"
    (tmp_path / "models").mkdir()
    _toml(tmp_path, 'registry_key_path = "models/registry.key"\n')
    with pytest.raises(RiskpipeError, match="registry_key_path: .* is inside the model registry"):
        load_settings(tmp_path)


def test_timezones_and_crons_that_load_are_accepted_by_prefect(tmp_path):
    """What the cron check accepts, Prefect's cron schedules accept (no cron string that loads
    and then fails when `riskpipe schedule` builds its deployments)."""
    from prefect.client.schemas.schedules import CronSchedule

    good = [
        "0 2 * * *",
        "*/15 * * * *",
        "0 2 * * mon-fri",
        "30 5 * * 1",
        "0 0 1 jan,jul *",
        "0 4 * * 0,7",
        "@daily",
        "0 0-23/6 1-15 * *",
    ]
    for cron in good:
        check_cron(cron)
        CronSchedule(cron=cron, timezone="America/Chicago")
    for cron in ["0 2 * * 8", "0 H * * *", "0 2 * *", "*/0 * * * *", "5-1 * * * *", "0 2 * * * *", "x"]:
        with pytest.raises(ValueError):
            check_cron(cron)
    _toml(tmp_path, 'timezone = "America/Chicago"\nnightly_cron = "15 1 * * mon-fri"\n')
    s = load_settings(tmp_path)
    assert (s.timezone, s.nightly_cron) == ("America/Chicago", "15 1 * * mon-fri")
