"""``riskpipe models list | show | promote | rollback``: the champion is marked, a model that fails
its checks is never promoted, and a rollback restores the previous champion from the audit trail
(``decisions.jsonl``) and is audited itself."""

from __future__ import annotations

import getpass
import json
import sys

import numpy as np
import polars as pl
import pytest

from riskpipe import cli
from riskpipe import schema as S
from riskpipe.cli import base
from riskpipe.registry import (
    CHAMPION_FILE,
    MODEL_FILE,
    RetrainDecision,
    champion_history,
    champion_version,
    read_decisions,
    record_decision,
    save_model,
    set_champion,
)


@pytest.fixture(scope="module")
def fitted():
    from threadpoolctl import threadpool_limits

    from riskpipe.estimator import TabularRiskClassifier
    from riskpipe.model import fit_risk_model

    rng = np.random.default_rng(0)
    n = 400
    x = rng.random(n)
    frame = pl.DataFrame(
        {S.SHIPMENT_ID: [f"s{i}" for i in range(n)], "f_x": x, S.IS_POSITIVE: (x > 0.9).astype(np.int8)}
    )
    est = TabularRiskClassifier(random_state=0, max_iter=10, min_samples_leaf=5, early_stopping=False)
    with threadpool_limits(1):
        return fit_risk_model(frame.head(300), frame.tail(100), estimator=est)


@pytest.fixture()
def home(tmp_path, fitted):
    """A home with three signed versions v1, v2, v3 (v2 the better one) and no champion yet."""
    model, meta = fitted
    home = tmp_path / "home"
    for i, version in enumerate(("v1", "v2", "v3")):
        extra = {
            "training_window": {"train_start": f"2026-01-0{i + 1}", "train_end": f"2026-01-2{i}"},
            "headline_metrics": {"labelled precision at capacity": 0.2 + 0.1 * i},
        }
        save_model(home / "models", model, {**meta, **extra}, version=version)
    return home


def run(monkeypatch, capsys, *args: str, prefect: bool = False) -> tuple[int, str, str]:
    """``riskpipe ARGS`` in this process; Prefect's environment is left alone unless ``prefect``
    (then the variables it would set are restored after the test)."""
    import riskpipe.prefect_env

    if prefect:
        for name in (
            "PREFECT_HOME",
            "PREFECT_SERVER_ANALYTICS_ENABLED",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
            "PREFECT_RESULTS_LOCAL_STORAGE_PATH",
            "PREFECT_LOGGING_LEVEL",
            "PREFECT_UI_ENABLED",
        ):
            monkeypatch.delenv(name, raising=False)
    else:
        monkeypatch.setattr(riskpipe.prefect_env, "configure_prefect", lambda home, environ=None: None)
    monkeypatch.setattr(sys, "argv", ["riskpipe", *args])
    with pytest.raises(SystemExit) as done:
        cli.main()
    out, err = capsys.readouterr()
    return done.value.code or 0, out, err


def _tamper(home, version: str) -> None:
    with open(home / "models" / version / MODEL_FILE, "ab") as fh:
        fh.write(b"\0")


def test_list_marks_the_champion_and_says_which_models_load(monkeypatch, capsys, home):
    set_champion(home / "models", "v2")
    _tamper(home, "v3")
    code, out, err = run(monkeypatch, capsys, "--home", str(home), "models", "list")
    assert code == 0, err
    rows = {line.split()[1]: line for line in out.splitlines() if line.startswith("│ v")}
    assert set(rows) == {"v1", "v2", "v3"}
    assert "*" in rows["v2"] and "*" not in rows["v1"] and "*" not in rows["v3"]
    assert "2026-01-02 .. 2026-01-21" in rows["v2"] and "0.300" in rows["v2"]
    assert " yes" in rows["v1"] and " yes" in rows["v2"]
    assert " no " in rows["v3"]
    assert "\nv3 does not load: model v3: model.skops does not match its signature" in out


def test_show_prints_the_card_and_whether_it_loads(monkeypatch, capsys, home):
    set_champion(home / "models", "v1")
    code, out, _ = run(monkeypatch, capsys, "--home", str(home), "models", "show", "v1")
    assert code == 0 and out.startswith("model v1 (the champion)\nloads: yes")
    assert "# Model card: v1" in out and "labelled precision at capacity: 0.2000" in out
    _tamper(home, "v3")
    code, out, _ = run(monkeypatch, capsys, "--home", str(home), "models", "show", "v3")
    assert code == 0 and "loads: NO: model v3: model.skops does not match its signature" in out
    code, _, err = run(monkeypatch, capsys, "--home", str(home), "models", "show", "v9")
    assert code == 1 and err.strip() == f"error: no model v9 in {home / 'models'} (see `riskpipe models list`)"


