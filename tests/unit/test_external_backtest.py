"""``riskpipe evaluate --backtest``: a rolling-origin backtest over labelled files (issue 13: a
choice made on several periods instead of one validation file)."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from riskpipe.cli import app
from riskpipe.errors import RiskpipeError
from riskpipe.external import backtest, backtest_periods, evaluate, load_mapping, parse_mapping

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

MAPPING = """
[dataset]
date = "Day"
label = "y"
positive = [1]

[columns]
numeric = ["Value", "Mass"]
categorical = ["Kind"]

[model]
max_iter = 30
learning_rate = 0.2

[evaluation]
seen_columns = ["Value"]
"""


def _month(year: int, month: int, n: int, seed: int, prices: list[float] | None = None) -> pl.DataFrame:
    """``n`` rows dated in one month; kind "b" with a low mass is mostly positive."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(["a", "b", "c"], n)
    mass = rng.uniform(0.1, 10.0, n).round(3)
    y = ((kind == "b") & (mass < 4) & (rng.random(n) < 0.8)) | (rng.random(n) < 0.05)
    value = rng.uniform(1, 1e6, n).round(2) if prices is None else np.resize(np.array(prices), n)
    return pl.DataFrame(
        {
            "Day": [date(year, month, 1 + int(d)).isoformat() for d in rng.integers(0, 28, n)],
            "Kind": kind.tolist(),
            "Mass": mass,
            "Value": value,
            "y": y.astype(int),
        }
    )


@pytest.fixture()
def months(tmp_path: Path) -> dict[str, Path]:
    """Four months in two files (Jan-Feb, Mar-Apr); price 7.5 occurs in January and April only,
    price 9.25 in March only."""
    jan = _month(2024, 1, 400, 1).with_columns(
        pl.when(pl.int_range(pl.len()) < 20).then(7.5).otherwise("Value").alias("Value")
    )
    feb = _month(2024, 2, 300, 2)
    mar = _month(2024, 3, 300, 3).with_columns(
        pl.when(pl.int_range(pl.len()) < 10).then(9.25).otherwise("Value").alias("Value")
    )
    apr = _month(2024, 4, 300, 4).with_columns(
        pl.when(pl.int_range(pl.len()) < 5)
        .then(7.5)
        .when(pl.int_range(pl.len()) < 12)
        .then(9.25)
        .otherwise("Value")
        .alias("Value")
    )
    mapping = tmp_path / "m.toml"
    mapping.write_text(MAPPING)
    first, second = tmp_path / "janfeb.csv", tmp_path / "marapr.csv"
    pl.concat([feb, jan]).write_csv(first)  # not in date order: the backtest cuts by date, not by file
    pl.concat([apr, mar]).write_csv(second)
    return {"mapping": mapping, "first": first, "second": second}


def test_periods_are_calendar_periods_that_hold_rows() -> None:
    days = [date(2024, 1, 31), date(2024, 2, 1), date(2024, 5, 9), date(2024, 12, 31)]
    assert backtest_periods(days, 3, "month") == [
        date(2024, 1, 1),
        date(2024, 2, 1),
        date(2024, 5, 1),
        date(2024, 12, 1),
    ]
    assert backtest_periods(days, 2, "month") == [date(2024, 2, 1), date(2024, 5, 1), date(2024, 12, 1)]
    assert backtest_periods(days, 2, "quarter") == [date(2024, 1, 1), date(2024, 4, 1), date(2024, 10, 1)]
    with pytest.raises(RiskpipeError, match=r"3 fold\(s\) need 4 quarters with rows; the training files hold 3"):
        backtest_periods(days, 3, "quarter")
    with pytest.raises(RiskpipeError, match="period must be one of month, quarter"):
        backtest_periods(days, 1, "week")


