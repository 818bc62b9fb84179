"""Fourth round of the external benchmark (issue 13): the fitted derivation ``rank_in_group`` (a
value's percentile among the training values of its group, e.g. a price against its own kind of
goods), group keys made of several columns, and ``[training] weight_per`` (each distinct value
combination weighs one training row in total, near-copies sharing it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from riskpipe.errors import RiskpipeError
from riskpipe.estimator import TabularRiskClassifier
from riskpipe.external import (
    GroupMedians,
    GroupRanks,
    MappedModel,
    build_model,
    evaluate,
    inverse_group_sizes,
    load_mapping,
    parse_mapping,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

_RANK = {
    "dataset": {"label": "y", "positive": [1]},
    "columns": {"numeric": ["v"], "categorical": ["hs4", "orig"]},
    "derive": [
        {"name": "v_rank", "op": "rank_in_group", "column": "v", "groups": [["hs4", "orig"], "hs4"], "min_rows": 3}
    ],
    "model": {"max_iter": 5, "early_stopping": False},
}
_TRAIN = pl.DataFrame(
    {
        "v": [10.0, 20.0, 20.0, 30.0, 40.0, 5.0, 7.0, None, 100.0],
        "hs4": ["A", "A", "A", "A", "A", "B", "B", "A", "C"],
        "orig": ["x", "x", "x", "x", "y", "x", "x", "x", None],
        "y": [0, 1, 0, 1, 0, 1, 0, 0, 1],
    }
)
# hs4|orig A|x holds 4 valued training rows (10, 20, 20, 30): its own percentiles; A|y (1 row) and
# B|x (2) are below min_rows 3 and fall back to hs4 A (5 rows: 10 20 20 30 40); B and C are too
# small as headings too: all 8 valued training rows (5 7 10 20 20 30 40 100); a null key is no group
_ROWS = pl.DataFrame(
    {
        "v": [20.0, 25.0, 1.0, 99.0, 40.0, 6.0, None, 20.0, 30.0],
        "hs4": ["A", "A", "A", "A", "A", "B", "A", "A", "Z"],
        "orig": ["x", "x", "x", "x", "y", "x", "x", None, "z"],
    }
)
_EXPECTED = [
    (1 + 3) / 2 / 4,  # 20 in A|x: one value below, three at most
    (3 + 3) / 2 / 4,  # 25: between the training values
    0.0,  # below every value of its group
    1.0,  # above every value
    (4 + 5) / 2 / 5,  # A|y too small: heading A
    (1 + 1) / 2 / 8,  # B|x and B too small: all training rows
    None,  # no value, no feature
    (1 + 3) / 2 / 5,  # null origin: no A|x key, heading A
    (5 + 6) / 2 / 8,  # unseen heading: all training rows
]


def test_rank_in_group_is_the_percentile_among_the_training_values_of_the_finest_group() -> None:
    spec = parse_mapping(_RANK)
    (d,) = spec.fitted()
    assert d.groups == (("hs4", "orig"), ("hs4",)) and d.inputs() == ("v", "hs4", "orig")
    ranks = GroupRanks.fit(d, _TRAIN)
    got = ranks.transform(_ROWS)["v_rank"].to_list()
    assert got[6] is None
    assert [g for i, g in enumerate(got) if i != 6] == pytest.approx([e for e in _EXPECTED if e is not None])
    alone = [ranks.transform(_ROWS[i : i + 1])["v_rank"].item() for i in range(_ROWS.height)]
    assert alone == got  # batch-independent: no statistic of the scored rows reaches a row
    assert ranks.transform(_ROWS).columns == [*_ROWS.columns, "v_rank"]  # rows kept in order
    empty = GroupRanks.fit(d, _TRAIN.head(0))
    assert empty.transform(_ROWS)["v_rank"].null_count() == _ROWS.height


def test_rank_in_group_is_fitted_by_the_mapped_model() -> None:
    model = build_model(parse_mapping(_RANK))
    assert isinstance(model, MappedModel)
    model.fit(_TRAIN.drop("y"), _TRAIN["y"].to_numpy())
    seen = model.transform(_ROWS)
    assert seen.columns == ["v", "v_rank", "hs4", "orig"]  # numeric, then categorical
    assert seen["v_rank"].to_list()[:2] == pytest.approx(_EXPECTED[:2])
    assert model.predict_proba(_ROWS).shape == (_ROWS.height, 2)


def test_relative_to_group_takes_a_group_of_several_columns() -> None:
    doc = {**_RANK, "derive": [{**_RANK["derive"][0], "name": "v_rel", "op": "relative_to_group"}]}
    medians = GroupMedians.fit(parse_mapping(doc).fitted()[0], _TRAIN)
    got = _ROWS.select(medians.expr())["v_rel"].to_list()
    ln = np.log1p
    # A|x median 20; A|y falls back to heading A (median 20); B|x to all rows (median 20)
    assert got[0] == pytest.approx(0.0) and got[4] == pytest.approx(ln(40) - ln(20))
    assert got[5] == pytest.approx(ln(6) - ln(20))


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ([[]], r"rank_in_group needs 'groups'"),
        ([["hs4", 3]], r"groups: expected a list of column names"),
        (None, r"rank_in_group needs 'groups'"),
    ],
)
def test_rank_in_group_groups_are_checked(groups, message) -> None:
    derive = {k: v for k, v in _RANK["derive"][0].items() if k != "groups"}
    if groups is not None:
        derive["groups"] = groups
    with pytest.raises(RiskpipeError, match=message):
        parse_mapping({**_RANK, "derive": [derive]})
    plain = {"name": "p", "op": "log", "column": "v", "groups": ["hs4"]}
    with pytest.raises(RiskpipeError, match=r"groups only apply to op relative_to_group or rank_in_group"):
        parse_mapping({**_RANK, "derive": [plain]})


def test_inverse_group_sizes_null_equals_null() -> None:
    keys = pl.DataFrame({"a": ["1", "2", None, "1", None, "1"], "b": ["x", "x", "z", "x", "z", "y"]})
    assert inverse_group_sizes(keys).tolist() == pytest.approx([0.5, 1.0, 0.5, 0.5, 0.5, 1.0])


MAPPING = """
[dataset]
label = "y"
positive = [1]

