from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from riskpipe import schema as S
from riskpipe.errors import RiskpipeError
from riskpipe.rules import load_rules, parse_rules

FRAME = pl.DataFrame(
    {
        S.SHIPMENT_ID: ["a", "b", "c", "d"],
        S.DESCRIPTION: ["NPP CAS 39742-60-4", "Dog food", None, "tablet press TDP-5"],
        S.COUNTRY_OF_ORIGIN: ["CN", "MX", "CN", "HK"],
        S.DECLARED_VALUE_USD: [10.0, 900.0, None, 50.0],
        "desc_cas_number": pl.Series([1, 0, 0, 0], dtype=pl.Int8),
        "hts_chapter": pl.Series(["29", "23", "none", "84"], dtype=pl.Enum(["none", "23", "29", "84"])),
    }
)

RULES = """
[[rule]]
code = "LEX"
text = "precursor named"
weight = 0.5
all = [ { field = "description", op = "contains_any", value = "@precursors" } ]

[[rule]]
code = "CAS_CN"
text = "CAS number from China"
weight = 0.2
all = [
  { field = "desc_cas_number", op = "is_true" },
  { field = "country_of_origin", op = "in", value = ["CN", "HK"] },
]

[[rule]]
code = "PRICEY_OR_DOG"
text = "expensive or dog"
weight = 0.2
any = [
  { field = "declared_value_usd", op = "gt", value = 800 },
  { field = "description", op = "contains_any", value = ["DOG FOOD"] },
]

[[rule]]
code = "NO_DESC"
text = "no description"
weight = 1.0
all = [ { field = "description", op = "is_null" } ]

[[rule]]
code = "CHAPTER84"
text = "machines"
weight = 0.1
all = [
  { field = "hts_chapter", op = "eq", value = "84" },
  { field = "description", op = "matches", value = '(?i)tdp-\\d' },
]
"""


def test_apply_scores_reasons_and_texts():
    rs = parse_rules(RULES)
    out = rs.apply(FRAME)
    expected = pl.DataFrame(
        {
            S.SHIPMENT_ID: ["a", "b", "c", "d"],
            S.RULE_SCORE: [1 - 0.5 * 0.8, 0.2, 1.0, 0.1],
            S.RULE_REASONS: [["LEX", "CAS_CN"], ["PRICEY_OR_DOG"], ["NO_DESC"], ["CHAPTER84"]],
            S.RULE_FLOOR_SCORE: [0.0, 0.0, 0.0, 0.0],  # no rule of this file is marked floor
        }
    )
    assert_frame_equal(out, expected, check_exact=False)
    assert rs.texts["CAS_CN"] == "CAS number from China"
    assert [r.code for r in rs.rules] == ["NO_DESC", "LEX", "CAS_CN", "PRICEY_OR_DOG", "CHAPTER84"]


def test_apply_accepts_lazy_frames():
    rs = parse_rules(RULES)
    assert_frame_equal(rs.apply(FRAME.lazy()), rs.apply(FRAME))


def test_shipped_defaults_load_and_cover_domain_red_flags():
    rs = load_rules()
    codes = {r.code for r in rs.rules}
    assert {"PRECURSOR_NAMED", "PILL_PRESS", "SPLIT_OVER_800", "SHARED_CONTACT", "PARTNER_EXPORT_MISMATCH"} <= codes
    assert all(0 < r.weight <= 1 and rs.texts[r.code] for r in rs.rules)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            'code = "R1"\ntext = "t"\nweight = 0.5\nall = [{ field = "nope", op = "eq", value = 1 }]',
            "rule R1, all[0], field 'nope': unknown field",
        ),
        (
            'code = "R1"\ntext = "t"\nweight = 0.5\nall = [{ field = "description", op = "like", value = "x" }]',
            "unknown op 'like'",
        ),
        (
            'code = "R1"\ntext = "t"\nweight = 1.5\nall = [{ field = "description", op = "is_null" }]',
            "rule R1: weight 1.5",
        ),
        (
            'code = "R1"\ntext = "t"\nweight = 0.5\nall = [{ field = "description", op = "matches", value = "([" }]',
            "invalid regular expression",
        ),
        (
            'code = "R1"\ntext = "t"\nweight = 0.5\nall = [{ field = "description", op = "contains_any", value = "@nothing" }]',
            "unknown lexicon @nothing",
        ),
        (
            'code = "R1"\ntext = "t"\nweight = 0.5\nall = [{ field = "declared_value_usd", op = "gt", value = "big" }]',
            "needs a number",
        ),
        (
            'code = "R1"\ntext = "t"\nweight = 0.5\nall = [{ field = "country_of_origin", op = "in", value = "CN" }]',
            "non-empty list",
        ),
        (
            'code = "R1"\ntext = "t"\nweight = 0.5\nall = [{ field = "description", op = "is_null", value = 1 }]',
            "takes no value",
        ),
        ('code = "R1"\ntext = "t"\nweight = 0.5', "needs conditions"),
        ('code = "R1"\nweight = 0.5\nall = [{ field = "description", op = "is_null" }]', "plain-language text"),
        (
            'code = "R1"\ntext = "t"\nweight = 0.5\nexpr = "__import__(\'os\')"\nall = [{ field = "description", op = "is_null" }]',
            "unknown key(s) expr",
        ),
    ],
)
def test_bad_rules_are_rejected_naming_rule_and_field(tmp_path, body, message):
    p = tmp_path / "rules.toml"
    p.write_text("[[rule]]\n" + body + "\n", encoding="utf-8")
    with pytest.raises(RiskpipeError) as err:
        load_rules(p)
    assert message in str(err.value)
    assert str(p) in str(err.value)


