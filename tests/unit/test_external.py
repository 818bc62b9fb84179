from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from threadpoolctl import threadpool_limits
from typer.testing import CliRunner

from riskpipe.cli import app
from riskpipe.errors import RiskpipeError
from riskpipe.external import (
    contract_json,
    evaluate,
    load_labelled,
    load_mapping,
    parse_mapping,
)

@pytest.fixture(autouse=True)
def _one_thread():
    """OpenMP threads spin badly on a shared 2-core machine; one thread is faster here."""
    with threadpool_limits(limits=1):
        yield


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
        ["evaluate", "--mapping", str(files["mapping"]), "--train", str(files["train"]),
         "--train", str(files["train"]), "--test", str(files["test"]), "--json"],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)  # stdout is the JSON and nothing else
    assert list(payload) == ["precision_at", "recall_at"]
    assert list(payload["precision_at"]) == ["1", "2", "5", "10"]
    assert list(payload["recall_at"]) == ["1", "2", "5", "10"]
    assert all(0.0 <= v <= 1.0 for part in payload.values() for v in part.values())


def test_contract_json_drops_other_keys() -> None:
    rep = {"precision_at": {"1": 1.0, "2": 0.5, "5": 0.4, "10": 0.3, "20": 0.1},
           "recall_at": {"1": 0.1, "2": 0.2, "5": 0.3, "10": 0.4, "20": 0.9}, "pr_auc": 0.5}
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
    frame.with_columns(pl.when(pl.int_range(pl.len()) == 5).then(pl.lit("n/a")).otherwise(pl.col("Mass")).alias("Mass")).write_csv(junk)
    with pytest.raises(RiskpipeError, match=r"column 'Mass' row 6: 'n/a' is not a number"):
        evaluate(spec, [junk], files["test"])


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"dataset": {"positive": [1]}, "columns": {"numeric": ["a"]}}, "'label'"),
        ({"dataset": {"label": "y"}, "columns": {"numeric": ["a"]}}, "'positive'"),
        ({"dataset": {"label": "y", "positive": [1]}, "columns": {"numeric": ["a"]},
          "derive": [{"name": "z", "op": "eval", "column": "a"}]}, "op 'eval' is not one of"),
        ({"dataset": {"label": "y", "positive": [1]}, "columns": {"numeric": ["a"]},
          "derive": [{"name": "z", "op": "prefix", "column": "a"}]}, "positive integer 'length'"),
        ({"dataset": {"label": "y", "positive": [1]}, "columns": {"numeric": ["a"]},
          "derive": [{"name": "z", "op": "weekday"}]}, "needs \\[dataset\\].date"),
        ({"dataset": {"label": "y", "positive": [1]}, "columns": {"numeric": ["a"], "categorical": ["a"]}},
         "more than one role: a"),
        ({"dataset": {"label": "y", "positive": [1]}, "columns": {"numeric": ["a", "y"]}}, "label column"),
        ({"dataset": {"label": "y", "positive": [1]}, "columns": {"numeric": ["a"]}, "model": {"evil": 1}},
         "unknown key\\(s\\) evil"),
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
    assert {d.name for d in spec.derive} == {"unit_price", "hs_chapter", "hs_heading", "tax_amount", "same_country"}
