from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from riskpipe.cli import app
from riskpipe.errors import RiskpipeError
from riskpipe.external import (
    contract_json,
    evaluate,
    load_labelled,
    load_mapping,
    parse_mapping,
    unseen_rows,
    views_report,
)
from riskpipe.metrics import ranking_report

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


MAPPING = """
[dataset]
id = "Decl ID"
date = "Day"
label = "Outcome"
positive = ["HIT", "SEIZED"]

[columns]
numeric = ["Value", "Mass"]
categorical = ["Office"]
high_cardinality = ["Importer", "HS"]
ignore = ["Notes"]

[[derive]]
name = "unit_value"
op = "ratio"
columns = ["Value", "Mass"]

[[derive]]
name = "log_unit_value"
op = "log"
column = "unit_value"

[[derive]]
name = "hs4"
op = "prefix"
column = "HS"
length = 4

[[derive]]
name = "weekday"
op = "weekday"

[model]
max_iter = 40
learning_rate = 0.2
"""


def _world(n: int, seed: int) -> pl.DataFrame:
    """Declarations where heading 2933 with a high value per kg is mostly a hit."""
    rng = np.random.default_rng(seed)
    hs = rng.choice(["010121", "293311", "293399", "620822", "847989", "030211"], n)
    mass = rng.uniform(0.5, 20.0, n).round(2)
    unit = rng.lognormal(3.0, 1.0, n)
    risky = np.char.startswith(hs.astype(str), "2933") & (unit > 30)
    hit = risky & (rng.random(n) < 0.9) | (rng.random(n) < 0.03)
    outcome = np.where(hit, rng.choice(["HIT", "SEIZED"], n), "CLEAR")
    return pl.DataFrame(
        {
            "Decl ID": [f"D{seed}-{i}" for i in range(n)],
            "Day": [(date(2024, 1, 1) + timedelta(days=int(d))).isoformat() for d in rng.integers(0, 60, n)],
            "Office": rng.choice(["10", "20", "30"], n).tolist(),
            "Importer": [f"IMP{v:04d}" for v in rng.integers(0, 800, n)],
            "HS": hs.tolist(),
            "Value": (unit * mass).round(2),
            "Mass": mass,
            "Outcome": outcome.tolist(),
            "Notes": ["x"] * n,
        }
    )


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    mapping = tmp_path / "m.toml"
    mapping.write_text(MAPPING)
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    _world(3000, 1).write_csv(train)
    _world(1500, 2).write_csv(test)
    return {"mapping": mapping, "train": train, "test": test}


def test_planted_signal_is_found(files) -> None:
    spec = load_mapping(files["mapping"])
    report = evaluate(spec, [files["train"]], files["test"])
    base = report["base_rate"]
    assert 0.05 < base < 0.3
    assert report["precision_at"]["10"] > 2.5 * base
    assert report["k_at"] == {"1": 15, "2": 30, "5": 75, "10": 150}
    assert report["train_rows"] == 3000


def test_cli_json_shape_is_exact(files) -> None:
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--mapping",
            str(files["mapping"]),
            "--train",
            str(files["train"]),
            "--train",
            str(files["train"]),
            "--test",
            str(files["test"]),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)  # stdout is the JSON and nothing else
    assert list(payload) == ["precision_at", "recall_at", "views"]  # contract keys first, widened
    assert list(payload["precision_at"]) == ["1", "2", "5", "10"]
    assert list(payload["recall_at"]) == ["1", "2", "5", "10"]
    assert all(0.0 <= v <= 1.0 for part in ("precision_at", "recall_at") for v in payload[part].values())
    assert list(payload["views"]) == ["all"]  # no seen_columns: no unseen view
    assert payload["views"]["all"]["precision_at"] == payload["precision_at"]
    assert payload["views"]["all"]["rows"] == 1500


def test_contract_json_drops_other_keys() -> None:  # a report without views: the contract keys only
    rep = {
        "precision_at": {"1": 1.0, "2": 0.5, "5": 0.4, "10": 0.3, "20": 0.1},
        "recall_at": {"1": 0.1, "2": 0.2, "5": 0.3, "10": 0.4, "20": 0.9},
        "pr_auc": 0.5,
    }
    assert contract_json(rep) == {
        "precision_at": {"1": 1.0, "2": 0.5, "5": 0.4, "10": 0.3},
        "recall_at": {"1": 0.1, "2": 0.2, "5": 0.3, "10": 0.4},
    }