def test_promote_of_a_tampered_model_is_refused_and_changes_nothing(monkeypatch, capsys, home):
    models = home / "models"
    code, out, _ = run(monkeypatch, capsys, "--home", str(home), "models", "promote", "v1")
    assert code == 0 and champion_version(models) == "v1" and "champion is now v1 (was none)" in out
    _tamper(home, "v2")
    trail = (models / "decisions.jsonl").read_text()
    code, out, err = run(monkeypatch, capsys, "--home", str(home), "models", "promote", "v2")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: refusing to promote v2: model v2: model.skops does not match its signature")
    assert champion_version(models) == "v1" and (models / "decisions.jsonl").read_text() == trail


def test_rollback_restores_the_previous_champion_and_audits_it(monkeypatch, capsys, home):
    models = home / "models"
    # v1 promoted by a first retrain, v2 by a later retrain, v3 by an operator
    record_decision(models, RetrainDecision(True, "v1", None, "no champion yet: first model promoted"))
    set_champion(models, "v1")
    record_decision(models, RetrainDecision(False, "v3", "v1", "champion kept"))
    record_decision(models, RetrainDecision(True, "v2", "v1", "challenger better"))
    set_champion(models, "v2")
    assert run(monkeypatch, capsys, "--home", str(home), "models", "promote", "v3", "--reason", "hotfix")[0] == 0

    code, out, err = run(monkeypatch, capsys, "--home", str(home), "models", "rollback", "--reason", "v3 misfires")
    assert code == 0, err
    assert champion_version(models) == "v2" and "champion rolled back from v3 to v2" in out
    last = read_decisions(models)[-1]
    assert (last["action"], last["from_version"], last["to_version"], last["reason"]) == (
        "rollback",
        "v3",
        "v2",
        "v3 misfires",
    )
    assert last["by"] == getpass.getuser() and last["decided_at"] and last["promoted"] is True
    promotion = read_decisions(models)[-2]
    assert (promotion["action"], promotion["from_version"], promotion["to_version"], promotion["reason"]) == (
        "promote",
        "v2",
        "v3",
        "hotfix",
    )

    code, out, _ = run(monkeypatch, capsys, "--home", str(home), "models", "rollback")
    assert code == 0 and champion_version(models) == "v1" and "from v2 to v1" in out
    code, _, err = run(monkeypatch, capsys, "--home", str(home), "models", "rollback")
    assert code == 1 and champion_version(models) == "v1"
    assert (
        err.strip()
        == f"error: no previous champion to roll back to: v1 is the first champion in {models / 'decisions.jsonl'}"
    )


def test_rollback_refuses_a_broken_previous_champion_and_a_pointer_changed_by_hand(monkeypatch, capsys, home):
    models = home / "models"
    for version in ("v1", "v2"):
        assert run(monkeypatch, capsys, "--home", str(home), "models", "promote", version)[0] == 0
    _tamper(home, "v1")
    code, _, err = run(monkeypatch, capsys, "--home", str(home), "models", "rollback")
    assert code == 1 and err.startswith("error: cannot roll back to v1: model v1: model.skops does not match")
    assert champion_version(models) == "v2"
    (models / CHAMPION_FILE).write_text(json.dumps({"version": "v3"}))  # edited by hand
    code, _, err = run(monkeypatch, capsys, "--home", str(home), "models", "rollback")
    assert code == 1 and "champion.json names v3 but the audit trail" in err and "names v2" in err
    assert champion_version(models) == "v3"


