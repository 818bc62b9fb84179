"""Behavioural tests of scoring on the real feature path and the shipped analyst rules.

A small world with a planted signal: precursor chemicals (by name or CAS number) are positive
unless shipped by a trusted trader (who gets credit, not immunity). The model is trained on it,
then single shipments are changed one thing at a time.
"""

from __future__ import annotations

import shutil
from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from riskpipe import schema as S
from riskpipe.features import build_features
from riskpipe.features.testing import write_raw_day
from riskpipe.metrics import pr_auc
from riskpipe.model import fit_risk_model
from riskpipe.registry import LoadedModel
from riskpipe.rules import load_rules
from riskpipe.score import RULE_WEIGHT, score_day
from riskpipe.store import Layout
from riskpipe.training import attach_labels

D0 = date(2026, 3, 2)
BENIGN = ["T-shirt", "Phone case", "Wireless earbuds", "Yoga mat", "Kitchen knife set", "Socks", "LED strip"]
PRECURSORS = ["4-piperidone hydrochloride", "NPP powder", "N-phenethyl-4-piperidone", "1-boc-4-piperidone 79099-07-3"]
N_PER_DAY = 300


def world_day(rng: np.random.Generator, day_index: int) -> tuple[list[dict], list[int]]:
    rows, y = [], []
    for i in range(N_PER_DAY):
        chem = rng.random() < 0.08
        trusted = rng.random() < 0.3
        desc = PRECURSORS[rng.integers(len(PRECURSORS))] if chem else BENIGN[rng.integers(len(BENIGN))]
        rows.append(
            {
                S.DESCRIPTION: desc,
                S.DECLARED_VALUE: float(rng.integers(5, 200)),
                S.GROSS_WEIGHT_KG: float(rng.uniform(0.1, 3)),
                S.TRUSTED_TRADER: "ctpat" if trusted else None,
                S.PORT_OF_ENTRY: "4701" if i % 2 else "2720",
            }
        )
        y.append(int(chem and not trusted))
    return rows, y


def _labels(ids: list[str], y: list[int], day: date) -> pl.DataFrame:
    return pl.DataFrame(
        {
            S.SHIPMENT_ID: ids,
            S.EXAM_DATE: [day + timedelta(days=1)] * len(ids),
            S.OUTCOME: ["precursor" if v else "no_finding" for v in y],
            S.EXAM_REASON: ["targeted"] * len(ids),
        },
        schema_overrides={S.OUTCOME: S.Outcome, S.EXAM_REASON: S.ExamReason},
    )


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from riskpipe.estimator import TabularRiskClassifier

    layout = Layout(tmp_path_factory.mktemp("behaviour"))
    rng = np.random.default_rng(1)
    frames = []
    for k in range(3):
        day = D0 + timedelta(days=k)
        rows, y = world_day(rng, k)
        raw = write_raw_day(layout, day, rows)
        labels = _labels(raw[S.SHIPMENT_ID].to_list(), y, day)
        feats = build_features(layout, day, None)
        frames.append(attach_labels(feats, day, labels))
    est = TabularRiskClassifier(random_state=0, max_iter=40, min_samples_leaf=5, early_stopping=False)
    model, meta = fit_risk_model(frames[0], frames[1], estimator=est)
    return layout, LoadedModel("test-model", model, meta), frames[2]


@pytest.fixture(scope="module")
def rules():
    return load_rules(None)


def _score(layout: Layout, rows: list[dict], model: LoadedModel, rules, day: date) -> pl.DataFrame:
    write_raw_day(layout, day, rows)
    empty = pl.DataFrame(schema={**S.LABEL_SCHEMA})
    return score_day(layout, day, model, rules, empty)


def _filler() -> list[dict]:
    return [{S.DESCRIPTION: BENIGN[i % len(BENIGN)], S.DECLARED_VALUE: 20.0 + i} for i in range(20)]