def test_derivations_exact(tmp_path: Path) -> None:
    doc = {
        "dataset": {"label": "y", "positive": [1], "date": "d"},
        "columns": {"numeric": ["a", "b"], "high_cardinality": ["code", "other"]},
        "derive": [
            {"name": "ratio", "op": "ratio", "columns": ["a", "b"]},
            {"name": "product", "op": "product", "columns": ["a", "b"]},
            {"name": "diff", "op": "difference", "columns": ["a", "b"]},
            {"name": "log_a", "op": "log", "column": "a"},
            {"name": "same", "op": "equal", "columns": ["code", "other"]},
            {"name": "ch", "op": "prefix", "column": "code", "length": 2},
            {"name": "pair", "op": "concat", "columns": ["code", "other"]},
            {"name": "a_code", "op": "code", "column": "a"},
            {"name": "freq", "op": "frequency", "column": "other"},
            {"name": "wd", "op": "weekday"},
            {"name": "mon", "op": "month"},
            {"name": "dom", "op": "day"},
        ],
    }
    path = tmp_path / "d.csv"
    path.write_text("y,a,b,code,other,d\n1,3,0,0101,0101,2024-03-04\n0,0,2,2933,0101,2024-03-10\n")
    X, y = load_labelled([path], parse_mapping(doc))
    assert y.tolist() == [1, 0]
    assert X["ratio"].to_list() == [None, 0.0]
    assert X["product"].to_list() == [0.0, 0.0]
    assert X["diff"].to_list() == [3.0, -2.0]
    assert X["log_a"].to_list() == [pytest.approx(np.log(4.0)), 0.0]
    assert X["same"].to_list() == [1.0, 0.0]
    assert X["ch"].to_list() == ["01", "29"]  # leading zeros kept
    assert X["pair"].to_list() == ["0101|0101", "2933|0101"]
    assert X["a_code"].to_list() == ["3.0", "0.0"]  # numeric columns are read as floats
    assert X["freq"].to_list() == [1.0, 1.0]
    assert X["wd"].to_list() == ["1", "7"]  # Monday, Sunday
    assert X["mon"].to_list() == ["3", "3"]
    assert X["dom"].to_list() == [4.0, 10.0]
    assert X.columns[:2] == ["a", "b"]


def test_float_and_boolean_labels_match_positive_values(tmp_path: Path) -> None:
    doc = {"dataset": {"label": "y", "positive": [1]}, "columns": {"numeric": ["a"]}}
    path = tmp_path / "f.parquet"
    pl.DataFrame({"y": [1.0, 0.0, 1.0], "a": [1.0, 2.0, 3.0]}).write_parquet(path)
    assert load_labelled([path], parse_mapping(doc))[1].tolist() == [1, 0, 1]
    doc["dataset"]["positive"] = [True]
    path2 = tmp_path / "b.ndjson"
    path2.write_text('{"y": true, "a": 1}\n{"y": false, "a": 2}\n')
    assert load_labelled([path2], parse_mapping(doc))[1].tolist() == [1, 0]


