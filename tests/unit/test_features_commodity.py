from __future__ import annotations

from datetime import date

import polars as pl
from polars.testing import assert_series_equal

from riskpipe import schema as S
from riskpipe.features import commodity as C
from riskpipe.features.testing import raw_frame

DAY = date(2026, 1, 6)


def run(rows: list[dict]) -> pl.DataFrame:
    return C.add_commodity(C.prepare(raw_frame(rows, DAY).lazy())).collect()


def col(frame: pl.DataFrame, name: str) -> list:
    return frame.get_column(name).to_list()


def test_precursor_lexicon_names_synonyms_cas_with_and_without_dashes():
    f = run(
        [
            {S.DESCRIPTION: "N-Phenethyl-4-Piperidone 99%"},
            {S.DESCRIPTION: "tert-butyl 4-oxopiperidine-1-carboxylate"},
            {S.DESCRIPTION: "item 79099073 powder"},  # CAS without dashes
            {S.DESCRIPTION: "NPP"},
            {S.DESCRIPTION: "snppy sneakers"},  # short term only as a whole word
            {S.DESCRIPTION: "4-AP hydrochloride"},
            {S.DESCRIPTION: "T-shirt"},
            {S.DESCRIPTION: None},
        ]
    )
    assert col(f, C.DESC_PRECURSOR_HIT) == [1, 1, 1, 1, 0, 1, 0, 0]


def test_press_and_misdescription_terms():
    f = run(
        [
            {S.DESCRIPTION: "Tablet Press TDP-5 with dies"},
            {S.DESCRIPTION: "capsule filling machine"},
            {S.DESCRIPTION: "Dog Food sample"},
            {S.DESCRIPTION: "hand tools"},
        ]
    )
    assert col(f, C.DESC_PRESS_HIT) == [1, 1, 0, 0]
    assert col(f, C.DESC_MISDESCRIPTION_HIT) == [0, 0, 1, 0]


def test_cas_pattern_any_registry_number():
    f = run(
        [
            {S.DESCRIPTION: "Aniline CAS 62-53-3"},
            {S.DESCRIPTION: "CAS:125541-22-2"},
            {S.DESCRIPTION: "size 10-12-2024"},  # 4-digit tail: not a CAS number
            {S.DESCRIPTION: "phone 555-12-3"},
            {S.DESCRIPTION: "model 1234"},
        ]
    )
    assert col(f, C.DESC_CAS_NUMBER) == [1, 1, 0, 1, 0]


def test_hts_heading_chapter_missing_and_risky():
    f = run(
        [
            {S.HTS_CODE: "2933.39.9100"},
            {S.HTS_CODE: "8479899499"},
            {S.HTS_CODE: "847950"},  # 8479 but not 8479.89
            {S.HTS_CODE: None},
            {S.HTS_CODE: "3004"},
            {S.HTS_CODE: "61"},  # too short for a heading
        ]
    )
    assert col(f, C.HTS_RISKY_HEADING) == [1, 1, 0, 0, 1, 0]
    assert col(f, C.HTS_MISSING) == [0, 0, 0, 1, 0, 1]
    assert col(f, C.HTS_CHAPTER) == ["29", "84", "84", "none", "30", "none"]
    assert f.schema[C.HTS_CHAPTER] == C.HtsChapter


def test_description_vs_hts_mismatch():
    f = run(
        [
            {S.DESCRIPTION: "cosmetics", S.HTS_CODE: "2933399100"},  # consumer text under chemical heading
            {S.DESCRIPTION: "4-piperidone hydrochloride", S.HTS_CODE: "2933399100"},  # consistent
            {S.DESCRIPTION: "NPP", S.HTS_CODE: "2309100010"},  # precursor under pet food
            {S.DESCRIPTION: "pill press", S.HTS_CODE: "8487900080"},  # press under machine parts
            {S.DESCRIPTION: "pill press", S.HTS_CODE: "8479899499"},  # consistent
            {S.DESCRIPTION: "Aniline CAS 62-53-3", S.HTS_CODE: "2921420000"},  # chemical words
            {S.DESCRIPTION: "cosmetics", S.HTS_CODE: None},  # nothing to compare
        ]
    )
    assert col(f, C.DESC_HTS_MISMATCH) == [1, 0, 1, 1, 0, 0, 0]


def test_vagueness_and_word_count():
    f = run(
        [
            {S.DESCRIPTION: "GIFT"},
            {S.DESCRIPTION: " spare  parts. "},
            {S.DESCRIPTION: "gift box set"},
            {S.DESCRIPTION: ""},
        ]
    )
    assert col(f, C.DESC_VAGUE) == [1, 1, 0, 1]
    assert col(f, C.DESC_WORD_COUNT) == [1, 2, 3, 1]


def test_listed_price_vs_declared_value():
    f = run(
        [
            {S.DECLARED_VALUE: 10.0, S.LISTED_PRICE_USD: 50.0},
            {S.DECLARED_VALUE: 10.0, S.LISTED_PRICE_USD: 12.0},
            {S.DECLARED_VALUE: 0.0, S.LISTED_PRICE_USD: 12.0},
            {S.DECLARED_VALUE: 10.0},
        ]
    )
    assert_series_equal(
        f.get_column(C.LISTED_TO_DECLARED_RATIO), pl.Series(C.LISTED_TO_DECLARED_RATIO, [5.0, 1.2, None, None])
    )
    assert col(f, C.DECLARED_UNDER_LISTED) == [1, 0, 0, 0]


def test_fires_on_strong_flags_only():
    f = run([{S.DESCRIPTION: "gift", S.HTS_CODE: "9505900000"}, {S.DESCRIPTION: "NPP", S.HTS_CODE: "2933370000"}])
    assert f.select(C.fires()).to_series().to_list() == [False, True]


def test_the_familys_rows_computed_per_distinct_text_equal_the_row_by_row_columns():
    """The family computes its text columns once per distinct (description, HTS code) of the day
    and joins them back: the same values as evaluated on every row, nulls included."""
    from polars.testing import assert_frame_equal

    descriptions = ["N-Phenethyl-4-Piperidone 99%", "T-shirt", "tablet press die", "gift", "", None]
    codes = ["2933.39.9100", "6109.10", "8479.30", None, "29", "3004"]
    rows = [
        {
            S.SHIPMENT_ID: f"S{i:05d}",
            S.DESCRIPTION: descriptions[i % len(descriptions)],
            S.HTS_CODE: codes[(i // 2) % len(codes)],
            S.DECLARED_VALUE_USD: float(i % 7) * 10.0,
            S.LISTED_PRICE_USD: None if i % 5 == 0 else 35.0,
        }
        for i in range(120)
    ]
    raw = raw_frame(rows, DAY).lazy()
    want = C.add_commodity(C.prepare(raw)).select(S.SHIPMENT_ID, *C.COLUMNS).collect()
    got = C.FAMILY.open(None).rows(raw).select(S.SHIPMENT_ID, *C.COLUMNS).collect().sort(S.SHIPMENT_ID)
    assert_frame_equal(got, want)
    assert want.get_column(C.DESC_PRECURSOR_HIT).sum() > 0 and want.get_column(C.HTS_MISSING).sum() > 0
