"""``[training] group_folds_by`` (issue 13, external benchmark): the rows sharing those columns'
values reach the estimator as one group, so its target-encoding folds and early-stopping holdout
never split near-copies; without the key nothing changes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from riskpipe.errors import RiskpipeError
from riskpipe.estimator import TabularRiskClassifier
from riskpipe.external import evaluate, load_mapping
from riskpipe.external.readers import group_keys

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

MAPPING = """
[dataset]
label = "y"
positive = [1]

[columns]
numeric = ["price", "mass"]
high_cardinality = ["party"]

[model]
max_iter = 20
"""


def _files(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    n_groups = 150
    sizes = rng.integers(1, 5, n_groups)
    price = np.repeat(rng.integers(1, 10_000, n_groups), sizes)
    frame = pl.DataFrame(
        {
            "price": price,
            "mass": rng.normal(size=price.size).round(3),
            "party": [f"p{v}" for v in rng.integers(0, 60, price.size)],
            "y": np.repeat((rng.random(n_groups) < 0.3).astype(int), sizes),
        }
    )
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    frame.write_csv(train)
    frame.head(100).write_csv(test)
    return train, test


def test_group_keys_number_each_combination_null_equals_null():
    keys = pl.DataFrame({"a": ["1", "2", None, "1", None], "b": ["x", "x", "z", "x", "z"]})
    g = group_keys(keys)
    assert g[0] == g[3] and g[2] == g[4]
    assert len({g[0], g[1], g[2]}) == 3


def test_group_folds_by_passes_the_groups_to_the_estimator(tmp_path, monkeypatch):
    train, test = _files(tmp_path)
    seen: list = []
    fit = TabularRiskClassifier.fit

    def spy(self, X, y, sample_weight=None, groups=None):
        seen.append(groups)
        return fit(self, X, y, sample_weight, groups)

    monkeypatch.setattr(TabularRiskClassifier, "fit", spy)
    (tmp_path / "plain.toml").write_text(MAPPING)
    (tmp_path / "grouped.toml").write_text(MAPPING + '\n[training]\ngroup_folds_by = ["price"]\n')
    grouped = load_mapping(tmp_path / "grouped.toml")
    assert grouped.group_folds_by == ("price",) and "price" in grouped.source_columns()
    evaluate(load_mapping(tmp_path / "plain.toml"), [train], test)
    evaluate(grouped, [train], test)
    plain_groups, groups = seen
    assert plain_groups is None  # unchanged without the key
    prices = pl.read_csv(train)["price"].to_numpy()
    assert groups.shape == prices.shape
    same_price = prices[:, None] == prices[None, :]
    assert np.array_equal(groups[:, None] == groups[None, :], same_price)


def test_group_folds_by_is_checked(tmp_path):
    (tmp_path / "label.toml").write_text(MAPPING + '\n[training]\ngroup_folds_by = ["y"]\n')
    with pytest.raises(RiskpipeError, match="group_folds_by: the label column"):
        load_mapping(tmp_path / "label.toml")
    (tmp_path / "typo.toml").write_text(MAPPING + '\n[training]\ngroup_fold_by = ["price"]\n')
    with pytest.raises(RiskpipeError, match="unknown key"):
        load_mapping(tmp_path / "typo.toml")