def test_minimum_quality_on_planted_signal(trained):
    _, model, test = trained
    p = model.model.predict_risk(test)
    assert test[S.IS_POSITIVE].sum() >= 5
    assert pr_auc(test[S.IS_POSITIVE].to_numpy(), p) > 0.9


def test_cas_number_of_a_precursor_raises_score_and_leads_reasons(trained, rules):
    layout, model, _ = trained
    day = D0 + timedelta(days=10)
    rows = [
        {S.DESCRIPTION: "Industrial chemical sample"},
        {S.DESCRIPTION: "Industrial chemical sample CAS 41661-47-6"},
    ] + _filler()
    out = _score(layout, rows, model, rules, day).sort(S.SHIPMENT_ID)
    plain, cas = out.row(0, named=True), out.row(1, named=True)
    assert cas[S.RISK_SCORE] > plain[S.RISK_SCORE] + 0.2
    assert cas[S.REASONS][0] == "PRECURSOR_NAMED"
    assert "CAS_NUMBER" in cas[S.REASONS]
    assert not plain[S.REASONS] or plain[S.REASONS][0] != "PRECURSOR_NAMED"


def test_shipment_id_changes_nothing(trained, rules, tmp_path):
    layout, model, _ = trained
    day = D0 + timedelta(days=11)
    rows = [{S.DESCRIPTION: "NPP powder"}, {S.DESCRIPTION: "Socks", S.TRUSTED_TRADER: "ctpat"}] + _filler()
    first = _score(layout, rows, model, rules, day)
    other = Layout(tmp_path / "renamed")
    shutil.copytree(layout.raw, other.raw)
    renamed = [dict(r, **{S.SHIPMENT_ID: f"ZZ-{i:04d}"}) for i, r in enumerate(rows)]
    second = _score(other, renamed, model, rules, day)
    cols = [S.RISK_SCORE, S.RULE_SCORE, S.REASONS]
    assert first.sort(S.SHIPMENT_ID).select(cols).equals(second.sort(S.SHIPMENT_ID).select(cols))


def test_trusted_trader_lowers_but_cannot_hide_a_precursor(trained, rules):
    layout, model, _ = trained
    day = D0 + timedelta(days=12)
    rows = [
        {S.DESCRIPTION: "N-phenethyl-4-piperidone", S.TRUSTED_TRADER: None},
        {S.DESCRIPTION: "N-phenethyl-4-piperidone", S.TRUSTED_TRADER: "ctpat"},
    ] + _filler()
    out = _score(layout, rows, model, rules, day).sort(S.SHIPMENT_ID)
    untrusted, trusted = out.row(0, named=True), out.row(1, named=True)
    assert trusted[S.RISK_SCORE] < untrusted[S.RISK_SCORE]
    # the rule floor: risk >= w * (score of the floor rules hit), and the precursor is still first
    assert trusted[S.RISK_SCORE] >= RULE_WEIGHT * rules.floor_of(trusted[S.REASONS]) >= RULE_WEIGHT * 0.6
    assert trusted[S.REASONS][0] == "PRECURSOR_NAMED"
    filler_max = out.slice(2)[S.RISK_SCORE].max()
    assert trusted[S.RISK_SCORE] > filler_max


def test_scores_have_the_contract_columns_and_rules_work_without_a_model(trained, rules):
    layout, _, _ = trained
    day = D0 + timedelta(days=13)
    out = _score(layout, [{S.DESCRIPTION: "NPP powder"}] + _filler(), None, rules, day)
    assert list(out.columns[:5]) == list(S.SCORES_SCHEMA)
    assert out[S.MODEL_VERSION].unique().to_list() == ["rules-only"]
    top = out.sort(S.RISK_SCORE, descending=True).row(0, named=True)
    assert top[S.REASONS][0] == "PRECURSOR_NAMED"
    assert top[S.RISK_SCORE] == pytest.approx(RULE_WEIGHT * rules.floor_of(top[S.REASONS]))
    assert rules.floor_of(top[S.REASONS]) == pytest.approx(0.6)  # the precursor rule (floor = true)