def test_missing_column_is_named(files, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(MAPPING.replace('"Mass"]', '"Mass", "Weight"]', 1))
    with pytest.raises(RiskpipeError, match=r"not found: 'Weight'"):
        evaluate(load_mapping(bad), [files["train"]], files["test"])


def test_label_values_not_found(files, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(MAPPING.replace('positive = ["HIT", "SEIZED"]', "positive = [1]"))
    with pytest.raises(RiskpipeError, match=r"label values \['1'\] not found in column 'Outcome'"):
        evaluate(load_mapping(bad), [files["train"]], files["test"])


def test_missing_files_and_bad_values(files, tmp_path: Path) -> None:
    with pytest.raises(RiskpipeError, match="mapping file not found"):
        load_mapping(tmp_path / "none.toml")
    spec = load_mapping(files["mapping"])
    with pytest.raises(RiskpipeError, match="data file not found"):
        evaluate(spec, [tmp_path / "none.csv"], files["test"])
    broken = tmp_path / "broken.csv"
    broken.write_text(files["train"].read_text().replace(",CLEAR,", ",,", 1))
    with pytest.raises(RiskpipeError, match="label column 'Outcome' is empty"):
        evaluate(spec, [broken], files["test"])
    junk = tmp_path / "junk.csv"
    frame = pl.read_csv(files["train"], infer_schema=False)
    frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 5).then(pl.lit("n/a")).otherwise(pl.col("Mass")).alias("Mass")
    ).write_csv(junk)
    with pytest.raises(RiskpipeError, match=r"column 'Mass' row 6: 'n/a' is not a number"):
        evaluate(spec, [junk], files["test"])


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"dataset": {"positive": [1]}, "columns": {"numeric": ["a"]}}, "'label'"),
        ({"dataset": {"label": "y"}, "columns": {"numeric": ["a"]}}, "'positive'"),
        (
            {
                "dataset": {"label": "y", "positive": [1]},
                "columns": {"numeric": ["a"]},
                "derive": [{"name": "z", "op": "eval", "column": "a"}],
            },
            "op 'eval' is not one of",
        ),
        (
            {
                "dataset": {"label": "y", "positive": [1]},
                "columns": {"numeric": ["a"]},
                "derive": [{"name": "z", "op": "prefix", "column": "a"}],
            },
            "positive integer 'length'",
        ),
        (
            {
                "dataset": {"label": "y", "positive": [1]},
                "columns": {"numeric": ["a"]},
                "derive": [{"name": "z", "op": "weekday"}],
            },
            "needs \\[dataset\\].date",
        ),
        (
            {"dataset": {"label": "y", "positive": [1]}, "columns": {"numeric": ["a"], "categorical": ["a"]}},
            "more than one role: a",
        ),
        ({"dataset": {"label": "y", "positive": [1]}, "columns": {"numeric": ["a", "y"]}}, "label column"),
        (
            {"dataset": {"label": "y", "positive": [1]}, "columns": {"numeric": ["a"]}, "model": {"evil": 1}},
            "unknown key\\(s\\) evil",
        ),
        ({"dataset": {"label": "y", "positive": [1]}, "columns": {"numerics": ["a"]}}, "unknown key\\(s\\) numerics"),
    ],
)
def test_mapping_validation(doc, message) -> None:
    with pytest.raises(RiskpipeError, match=message):
        parse_mapping(doc)


def test_shipped_customs_mapping_is_valid() -> None:
    import riskpipe

    path = Path(riskpipe.__file__).parent / "reference" / "mappings" / "customs-declarations.toml"
    spec = load_mapping(path)
    assert spec.label == "Fraud" and spec.positive == ("1",)
    assert "Critical Fraud" in spec.ignore
    assert "Critical Fraud" not in spec.source_columns()
    assert spec.seen_columns == ("Item Price",)  # the near-copy view of issue 13


# ---------------------------------------------------------------------------------------------
# the unseen view (issue 13): test rows whose seen-column values no training file holds
# ---------------------------------------------------------------------------------------------
SEEN = (
    MAPPING
    + """
[evaluation]
seen_columns = ["Value"]
"""
)


def test_unseen_rows_match_the_combination_of_values() -> None:
    reference = pl.DataFrame({"a": ["1", "2", None, "4"], "b": ["x", "y", "z", None]})
    rows = pl.DataFrame({"a": ["1", "1", None, "2", "4", "5"], "b": ["x", "y", "z", "y", None, "x"]})
    # (1,x) seen; (1,y) not: a value alone is not enough; (null,z) and (4,null) seen: null == null
    assert unseen_rows(reference, rows).tolist() == [False, True, False, False, False, True]
    assert unseen_rows(reference.head(0), rows).all()
    assert unseen_rows(reference, rows.head(0)).tolist() == []


def test_views_report_reads_the_same_scores_on_both_views() -> None:
    y = np.array([1, 0, 1, 0, 1, 0])
    score = np.array([0.9, 0.8, 0.7, 0.6, 0.2, 0.1])
    unseen = np.array([False, True, True, False, True, True])
    views = views_report(y, score, unseen, fractions=(0.25, 0.5))
    assert list(views) == ["all", "unseen"]
    assert views["all"]["n"] == 6 and views["all"]["roc_auc"] == pytest.approx(6 / 9)
    u = views["unseen"]  # y [0, 1, 1, 0] scored [0.8, 0.7, 0.2, 0.1]
    assert (u["n"], u["positives"], u["base_rate"]) == (4, 2, 0.5)
    assert u["k_at"] == {"25": 1, "50": 2}
    assert u["precision_at"] == {"25": 0.0, "50": 0.5}
    assert u["roc_auc"] == pytest.approx(0.5)
    assert u["pr_auc"] == ranking_report([0, 1, 1, 0], [0.8, 0.7, 0.2, 0.1])["pr_auc"]
    assert views_report(y, score, None)["all"]["precision_at"] == ranking_report(y, score)["precision_at"]
    assert views_report(np.array([0, 0]), np.array([0.1, 0.2]), None)["all"]["roc_auc"] is None