def test_each_fold_trains_on_every_earlier_row_and_scores_its_own_period(months) -> None:
    spec = load_mapping(months["mapping"])
    report = backtest(spec, [months["first"], months["second"]], folds=3, period="month")
    folds = report["folds"]
    assert [f["period"]["name"] for f in folds] == ["2024-02", "2024-03", "2024-04"]
    assert [f["period"]["end"] for f in folds] == ["2024-03-01", "2024-04-01", None]
    assert [f["train_rows"] for f in folds] == [400, 700, 1000]  # expanding window, whatever the file order
    assert [f["views"]["all"]["n"] for f in folds] == [300, 300, 300]
    # unseen is judged against the fold's own training rows: 9.25 is unseen in March (first
    # seen there), seen in April; 7.5 (January) is seen in April
    unseen_n = [f["views"]["unseen"]["n"] for f in folds]
    assert unseen_n == [300, 300, 300 - 12]
    assert report["views"]["all"]["n"] == 900 and report["views"]["unseen"]["n"] == 888
    p5 = [f["views"]["unseen"]["precision_at"]["5"] for f in folds]
    assert report["views"]["unseen"]["precision_at"]["5"] == pytest.approx(np.mean(p5))
    assert report["views"]["unseen"]["fold_sd"]["precision_at"]["5"] == pytest.approx(np.std(p5, ddof=1))
    assert report["views"]["unseen"]["folds"] == report["views"]["all"]["folds"] == 3
    assert report["precision_at"]["10"] == pytest.approx(np.mean([f["precision_at"]["10"] for f in folds]))
    assert report["views"]["all"]["k_at"]["10"] == 90


def test_a_fold_is_the_evaluation_of_its_period_on_the_rows_before_it(months, tmp_path: Path) -> None:
    """The last fold equals ``evaluate`` trained on January-March and tested on April."""
    spec = load_mapping(months["mapping"])
    both = pl.concat([pl.read_csv(months["first"]), pl.read_csv(months["second"])])
    before, april = tmp_path / "before.csv", tmp_path / "april.csv"
    both.filter(pl.col("Day") < "2024-04-01").write_csv(before)
    both.filter(pl.col("Day") >= "2024-04-01").write_csv(april)
    direct = evaluate(spec, [before], april, seeds=2)
    fold = backtest(spec, [months["first"], months["second"]], folds=1, period="month", seeds=2)["folds"][0]
    assert fold["train_rows"] == direct["train_rows"]
    for view in ("all", "unseen"):
        assert fold["views"][view]["n"] == direct["views"][view]["n"]
        assert fold["views"][view]["precision_at"] == pytest.approx(direct["views"][view]["precision_at"])
        assert fold["views"][view]["roc_auc"] == pytest.approx(direct["views"][view]["roc_auc"])


def test_undated_rows_are_left_out_and_counted(months, tmp_path: Path) -> None:
    frame = pl.read_csv(months["second"]).with_columns(
        pl.when(pl.int_range(pl.len()) < 3).then(pl.lit("not a date")).otherwise("Day").alias("Day")
    )
    path = tmp_path / "some-undated.csv"
    frame.write_csv(path)
    report = backtest(load_mapping(months["mapping"]), [months["first"], path], folds=2, period="month")
    assert report["rows_undated"] == 3
    assert sum(f["views"]["all"]["n"] for f in report["folds"]) == 600 - 3


def test_a_mapping_without_a_date_cannot_backtest(months) -> None:
    spec = parse_mapping({"dataset": {"label": "y", "positive": [1]}, "columns": {"numeric": ["Mass"]}})
    with pytest.raises(RiskpipeError, match=r"names no \[dataset\].date"):
        backtest(spec, [months["first"]], folds=1)


def _cli(*args: str):
    return CliRunner().invoke(app, ["evaluate", *args])


def test_cli_backtest_prints_each_fold_and_json_carries_them(months) -> None:
    base = ["--mapping", str(months["mapping"]), "--train", str(months["first"]), "--train", str(months["second"])]
    result = _cli(*base, "--backtest", "2", "--period", "month")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "2024-03" in out and "2024-04" in out and "mean of the 2 folds" in out
    assert "2024-02 " not in out  # February only trains
    result = _cli(*base, "--backtest", "2", "--period", "month", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert list(payload)[:2] == ["precision_at", "recall_at"]
    assert payload["period"] == "month" and payload["seeds"] == 1 and payload["rows_undated"] == 0
    assert [f["train_rows"] for f in payload["folds"]] == [700, 1000]
    assert payload["views"]["unseen"]["folds"] == 2
    assert [f["period"]["name"] for f in payload["folds"]] == ["2024-03", "2024-04"]
    assert payload["views"]["unseen"]["rows"] == 588
    assert set(payload["views"]["unseen"]["fold_sd"]) == {"precision_at", "recall_at", "pr_auc", "roc_auc"}


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--backtest", "9", "--period", "month"], r"9 fold\(s\) need 10 months with rows; the training files hold 4"),
        (["--backtest", "2"], r"2 fold\(s\) need 3 quarters with rows; the training files hold 2"),  # default quarter
    ],
)
def test_cli_backtest_errors_are_one_line(months, extra, message) -> None:
    result = _cli(
        "--mapping", str(months["mapping"]), "--train", str(months["first"]), "--train", str(months["second"]), *extra
    )
    assert result.exit_code == 1
    assert isinstance(result.exception, RiskpipeError)  # main() prints it as one line
    assert re.search(message, str(result.exception)), result.exception


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "give either --test FILE or --backtest N"),
        (["--test", "x.csv", "--backtest", "2"], "give either --test FILE or --backtest N"),
        (["--backtest", "1", "--period", "year"], "'year' is not one of 'month', 'quarter'"),
        (["--test", "x.csv", "--period", "month"], "--period only applies with --backtest N"),
    ],
)
def test_cli_usage_errors_are_the_parser_s(months, extra, message) -> None:
    result = _cli("--mapping", str(months["mapping"]), "--train", str(months["first"]), *extra)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.replace("│", " ").split())


