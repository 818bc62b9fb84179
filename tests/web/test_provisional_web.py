"""Provisional scores in the workbench: a day whose night has not published shows the watcher's
provisional score, flagged in the API and badged on the page, until the night replaces it."""

from __future__ import annotations

import warnings

import polars as pl

from riskpipe import schema as S
from riskpipe.provisional import provisional_path
from riskpipe.store import Layout, write_parquet_atomic

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from riskpipe.web import create_app

from .conftest import PREV, XSS, login

BADGE = "provisional: replaced by tonight's score"


def _scores(risk: float, version: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            S.SHIPMENT_ID: ["P1"],
            S.RISK_SCORE: [risk],
            S.RULE_SCORE: [0.0],
            S.REASONS: [["model:score"]],
            S.MODEL_VERSION: [version],
        },
        schema=S.SCORES_SCHEMA,
    )


def _client(settings) -> TestClient:
    c = TestClient(create_app(settings))
    assert login(c, "ana").status_code == 303
    return c


def test_provisional_score_shown_flagged_and_escaped(home_settings) -> None:
    layout = Layout(home_settings.home)
    write_parquet_atomic(_scores(0.625, XSS), provisional_path(layout, PREV))
    c = _client(home_settings)
    api = c.get(f"/api/shipment/P1?day={PREV.isoformat()}").json()
    assert api["score"][S.RISK_SCORE] == 0.625 and api["score"]["provisional"] is True
    page = c.get(f"/shipment/P1?day={PREV.isoformat()}").text
    assert 'class="badge provisional"' in page and BADGE in page and "0.625" in page
    assert XSS not in page and "&lt;script&gt;" in page
    # a published nightly score replaces it: no flag, no badge
    write_parquet_atomic(_scores(0.125, "v1"), layout.day_dir(layout.scores, PREV) / "scores.parquet")
    c = _client(home_settings)
    api = c.get(f"/api/shipment/P1?day={PREV.isoformat()}").json()
    assert api["score"][S.RISK_SCORE] == 0.125 and api["score"]["provisional"] is False
    assert BADGE not in c.get(f"/shipment/P1?day={PREV.isoformat()}").text


def test_no_scores_at_all_is_not_provisional(home_settings) -> None:
    c = _client(home_settings)
    assert c.get(f"/api/shipment/P1?day={PREV.isoformat()}").json()["score"] is None
    page = c.get(f"/shipment/P1?day={PREV.isoformat()}").text
    assert "Not scored for this day." in page and BADGE not in page
