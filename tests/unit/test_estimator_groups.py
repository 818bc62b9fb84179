"""Cross-fitting grouped by a near-duplicate key (issue 13, external benchmark): with ``groups``
no group is split between a target-encoding fold's fitting rows and the rows it encodes, nor
between the trees' rows and the early-stopping holdout, so a row's encoding never sees its own
near-copies' labels. Without ``groups`` fitting is unchanged."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.preprocessing import TargetEncoder

from riskpipe.estimator import TabularRiskClassifier

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _near_copies(n_groups: int = 300, seed: int = 0) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    """Groups of 1-6 near-copies sharing a label; ``gid`` (the group, as a number) is a feature so
    the rows the trees see can be traced back to their group."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 7, n_groups)
    gid = np.repeat(np.arange(n_groups), sizes)
    label = (rng.random(n_groups) < 0.3).astype(int)[gid]
    code = np.array([f"c{v}" for v in rng.integers(0, 400, n_groups)])[gid]
    frame = pl.DataFrame({"code": code, "gid": gid.astype(float), "amount": rng.normal(size=gid.size)})
    return frame, label, gid


def test_grouped_folds_and_holdout_never_split_a_group(monkeypatch):
    frame, y, gid = _near_copies()
    folds_seen: list = []
    trees_seen: list = []
    te_fit_transform = TargetEncoder.fit_transform
    hgb_fit = HistGradientBoostingClassifier.fit

    def spy_te(self, X, y, **kw):
        folds_seen.append(list(self.cv))
        return te_fit_transform(self, X, y, **kw)

    def spy_hgb(self, X, y, **kw):
        trees_seen.append((np.asarray(X), kw.get("X_val")))
        return hgb_fit(self, X, y, **kw)

    monkeypatch.setattr(TargetEncoder, "fit_transform", spy_te)
    monkeypatch.setattr(HistGradientBoostingClassifier, "fit", spy_hgb)
    model = TabularRiskClassifier(
        high_cardinality=["code"], numeric=["gid", "amount"], max_iter=20, early_stopping=True, random_state=0
    )
    model.fit(frame, y, groups=gid)
    ((X_fit, X_val),) = trees_seen
    col = model.encoded_feature_names_.index("gid")
    fit_groups, val_groups = set(X_fit[:, col]), set(np.asarray(X_val)[:, col])
    assert val_groups and fit_groups and not fit_groups & val_groups  # the holdout holds whole groups
    assert len(fit_groups) + len(val_groups) == len(set(gid))
    rows = np.flatnonzero(np.isin(gid, sorted(int(g) for g in fit_groups)))
    (folds,) = folds_seen
    assert len(folds) == 5
    for train_idx, test_idx in folds:  # indices into the rows the trees were fitted on
        assert not set(gid[rows][train_idx]) & set(gid[rows][test_idx])
    # the saved encoder keeps a plain seeded splitter, as without groups
    enc = dict((n, t) for n, t, _ in model.pipeline_.named_steps["encode"].transformers_)["target"]
    assert type(enc.cv).__name__ == "StratifiedKFold"
    assert model.predict_proba(frame).shape == (frame.height, 2)


def test_row_wise_folds_split_groups_and_groups_are_optional(monkeypatch):
    """The leak the option closes: without groups the folds separate near-copies."""
    frame, y, gid = _near_copies()
    folds_seen: list = []
    te_fit_transform = TargetEncoder.fit_transform

    def spy_te(self, X, y, **kw):
        folds_seen.append(list(self.cv.split(X, y)))
        return te_fit_transform(self, X, y, **kw)

    monkeypatch.setattr(TargetEncoder, "fit_transform", spy_te)
    plain = TabularRiskClassifier(high_cardinality=["code"], max_iter=20, early_stopping=False, random_state=0)
    plain.fit(frame, y)
    assert any(set(gid[tr]) & set(gid[te]) for tr, te in folds_seen[0])


def test_groups_must_match_the_rows():
    frame, y, gid = _near_copies()
    with pytest.raises(ValueError, match="groups"):
        TabularRiskClassifier(high_cardinality=["code"], max_iter=5).fit(frame, y, groups=gid[:-1])