@pytest.fixture()
def near_copies(tmp_path: Path) -> dict[str, Path]:
    """A test file holding exact copies of rows of both training files, and fresh rows."""
    mapping = tmp_path / "seen.toml"
    mapping.write_text(SEEN)
    train, valid = _world(2000, 1), _world(600, 3)
    fresh = _world(900, 2)
    test = pl.concat([train.head(250), valid.head(150), fresh]).sample(fraction=1.0, shuffle=True, seed=0)
    paths = {
        "mapping": mapping,
        "train": tmp_path / "train.csv",
        "valid": tmp_path / "valid.csv",
        "test": tmp_path / "test.csv",
    }
    train.write_csv(paths["train"])
    valid.write_csv(paths["valid"])
    test.write_csv(paths["test"])
    return paths


def _expected_unseen(test: Path, *train: Path) -> tuple[int, int]:
    """(rows, positives) of the test rows whose Value no training file holds (as numbers)."""
    known = pl.concat([pl.read_csv(p)["Value"] for p in train])
    rows = pl.read_csv(test).filter(~pl.col("Value").is_in(known.implode()))
    return rows.height, int(rows["Outcome"].is_in(["HIT", "SEIZED"]).sum())


def test_unseen_view_holds_exactly_the_rows_absent_from_every_training_file(near_copies) -> None:
    spec = load_mapping(near_copies["mapping"])
    both = evaluate(spec, [near_copies["train"], near_copies["valid"]], near_copies["test"])
    n, positives = _expected_unseen(near_copies["test"], near_copies["train"], near_copies["valid"])
    assert 850 <= n <= 900  # the 400 copies are out (the fresh rows' own repeats aside)
    u = both["views"]["unseen"]
    assert (u["n"], u["positives"]) == (n, positives)
    assert u["base_rate"] == pytest.approx(positives / n)
    assert u["seen_columns"] == ["Value"]
    assert u["k_at"]["10"] == -(-n // 10)
    assert 0.0 <= u["roc_auc"] <= 1.0 and 0.0 <= u["precision_at"]["5"] <= 1.0
    assert both["views"]["all"]["n"] == both["n"] == 1300
    assert both["views"]["all"]["precision_at"] == both["precision_at"]
    # without the valid file as training data its copies count as unseen
    one = evaluate(spec, [near_copies["train"]], near_copies["test"])
    assert one["views"]["unseen"]["n"] == _expected_unseen(near_copies["test"], near_copies["train"])[0] > n


def test_seeds_average_the_fits(near_copies) -> None:
    spec = load_mapping(near_copies["mapping"])
    runs = [evaluate(spec, [near_copies["train"]], near_copies["test"], random_state=s) for s in (0, 1)]
    both = evaluate(spec, [near_copies["train"]], near_copies["test"], seeds=2)
    for view in ("all", "unseen"):
        got = both["views"][view]
        for k in ("5", "10"):
            vals = [r["views"][view]["precision_at"][k] for r in runs]
            assert got["precision_at"][k] == pytest.approx(np.mean(vals))
            assert got["sd"]["precision_at"][k] == pytest.approx(np.std(vals))
        assert got["roc_auc"] == pytest.approx(np.mean([r["views"][view]["roc_auc"] for r in runs]))
        assert got["n"] == runs[0]["views"][view]["n"]
    assert both["seeds"] == 2 and both["precision_at"] == both["views"]["all"]["precision_at"]


def test_cli_prints_both_views_and_json_carries_them(near_copies) -> None:
    args = [
        "evaluate",
        "--mapping",
        str(near_copies["mapping"]),
        "--train",
        str(near_copies["train"]),
        "--train",
        str(near_copies["valid"]),
        "--test",
        str(near_copies["test"]),
    ]
    n, positives = _expected_unseen(near_copies["test"], near_copies["train"], near_copies["valid"])
    text = CliRunner().invoke(app, args, terminal_width=200)
    assert text.exit_code == 0, text.output
    assert "all rows of test.csv: 1,300 rows" in text.output
    assert f"unseen rows (Value not in the training files): {n:,} rows, {positives:,} positive" in text.output
    assert "unseen: PR-AUC" in text.output and "ROC-AUC" in text.output
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert list(payload["views"]) == ["all", "unseen"]
    u = payload["views"]["unseen"]
    assert (u["rows"], u["positives"]) == (n, positives)
    assert u["prevalence"] == pytest.approx(positives / n)
    assert list(u["precision_at"]) == ["1", "2", "5", "10"] and u["seen_columns"] == ["Value"]
    assert 0.0 <= u["roc_auc"] <= 1.0
    assert payload["views"]["all"]["rows"] == 1300


def test_seen_column_absent_from_a_file_is_a_one_line_error(files, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(MAPPING + '\n[evaluation]\nseen_columns = ["Value", "Price"]\n')
    with pytest.raises(RiskpipeError, match=r"train.csv: column\(s\) named in .*bad.toml not found: 'Price'") as err:
        evaluate(load_mapping(bad), [files["train"]], files["test"])
    assert "\n" not in str(err.value)
    result = CliRunner().invoke(
        app, ["evaluate", "--mapping", str(bad), "--train", str(files["train"]), "--test", str(files["test"])]
    )
    assert isinstance(result.exception, RiskpipeError)  # main() prints it as one line


_BASE = {
    "dataset": {"label": "y", "positive": [1]},
    "columns": {"numeric": ["a"]},
    "derive": [{"name": "la", "op": "log", "column": "a"}],
}


@pytest.mark.parametrize(
    ("evaluation", "message"),
    [
        ({"seen_columns": "a"}, None),  # one name is a list of one
        ({"seen_columns": ["a", "b"]}, None),
        ({"seen_columns": [1]}, r"seen_columns: expected a list of column names"),
        ({"seen_columns": []}, r"seen_columns: name at least one column"),
        ({"seen_columns": ["y"]}, r"the label column 'y' cannot define seen rows"),
        ({"seen_columns": ["la"]}, r"'la' is derived"),
        ({"seen_column": ["a"]}, r"\[evaluation\]: unknown key\(s\) seen_column"),
        ("a", r"\[evaluation\]: must be a table"),
    ],
)
def test_seen_columns_validation(evaluation, message) -> None:
    doc = {**_BASE, "evaluation": evaluation}
    if message is None:
        spec = parse_mapping(doc)
        assert spec.seen_columns == tuple(np.atleast_1d(evaluation["seen_columns"]).tolist())
        assert set(spec.seen_columns) <= set(spec.source_columns())
    else:
        with pytest.raises(RiskpipeError, match=message):
            parse_mapping(doc)


# ---------------------------------------------------------------------------------------------
# fitted derivations (relative_to_group) and [training] one_row_per (issue 13)
# ---------------------------------------------------------------------------------------------
from riskpipe.external import GroupMedians, MappedModel, build_model, first_rows  # noqa: E402

_REL = {
    "dataset": {"label": "y", "positive": [1]},
    "columns": {"numeric": ["v"]},
    "derive": [
        {"name": "hs4", "op": "prefix", "column": "hs6", "length": 4, "role": "categorical"},
        {"name": "v_rel", "op": "relative_to_group", "column": "v", "groups": ["hs6", "hs4"], "min_rows": 3},
    ],
    "model": {"max_iter": 5, "early_stopping": False},
}
_TRAIN = pl.DataFrame(
    {
        "v": [9.0, 99.0, 999.0, 1.0, 3.0, 5.0, 1000.0, None, 7.0],
        "hs6": ["111111", "111111", "111111", "222211", "222211", "222222", "222222", "111111", None],
        "hs4": ["1111", "1111", "1111", "2222", "2222", "2222", "2222", "1111", None],
        "y": [0, 1, 1, 0, 0, 1, 1, 0, 0],
    }
)


def _ln(x: float) -> float:
    return float(np.log1p(x))


def test_group_relative_is_learned_from_the_training_rows_only() -> None:
    spec = parse_mapping(_REL)
    (d,) = spec.fitted()
    medians = GroupMedians.fit(d, _TRAIN)
    # hs6 111111: 3 valued rows (the null is not counted) -> its median 99; 2222xx: 4 rows, median 4
    assert medians.tables[0] == (("111111",), (99.0,))
    assert medians.tables[1] == (("1111", "2222"), (99.0, 4.0))
    assert medians.overall == 8.0  # median of the 8 valued training rows
    test = pl.DataFrame({"v": [99.0, 5_000.0], "hs6": ["111111", "111111"], "hs4": ["1111", "1111"]})
    got = test.select(medians.expr())["v_rel"].to_list()
    assert got == pytest.approx([0.0, _ln(5_000.0) - _ln(99.0)])  # the row's own value moves nothing else
    model = build_model(spec)
    assert isinstance(model, MappedModel)
    model.fit(_TRAIN.drop("y"), _TRAIN["y"].to_numpy())
    alone = model.transform(test.head(1))["v_rel"].to_list()
    crowd = pl.concat([test.head(1), pl.DataFrame({"v": [1e9] * 50, "hs6": ["111111"] * 50, "hs4": ["1111"] * 50})])
    assert model.transform(crowd)["v_rel"].to_list()[:1] == alone == [0.0]  # batch-independent
    assert model.transform(test).columns == ["v", "v_rel", "hs4"]  # numeric, then categorical
    assert model.predict_proba(test).shape == (2, 2) and model.n_iter_ == 5


def test_group_relative_falls_back_to_coarser_groups_then_all_rows() -> None:
    spec = parse_mapping(_REL)
    medians = GroupMedians.fit(spec.fitted()[0], _TRAIN)
    rows = pl.DataFrame(
        {
            "v": [4.0, 4.0, 8.0, 8.0, None],
            # 222211 has 2 training rows (< min_rows 3): its heading 2222; 9999xx unseen; null group
            "hs6": ["222211", "222299", "999999", None, "111111"],
            "hs4": ["2222", "2222", "9999", None, "1111"],
        }
    )
    got = rows.select(medians.expr())["v_rel"].to_list()
    assert got[:4] == pytest.approx([0.0, 0.0, 0.0, 0.0])  # 4 vs heading median 4; 8 vs overall 8
    assert got[4] is None  # no value, no feature
    assert rows.head(1).with_columns(v=pl.lit(8.0)).select(medians.expr()).item() == pytest.approx(_ln(8) - _ln(4))
    empty = GroupMedians.fit(spec.fitted()[0], _TRAIN.head(0))
    assert empty.overall is None and rows.select(empty.expr())["v_rel"].null_count() == 5


def test_load_labelled_keeps_the_inputs_of_fitted_derivations(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    _TRAIN.write_csv(path)
    spec = parse_mapping(_REL)
    X, y = load_labelled([path], spec)
    assert X.columns == ["v", "hs4", "hs6"]  # v_rel is the model's; its group columns come along
    assert y.tolist() == _TRAIN["y"].to_list()
    plain = parse_mapping({**_REL, "derive": _REL["derive"][:1]})
    assert load_labelled([path], plain)[0].columns == ["v", "hs4"]  # unchanged without one
    assert not isinstance(build_model(plain), MappedModel)


def test_first_rows_keeps_the_first_of_each_combination() -> None:
    keys = pl.DataFrame({"a": ["1", "2", "1", None, None, "2"], "b": ["x", "x", "x", "y", "y", "z"]})
    assert first_rows(keys).tolist() == [0, 1, 3, 5]


def test_one_row_per_trains_on_distinct_rows_and_keeps_the_seen_view(near_copies, tmp_path: Path) -> None:
    mapping = tmp_path / "distinct.toml"
    mapping.write_text(SEEN + '\n[training]\none_row_per = ["Value"]\n')
    spec = load_mapping(mapping)
    assert spec.one_row_per == ("Value",) and "Value" in spec.source_columns()
    train = pl.concat([pl.read_csv(near_copies["train"])] * 2)  # every row twice
    doubled = tmp_path / "doubled.csv"
    train.write_csv(doubled)
    report = evaluate(spec, [doubled], near_copies["test"])
    distinct = train["Value"].n_unique()
    assert report["train_rows_read"] == train.height and report["train_rows"] == distinct < train.height
    plain = evaluate(load_mapping(near_copies["mapping"]), [near_copies["train"]], near_copies["test"])
    assert report["views"]["unseen"]["n"] == plain["views"]["unseen"]["n"]  # seen-ness reads every row
    # the same model as one trained on the file of first rows, made outside riskpipe
    firsts = tmp_path / "firsts.csv"
    train.unique("Value", keep="first", maintain_order=True).write_csv(firsts)
    same = evaluate(load_mapping(near_copies["mapping"]), [firsts], near_copies["test"])
    for view in ("all", "unseen"):
        assert report["views"][view]["precision_at"] == same["views"][view]["precision_at"]
        assert report["views"][view]["roc_auc"] == same["views"][view]["roc_auc"]


def test_evaluate_with_a_fitted_derivation_finds_a_group_relative_signal(tmp_path: Path) -> None:
    """Positives are the rows priced high for their code: the raw price does not separate them
    (codes sit at price levels 100x apart), the price relative to the code's median does."""
    rng = np.random.default_rng(0)

    def frame(n: int) -> pl.DataFrame:
        code = rng.choice(["010101", "020202", "030303"], n)
        level = np.select([code == "010101", code == "020202"], [1.0, 100.0], 10_000.0)
        rel = rng.lognormal(0.0, 0.5, n)
        return pl.DataFrame({"code": code.tolist(), "price": (level * rel).round(2), "y": (rel > 1.5).astype(int)})

    frame(3000).write_csv(tmp_path / "train.csv")
    frame(1000).write_csv(tmp_path / "test.csv")
    doc = {
        "dataset": {"label": "y", "positive": [1]},
        "columns": {"numeric": ["price"]},
        "model": {"max_iter": 60, "max_depth": 2, "early_stopping": False},
    }
    rel = {**doc, "derive": [{"name": "price_rel", "op": "relative_to_group", "column": "price", "groups": ["code"]}]}
    relative = evaluate(parse_mapping(rel), [tmp_path / "train.csv"], tmp_path / "test.csv")
    assert relative["roc_auc"] > 0.98


_FIT_BASE = {"dataset": {"label": "y", "positive": [1]}, "columns": {"numeric": ["a"]}}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"derive": [{"name": "r", "op": "relative_to_group", "column": "a"}]},
            r"derive 'r': relative_to_group needs 'groups'",
        ),
        ({"derive": [{"name": "r", "op": "relative_to_group", "column": "a", "groups": []}]}, r"needs 'groups'"),
        (
            {"derive": [{"name": "r", "op": "relative_to_group", "column": "a", "groups": [3]}]},
            r"groups: expected a list",
        ),
        (
            {"derive": [{"name": "r", "op": "relative_to_group", "column": "a", "groups": "g", "min_rows": 0}]},
            r"min_rows must be a positive integer, got 0",
        ),
        (
            {"derive": [{"name": "r", "op": "relative_to_group", "column": "a", "groups": "g", "min_rows": True}]},
            r"min_rows must be a positive integer",
        ),
        (
            {"derive": [{"name": "r", "op": "log", "column": "a", "groups": ["g"]}]},
            r"derive 'r': groups only apply to op relative_to_group",
        ),
        (
            {
                "derive": [
                    {"name": "r", "op": "relative_to_group", "column": "a", "groups": "g"},
                    {"name": "lr", "op": "log", "column": "r"},
                ]
            },
            r"derive 'lr': reads 'r', which is fitted",
        ),
        ({"training": {"one_row_per": []}}, r"\[training\]\.one_row_per: name at least one column"),
        ({"training": {"one_row_per": ["y"]}}, r"the label column 'y' cannot define distinct rows"),
        ({"training": {"one_row_per": ["a"], "dedupe": True}}, r"\[training\]: unknown key\(s\) dedupe"),
        ({"training": "a"}, r"\[training\]: must be a table"),
    ],
)
def test_fitted_and_training_options_validation_is_one_line(extra, message) -> None:
    with pytest.raises(RiskpipeError, match=message) as err:
        parse_mapping({**_FIT_BASE, **extra}, source="m.toml")
    assert "\n" not in str(err.value) and str(err.value).startswith("m.toml")


def test_a_fitted_derivation_may_feed_another_and_stateless_ones_may_feed_it() -> None:
    spec = parse_mapping(
        {
            **_FIT_BASE,
            "columns": {"numeric": ["a", "b"]},
            "derive": [
                {"name": "ab", "op": "ratio", "columns": ["a", "b"]},
                {"name": "r1", "op": "relative_to_group", "column": "ab", "groups": "g"},
                {"name": "r2", "op": "relative_to_group", "column": "r1", "groups": "g", "min_rows": 1},
            ],
        }
    )
    assert [d.name for d in spec.fitted()] == ["r1", "r2"]
    assert spec.model_input_columns() == ["a", "b", "ab", "g"]
    assert spec.source_columns()[-1] == "g"