def test_duplicate_codes_bad_toml_and_missing_file(tmp_path):
    one = '[[rule]]\ncode = "R"\ntext = "t"\nweight = 0.1\nall = [{ field = "description", op = "is_null" }]\n'
    with pytest.raises(RiskpipeError, match="rule R: duplicate code"):
        parse_rules(one + one)
    with pytest.raises(RiskpipeError, match="not valid TOML"):
        parse_rules("[[rule]\n")
    with pytest.raises(RiskpipeError, match="cannot read"):
        load_rules(tmp_path / "absent.toml")


def test_field_missing_from_scored_frame_is_a_clear_error():
    rs = parse_rules(RULES)
    with pytest.raises(RiskpipeError, match="desc_cas_number.*CAS_CN"):
        rs.apply(FRAME.drop("desc_cas_number"))


def test_empty_rule_file_scores_zero():
    out = parse_rules("").apply(FRAME)
    assert out.get_column(S.RULE_SCORE).to_list() == [0.0] * 4
    assert out.get_column(S.RULE_REASONS).to_list() == [[]] * 4


def test_mask_path_equals_row_by_row_path():
    rs = parse_rules(RULES)
    assert_frame_equal(rs.apply(FRAME), rs._apply_rows(rs.hits(FRAME)))
    assert rs.hit_mask(FRAME).to_list() == [0b110, 0b1000, 0b1, 0b10000]  # bit i = rs.rules[i]


def test_floor_rules_give_a_floor_score_only_for_their_hits():
    import polars as pl

    from riskpipe import schema as S
    from riskpipe.rules import parse_rules

    rs = parse_rules(
        """
[[rule]]
code = "NAMED"
text = "names a precursor"
weight = 0.6
floor = true
all = [ { field = "description", op = "contains_any", value = ["npp"] } ]

[[rule]]
code = "SOFT"
text = "soft flag"
weight = 0.5
all = [ { field = "description", op = "contains_any", value = ["gift"] } ]
"""
    )
    frame = pl.DataFrame({S.SHIPMENT_ID: ["a", "b", "c"], S.DESCRIPTION: ["NPP gift", "gift", "socks"]})
    out = rs.apply(frame).sort(S.SHIPMENT_ID)
    assert out[S.RULE_SCORE].round(6).to_list() == [0.8, 0.5, 0.0]
    assert out[S.RULE_FLOOR_SCORE].round(6).to_list() == [0.6, 0.0, 0.0]
    assert rs.floor_of(["SOFT"]) == 0.0


def test_floor_must_be_boolean():
    import pytest

    from riskpipe.errors import RiskpipeError
    from riskpipe.rules import parse_rules

    with pytest.raises(RiskpipeError, match="rule X.*floor"):
        parse_rules(
            '[[rule]]\ncode = "X"\ntext = "t"\nweight = 0.1\nfloor = "yes"\n'
            'all = [ { field = "description", op = "is_null" } ]\n'
        )


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ('{ field = "arrival_date", op = "ge", value = 2026-01-15 }', None),
        ('{ field = "arrival_date", op = "eq", value = 2026-01-15 }', None),
        ('{ field = "arrival_date", op = "in", value = [2026-01-15, 2026-01-16] }', None),
        ('{ field = "declared_value_usd", op = "lt", value = 25 }', None),
        ('{ field = "declared_value_usd", op = "gt", value = true }', "needs a number or a date"),
        ('{ field = "arrival_date", op = "eq", value = { day = 1 } }', "needs a single value"),
        ('{ field = "arrival_date", op = "in", value = [[2026-01-15]] }', "non-empty list of values"),
    ],
)
def test_toml_dates_are_values_and_tables_are_not(condition, message):
    """A TOML date (``datetime.date``) compares and matches like a number; a boolean does not
    order and a table or nested list is no value (the checks are types, not attribute probes)."""
    text = f'[[rule]]\ncode = "R1"\ntext = "t"\nweight = 0.5\nall = [{condition}]\n'
    if message is None:
        assert [r.code for r in parse_rules(text).rules] == ["R1"]
    else:
        with pytest.raises(RiskpipeError, match=message):
            parse_rules(text)