def test_champion_history_follows_promotions_rollbacks_and_re_signed_models(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    records = [
        # written before the audit fields existed: no action, from or to
        {"promoted": True, "challenger_version": "a", "champion_version": None, "reason": "first"},
        {"promoted": False, "challenger_version": "x", "champion_version": "a", "reason": "kept"},
        {"promoted": True, "challenger_version": "b", "champion_version": "a", "reason": "better"},
        {
            "promoted": True,
            "challenger_version": "b2",
            "champion_version": "b",
            "metric": "none",
            "reason": "operator re-signed unsigned model b as b2 (riskpipe models trust)",
        },
        {"action": "promote", "promoted": True, "from_version": "h", "to_version": "c"},  # h: set by hand
        {"action": "rollback", "promoted": True, "from_version": "c", "to_version": "h"},
    ]
    (models / "decisions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert champion_history(models) == ["a", "b2", "h"]


def test_mistyped_home_fails_at_once_and_creates_nothing(monkeypatch, capsys, tmp_path):
    missing = tmp_path / "hom"
    for args in (
        ["models", "list"],
        ["users", "list"],
        ["nightly", "--date", "2026-01-14"],
        ["ingest"],
        ["retrain"],
        ["labels", "import", str(tmp_path)],
    ):
        code, out, err = run(monkeypatch, capsys, "--home", str(missing), *args, prefect=True)
        assert code == 1, args
        assert err.strip() == (
            f"error: data home {missing} does not exist: give --home (or RISKPIPE_HOME) an "
            "existing home, or make one with `riskpipe generate` or `riskpipe demo`"
        ), args
        assert not missing.exists() and not (missing / ".prefect").exists()
    monkeypatch.setenv("RISKPIPE_HOME", str(missing))
    assert run(monkeypatch, capsys, "models", "list")[0] == 1 and not missing.exists()
    # the commands that make homes still do
    code, _, err = run(monkeypatch, capsys, "generate", "--days", "1", "--per-day", "20")
    assert code == 0, err
    assert (missing / "landing").is_dir()


def test_version_dates_and_choices(monkeypatch, capsys, tmp_path):
    code, out, _ = run(monkeypatch, capsys, "--version")
    assert code == 0 and out == "riskpipe 0.1.0\n"
    code, _, err = run(monkeypatch, capsys, "--home", str(tmp_path), "retrain", "--until", "2026-02-30")
    assert code == 1 and err == "error: --until: '2026-02-30' is not a date (day is out of range for month)\n"
    code, _, err = run(monkeypatch, capsys, "--home", str(tmp_path), "nightly", "--date", "yesterday")
    assert code == 1 and err == "error: --date: 'yesterday' is not a date YYYY-MM-DD\n"
    code, _, err = run(
        monkeypatch, capsys, "--home", str(tmp_path), "nightly", "--date", "2026-01-14", "--task-runner", "spark"
    )
    assert code == 2 and "'spark' is not one of 'local', 'dask'" in " ".join(err.replace("│", " ").split())
    code, _, err = run(monkeypatch, capsys, "--home", str(tmp_path), "users", "add", "x", "--role", "boss")
    assert code == 2 and "'boss' is not one of 'analyst', 'supervisor'" in " ".join(err.replace("│", " ").split())


def test_the_cli_applies_riskpipe_environment_variables(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("RISKPIPE_EXPLORATION_SHARE", "1.5")
    code, _, err = run(monkeypatch, capsys, "--home", str(tmp_path), "users", "list")
    assert code == 1
    assert err == (
        "error: environment variable RISKPIPE_EXPLORATION_SHARE: exploration_share: must be <= 1 (got '1.5')\n"
    )
    monkeypatch.setenv("RISKPIPE_EXPLORATION_SHARE", "0.25")
    base.state.home = tmp_path
    monkeypatch.setattr("riskpipe.prefect_env.configure_prefect", lambda home, environ=None: None)
    assert base.settings().exploration_share == 0.25


def test_the_night_is_reported_with_the_model_that_scored_it(home) -> None:
    """Review finding: the rank step loaded the champion again, so a promotion between the score
    and rank steps published v1's scores with v2's report, summary and evaluation."""
    from riskpipe.config import Settings
    from riskpipe.nightly import scoring_champion

    set_champion(home / "models", "v2")  # promoted after v1 scored the night
    settings = Settings(home=home)
    scores = pl.DataFrame({S.SHIPMENT_ID: ["a", "b"], S.MODEL_VERSION: ["v1", "v1"]})
    state = scoring_champion(settings, scores)
    assert state.model is not None and state.model.version == "v1" and state.problem is None
    rules_only = scoring_champion(settings, scores.with_columns(pl.lit("rules-only").alias(S.MODEL_VERSION)))
    assert rules_only.model is None and "rules alone" in rules_only.problem
    with pytest.raises(Exception, match="several models"):
        scoring_champion(settings, pl.DataFrame({S.SHIPMENT_ID: ["a", "b"], S.MODEL_VERSION: ["v1", "v2"]}))