def test_a_fold_without_unseen_rows_is_left_out_of_the_unseen_mean(months, tmp_path: Path) -> None:
    """Every March price is a January price: March has no unseen row, so the unseen figures are
    April's alone, not April's averaged with an empty fold's zero."""
    jan = _month(2024, 1, 200, 1)
    mar = _month(2024, 3, 100, 3, prices=jan["Value"].to_list())
    apr = _month(2024, 4, 100, 4)
    path = tmp_path / "three.csv"
    pl.concat([jan, mar, apr]).write_csv(path)
    report = backtest(load_mapping(months["mapping"]), [path], folds=2, period="month")
    march, april = report["folds"]
    assert march["views"]["unseen"]["n"] == 0 and april["views"]["unseen"]["n"] == 100
    unseen = report["views"]["unseen"]
    assert unseen["folds"] == 1 and unseen["n"] == 100
    assert unseen["precision_at"] == april["views"]["unseen"]["precision_at"]
    assert report["views"]["all"]["folds"] == 2


def test_a_per_file_derivation_is_refused_by_the_backtest(months, tmp_path: Path) -> None:
    """``frequency`` counts a whole file's rows: a fold's rows would count later periods' rows."""
    mapping = tmp_path / "freq.toml"
    mapping.write_text(
        MAPPING.replace("[model]", '[[derive]]\nname = "kind_share"\nop = "frequency"\ncolumn = "Kind"\n\n[model]')
    )
    spec = load_mapping(mapping)
    with pytest.raises(RiskpipeError, match=r"derivation\(s\) 'kind_share' of .*freq.toml count every row of a file"):
        backtest(spec, [months["first"], months["second"]], folds=1, period="month")
    evaluate(spec, [months["first"]], months["second"])  # still fine with a test file


# [training] novel_rows_by: train on the rows that were new when they arrived


def test_novel_rows_are_new_since_the_start_of_their_own_period() -> None:
    from riskpipe.external import novel_rows

    keys = pl.DataFrame({"p": ["a", "a", "a", "b", "b", None, None, "c"]})
    day = pl.Series(
        [
            date(2024, 1, 5),  # a first seen: new
            date(2024, 1, 20),  # a again in the same month and quarter: seen on an earlier day
            date(2024, 4, 2),  # a in a later quarter: not new
            date(2024, 2, 27),  # b first seen: new
            date(2024, 3, 1),  # b next month, same quarter
            date(2024, 5, 1),  # null key first seen (a null equals a null)
            date(2024, 5, 1),  # ... again the same day
            None,  # no date: never new
        ]
    )
    assert novel_rows(keys, day, "day").tolist() == [True, False, False, True, False, True, True, False]
    assert novel_rows(keys, day, "month").tolist() == [True, True, False, True, False, True, True, False]
    assert novel_rows(keys, day, "quarter").tolist() == [True, True, False, True, True, True, True, False]