[columns]
numeric = ["price", "mass"]
categorical = ["kind"]

[[derive]]
name = "price_rank"
op = "rank_in_group"
column = "price"
groups = ["kind"]

[model]
max_iter = 10
early_stopping = false
"""


def _files(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 5, 120)  # each price repeated 1-4 times, as near-copies
    price = np.repeat(rng.integers(1, 10_000, sizes.size), sizes)
    frame = pl.DataFrame(
        {
            "price": price,
            "mass": rng.normal(size=price.size).round(3),
            "kind": rng.choice(["a", "b", "c"], price.size),
            "y": np.repeat((rng.random(sizes.size) < 0.3).astype(int), sizes),
        }
    )
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    frame.write_csv(train)
    frame.head(80).write_csv(test)
    return train, test


def test_weight_per_weighs_each_distinct_value_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train, test = _files(tmp_path)
    seen: list[object] = []
    fit = TabularRiskClassifier.fit

    def spy(self, X, y, sample_weight=None, groups=None):  # type: ignore[no-untyped-def]
        seen.append(sample_weight)
        return fit(self, X, y, sample_weight, groups)

    monkeypatch.setattr(TabularRiskClassifier, "fit", spy)
    (tmp_path / "plain.toml").write_text(MAPPING)
    (tmp_path / "weighted.toml").write_text(MAPPING + '\n[training]\nweight_per = ["price"]\n')
    weighted = load_mapping(tmp_path / "weighted.toml")
    assert weighted.weight_per == ("price",) and "price" in weighted.source_columns()
    plain_report = evaluate(load_mapping(tmp_path / "plain.toml"), [train], test)
    report = evaluate(weighted, [train], test)  # through the MappedModel (a fitted derivation)
    plain_weights, weights = seen
    assert plain_weights is None  # unchanged without the key
    prices = pl.read_csv(train)["price"].to_numpy()
    copies = (prices[:, None] == prices[None, :]).sum(axis=1)
    assert np.asarray(weights) == pytest.approx(1.0 / copies)
    assert report["train_rows"] == plain_report["train_rows"] == prices.size  # every row kept


def test_weight_per_is_checked(tmp_path: Path) -> None:
    (tmp_path / "label.toml").write_text(MAPPING + '\n[training]\nweight_per = ["y"]\n')
    with pytest.raises(RiskpipeError, match="weight_per: the label column 'y' cannot define weighted rows"):
        load_mapping(tmp_path / "label.toml")
    (tmp_path / "derived.toml").write_text(MAPPING + '\n[training]\nweight_per = ["price_rank"]\n')
    with pytest.raises(RiskpipeError, match="'price_rank' is derived"):
        load_mapping(tmp_path / "derived.toml")