def test_novel_rows_by_trains_on_the_new_rows_only_and_keeps_the_seen_view(months, tmp_path: Path) -> None:
    repeats = tmp_path / "repeats.csv"  # January's price 7.5 again in February: old there
    _month(2024, 2, 30, 9).with_columns(pl.lit(7.5).alias("Value")).write_csv(repeats)
    files = [months["first"], months["second"], repeats]
    both = pl.concat([pl.read_csv(p) for p in files])
    mapping = tmp_path / "novel.toml"
    mapping.write_text(MAPPING + '\n[training]\nnovel_rows_by = ["Value"]\nnovel_period = "month"\n')
    spec = load_mapping(mapping)
    assert spec.novel_rows_by == ("Value",) and spec.novel_period == "month"
    # April scored by January-March: 7.5 (January) is old in April, 9.25 appeared in March only
    report = backtest(spec, files, folds=1, period="month")
    plain = backtest(load_mapping(months["mapping"]), files, folds=1, period="month")
    fold = report["folds"][0]
    past = both.filter(pl.col("Day") < "2024-04-01").with_columns(month=pl.col("Day").str.slice(0, 7))
    first_month = pl.col("month").min().over("Value")
    expected = past.filter(pl.col("month") == first_month)
    assert fold["train_rows_read"] == past.height == plain["folds"][0]["train_rows"]
    assert fold["train_rows"] == expected.height == past.height - 30
    assert fold["views"]["unseen"]["n"] == plain["folds"][0]["views"]["unseen"]["n"]  # seen-ness reads every row
    # the same model as one trained on a file of those rows, made outside riskpipe
    april = both.filter(pl.col("Day") >= "2024-04-01")
    new_file, april_file = tmp_path / "new.csv", tmp_path / "april.csv"
    expected.drop("month").write_csv(new_file)
    april.write_csv(april_file)
    direct = evaluate(load_mapping(months["mapping"]), [new_file], april_file)
    assert fold["views"]["all"]["precision_at"] == pytest.approx(direct["views"]["all"]["precision_at"])
    assert fold["views"]["all"]["roc_auc"] == pytest.approx(direct["views"]["all"]["roc_auc"])


@pytest.mark.parametrize(
    "training, dataset, message",
    [
        ({"novel_rows_by": ["v"], "novel_period": "week"}, {}, r"novel_period: one of day, month, quarter, got 'week'"),
        ({"novel_period": "day"}, {}, r"novel_period: only applies with novel_rows_by"),
        ({"novel_rows_by": ["v"]}, {"date": None}, r"novel_rows_by: needs \[dataset\].date"),
        ({"novel_rows_by": ["v"], "one_row_per": ["v"]}, {}, r"novel_rows_by and one_row_per both choose"),
        ({"novel_rows_by": ["y"]}, {}, r"the label column 'y' cannot define novel rows"),
    ],
)
def test_novel_rows_options_validation_is_one_line(training, dataset, message) -> None:
    ds = {k: v for k, v in {"label": "y", "positive": [1], "date": "d", **dataset}.items() if v is not None}
    doc = {"dataset": ds, "columns": {"numeric": ["v"]}, "training": training}
    with pytest.raises(RiskpipeError, match=message) as err:
        parse_mapping(doc, source="m.toml")
    assert "\n" not in str(err.value) and str(err.value).startswith("m.toml")


def test_novel_rows_by_with_a_test_file_several_columns_and_a_year_edge(months, tmp_path: Path) -> None:
    """``evaluate --test`` applies it too; a row is old when the same (Value, Kind) pair was
    dated before its quarter, December counting before January's quarter."""
    dec = _month(2023, 12, 200, 5).with_columns(pl.lit(3.5).alias("Value"))
    jan = _month(2024, 1, 200, 6).with_columns(
        pl.when(pl.int_range(pl.len()) < 120).then(3.5).otherwise("Value").alias("Value")
    )
    feb = _month(2024, 2, 100, 7).with_columns(pl.lit(4.25).alias("Value"))  # new pairs in February
    train = tmp_path / "train.csv"
    frame = pl.concat([jan, dec, feb])
    frame.write_csv(train)
    mapping = tmp_path / "novel.toml"
    mapping.write_text(MAPPING + '\n[training]\nnovel_rows_by = ["Value", "Kind"]\n')
    report = evaluate(load_mapping(mapping), [train], months["second"])
    quarter = pl.col("Day").str.to_date().dt.truncate("3mo")
    first = pl.col("Day").str.to_date().min().over("Value", "Kind")
    expected = frame.filter(first >= quarter).height
    old_jan = jan.head(120).join(dec.select("Value", "Kind").unique(), on=["Value", "Kind"], how="semi").height
    assert old_jan > 0  # the year edge is exercised
    assert report["train_rows_read"] == 500 and report["train_rows"] == expected == 500 - old_jan
