"""The synthetic world: contract files, determinism, truth, exams, faults, adaptation."""

from __future__ import annotations

import gzip
import hashlib
import re
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from riskpipe import schema as S
from riskpipe.store import Layout
from riskpipe.synth import DEFAULT_PREVALENCE, GenerateSummary, generate

START = date(2026, 1, 5)
DAYS = 3
PER_DAY = 3000


def _read(path: Path) -> pl.DataFrame:
    """Read a landing file the way a strict reader would: CSV as text, gzip understood."""
    name = path.name
    data = path.read_bytes()
    if name.endswith(".gz"):
        data = gzip.decompress(data)
    if ".parquet" in name:
        return pl.read_parquet(data)
    if ".ndjson" in name:
        return pl.read_ndjson(data, infer_schema_length=None)
    return pl.read_csv(data, infer_schema=False)


def _manifests(layout: Layout) -> list[Path]:
    return sorted(p for p in layout.landing.iterdir() if p.is_file() and p.name.startswith("manifest-"))


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Layout, GenerateSummary]:
    layout = Layout(tmp_path_factory.mktemp("world"))
    calls: list[tuple[int, int]] = []
    summary = generate(layout, START, DAYS, PER_DAY, seed=11, faults=True, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1][0] == calls[-1][1]  # the progress callback reaches its total
    return layout, summary


@pytest.fixture(scope="module")
def clean_world(tmp_path_factory) -> tuple[Layout, GenerateSummary]:
    layout = Layout(tmp_path_factory.mktemp("clean"))
    return layout, generate(layout, START, DAYS, PER_DAY, seed=5, gzip=True)


def _good_manifest_rows(layout: Layout) -> pl.DataFrame:
    frames = []
    for p in _manifests(layout):
        f = _read(p)
        if p.name.endswith(".parquet"):
            f = f.with_columns(pl.col(S.FILED_AT).dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ"))
        frames.append(f.select(pl.col(c).cast(pl.String) for c in S.MANIFEST_SCHEMA))
    return pl.concat(frames, how="vertical")


def test_determinism_same_seed_same_bytes(tmp_path):
    a, b, c = (Layout(tmp_path / x) for x in "abc")
    for layout in (a, b):
        generate(layout, START, 2, 800, seed=3, faults=True, gzip=True)
    generate(c, START, 2, 800, seed=4, faults=True, gzip=True)
    da, db, dc = _digest(a.home), _digest(b.home), _digest(c.home)
    assert da == db
    assert len(da) > 10
    assert da != dc  # another seed, another world


def test_manifest_columns_and_types_follow_the_contract(clean_world):
    layout, _ = clean_world
    paths = _manifests(layout)
    exts = {re.sub(r"^manifest-\d{4}-\d{2}-\d{2}-\d+\.", "", p.name) for p in paths}
    assert exts == {"csv.gz", "parquet", "ndjson.gz"}
    ts = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?(Z|\+00:00|\+0000)?$")
    offsets: set[str] = set()
    for p in paths:
        f = _read(p)
        assert set(f.columns) == set(S.MANIFEST_SCHEMA), p.name
        if p.name.endswith(".parquet"):
            assert f.schema[S.FILED_AT] == pl.Datetime("us", "UTC")
            assert f.schema[S.DECLARED_VALUE] == pl.Float64
            continue
        text = f.select(pl.all().cast(pl.String))
        filed = text[S.FILED_AT]
        assert filed.str.contains(ts.pattern).all(), p.name
        offsets |= set(filed.str.extract(r"(Z|\+00:00|\+0000)$").drop_nulls().unique().to_list())
        assert text[S.ARRIVAL_DATE].str.to_date("%Y-%m-%d", strict=True).null_count() == 0
        assert set(text[S.ENTRY_TYPE].unique()) <= set(S.ENTRY_TYPES)
        assert set(text[S.MODE].unique()) <= set(S.MODES)
        assert text[S.PORT_OF_ENTRY].str.contains(r"^\d{4}$").all()
        assert set(text[S.KNOWN_CONSIGNOR].drop_nulls().unique()) <= {"true", "false"}
        assert text[S.DECLARED_VALUE].cast(pl.Float64).min() >= 0
        assert text[S.GROSS_WEIGHT_KG].cast(pl.Float64).min() > 0
        assert text[S.HTS_CODE].drop_nulls().str.replace_all(".", "", literal=True).str.contains(r"^\d{6,10}$").all()
        assert set(text[S.TRUSTED_TRADER].drop_nulls().unique()) <= set(S.TRUSTED_TRADER_KINDS)
    assert offsets == {"Z", "+00:00", "+0000"}
    rows = _good_manifest_rows(layout)
    # codes keep their leading zeros (Boston, Hartford, Newark ZIP codes start with 0)
    assert rows[S.CONSIGNEE_POSTAL_CODE].str.starts_with("0").any()
    assert rows[S.CONSIGNEE_POSTAL_CODE].str.len_chars().eq(5).all()
    assert {"USD", "CNY", "MXN"} <= set(rows[S.CURRENCY].unique())
    assert {"express", "postal", "air_cargo", "truck"} <= set(rows[S.MODE].unique())
    postal = rows.filter(pl.col(S.MODE) == "postal")
    assert (postal[S.ENTRY_TYPE] == "postal").all()


def test_truth_covers_every_shipment_and_amendments_are_later_filings(clean_world):
    layout, summary = clean_world
    truth = pl.read_parquet(layout.truth / "*" / "truth.parquet")
    assert truth.schema == pl.Schema(S.TRUTH_SCHEMA)
    assert truth[S.SHIPMENT_ID].is_unique().all()
    rows = _good_manifest_rows(layout)
    assert set(rows[S.SHIPMENT_ID].unique()) == set(truth[S.SHIPMENT_ID])
    assert truth.height == summary.totals()["shipments"]
    # amendments: the same shipment filed again, later, in the same or a later file
    twice = (
        rows.group_by(S.SHIPMENT_ID)
        .agg(pl.col(S.FILED_AT).str.slice(0, 19).alias("t"))
        .filter(pl.col("t").list.len() == 2)
    )
    assert twice.height == summary.totals()["amendments"] > 0
    assert twice.select(pl.col("t").list.get(1) > pl.col("t").list.get(0)).to_series().all()
    # files are ordered by name as written: amendments never come before their original
    schemes = set(truth.filter(pl.col(S.SCHEME).is_not_null())[S.SCHEME].unique())
    assert schemes <= {"precursor", "pill_press", "pills_mx", "reshipper"} and len(schemes) >= 3
    illicit = truth.filter(pl.col(S.CELL_ID).is_not_null())
    assert illicit[S.TRUE_CLASS].cast(pl.String).is_in(S.POSITIVE_OUTCOMES).all()


@pytest.mark.parametrize(("prevalence", "days", "per_day"), [(0.01, 2, 20_000), (1e-3, 3, 20_000), (1e-4, 2, 60_000)])
def test_prevalence_is_honoured(tmp_path, prevalence, days, per_day):
    """Rare worlds generate fine: the share of positives is the one asked for, within four
    binomial standard deviations (the count is a draw, the same for the same seed)."""
    layout = Layout(tmp_path)
    summary = generate(layout, START, days, per_day, seed=1, prevalence=prevalence)
    t = summary.totals()
    expected = prevalence * t["shipments"]
    assert abs(t["positives"] - expected) <= 4 * np.sqrt(expected) + 1, (t["positives"], expected)
    assert t["positives"] > 0
    truth = pl.read_parquet(layout.truth / "*" / "truth.parquet")
    assert truth[S.TRUE_CLASS].cast(pl.String).is_in(S.POSITIVE_OUTCOMES).sum() == t["positives"]
    assert 0.0005 < DEFAULT_PREVALENCE < 0.01


def test_a_new_scheme_appears_mid_run_that_early_exams_never_saw(tmp_path):
    """From about 60 % of the run, precursors from India by mail and air cargo under everyday
    covers: absent before, never named, never from the origins the analyst rules watch."""
    from riskpipe.features.lexicon import load_lexicon, normalise_text

    layout = Layout(tmp_path)
    days = 10
    generate(layout, START, days, 3000, seed=2, prevalence=0.01)
    truth = pl.read_parquet(layout.truth / "*" / "truth.parquet")
    new = truth.filter(pl.col(S.SCHEME) == "precursor_in")
    assert new.height > 10
    first = START + timedelta(days=round(0.6 * days))
    assert new[S.ARRIVAL_DATE].min() == first
    outcomes = pl.read_csv(layout.landing / "outcomes" / "*.csv", infer_schema=False)
    early = outcomes.filter(pl.col(S.EXAM_DATE) < first.isoformat())
    assert early.join(new, on=S.SHIPMENT_ID).height == 0
    rows = _good_manifest_rows(layout).unique(S.SHIPMENT_ID, keep="first").join(new, on=S.SHIPMENT_ID)
    assert set(rows[S.COUNTRY_OF_ORIGIN]) == {"IN"}
    assert rows.filter(pl.col(S.MODE) == "postal").height > rows.height / 3
    terms = load_lexicon().terms("precursors")
    named = pl.select(
        normalise_text(rows[S.DESCRIPTION]).str.contains_any(terms, ascii_case_insensitive=True)
    ).to_series()
    assert not named.any()


def test_honest_partner_declarations_disagree_too(clean_world):
    """FOB against retail value, net against gross weight, a generic Spanish text, or none at
    all: a partner mismatch is a lead, not proof."""
    layout, _ = clean_world
    files = sorted(layout.landing.glob("partner-exports-*"))
    partner = pl.concat([_read(p).select(pl.col(c).cast(pl.String) for c in S.PARTNER_SCHEMA) for p in files])
    truth = pl.read_parquet(layout.truth / "*" / "truth.parquet").filter(pl.col(S.CELL_ID).is_null())
    rows = _good_manifest_rows(layout).unique(S.SHIPMENT_ID, keep="first")
    mx = rows.filter(pl.col(S.COUNTRY_OF_ORIGIN) == "MX").join(truth, on=S.SHIPMENT_ID)
    j = mx.join(partner, on=S.SHIPMENT_ID, how="left", suffix="_px")
    missing = j[S.EXPORTER_NAME].null_count() / j.height
    assert 0.05 < missing < 0.25  # some honest declarations are never sent
    j = j.filter(pl.col(S.EXPORTER_NAME).is_not_null()).with_columns(
        (
            pl.col(S.DECLARED_VALUE).cast(pl.Float64)
            / pl.col(S.CURRENCY).replace_strict(["USD", "MXN"], [1.0, 17.5], default=None)
        ).alias("usd")
    )
    j = j.filter(pl.col("usd").is_not_null())
    ratio = (j["usd"] / j[S.PARTNER_DECLARED_VALUE_USD].cast(pl.Float64)).log().abs()
    assert (ratio > np.log(1.5)).mean() > 0.1
    wratio = (j[S.GROSS_WEIGHT_KG].cast(pl.Float64) / j[f"{S.GROSS_WEIGHT_KG}_px"].cast(pl.Float64)).log().abs()
    assert (wratio > np.log(1.25)).mean() > 0.05
    assert j[f"{S.DESCRIPTION}_px"].str.contains("mercancia|articulos|productos|ropa").mean() > 0.1


def test_outcomes_only_for_examined_past_days_and_equal_to_truth(clean_world):
    layout, summary = clean_world
    out_dir = layout.landing / "outcomes"
    days = [START + timedelta(days=i) for i in range(DAYS)]
    assert sorted(p.name for p in out_dir.iterdir()) == [f"outcomes-{d.isoformat()}.csv" for d in days[:-1]]
    truth = pl.read_parquet(layout.truth / "*" / "truth.parquet")
    for d in days[:-1]:
        o = pl.read_csv(out_dir / f"outcomes-{d.isoformat()}.csv", infer_schema=False)
        assert o.columns == [*S.LABEL_SCHEMA, "recorded_at"]
        assert (o[S.EXAM_DATE] == d.isoformat()).all()
        # recorded the evening of the exam: the next night's features know it, D's do not
        assert (o["recorded_at"] == f"{d.isoformat()}T20:00:00Z").all()
        assert set(o[S.EXAM_REASON].unique()) == {"targeted", "random"}
        j = o.join(truth.with_columns(pl.col(S.TRUE_CLASS).cast(pl.String)), on=S.SHIPMENT_ID, how="left")
        assert j[S.ARRIVAL_DATE].null_count() == 0  # every examined id is a real shipment
        assert (j[S.ARRIVAL_DATE] == d).all()
        assert (j[S.OUTCOME] == j[S.TRUE_CLASS]).all()
        day_total = truth.filter(pl.col(S.ARRIVAL_DATE) == d).height
        assert 0 < o.height < 0.03 * day_total  # labels exist only for the few examined
    # targeted exams find more than random ones (the rules are not useless)
    o = pl.read_csv(out_dir / "*.csv", infer_schema=False)
    hit = (
        o.with_columns(pl.col(S.OUTCOME).is_in(S.POSITIVE_OUTCOMES).alias("hit"))
        .group_by(S.EXAM_REASON)
        .agg(pl.col("hit").mean())
    )
    rates = dict(zip(hit[S.EXAM_REASON], hit["hit"], strict=False))
    assert rates["targeted"] > rates["random"]
    assert summary.days[-1].examined == 0


def test_partner_exports_for_mexico_origin(clean_world):
    layout, _ = clean_world
    files = sorted(layout.landing.glob("partner-exports-*"))
    assert len(files) == DAYS
    partner = pl.concat([_read(p).select(pl.col(c).cast(pl.String) for c in S.PARTNER_SCHEMA) for p in files])
    assert set(partner.columns) == set(S.PARTNER_SCHEMA)
    truth = pl.read_parquet(layout.truth / "*" / "truth.parquet")
    j = partner.join(truth, on=S.SHIPMENT_ID, how="left")
    assert j[S.ARRIVAL_DATE].null_count() == 0
    rows = _good_manifest_rows(layout).unique(S.SHIPMENT_ID, keep="first")
    legit = j.filter(pl.col(S.CELL_ID).is_null()).join(
        rows.select(S.SHIPMENT_ID, S.COUNTRY_OF_ORIGIN), on=S.SHIPMENT_ID
    )
    assert (legit[S.COUNTRY_OF_ORIGIN] == "MX").all()
    assert legit.height > 20


def test_faults_write_bad_rows_and_broken_files(world):
    layout, summary = world
    day = START.isoformat()
    names = {p.name: p for p in _manifests(layout) if day in p.name}
    sizes = {n: p.stat().st_size for n, p in names.items()}
    assert any(s == 0 for s in sizes.values())  # an empty file
    broken_parquet = [p for n, p in names.items() if n.endswith(".parquet") and p.stat().st_size < 20_000]
    assert broken_parquet
    with pytest.raises((pl.exceptions.PolarsError, OSError)):
        pl.read_parquet(broken_parquet[0])
    not_utf8 = missing = 0
    for p in names.values():
        if not p.name.endswith(".csv") or p.stat().st_size == 0:
            continue
        raw = p.read_bytes()
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            not_utf8 += 1
            continue
        header = raw.split(b"\n", 1)[0].decode().split(",")
        missing += S.DECLARED_VALUE not in header
    assert not_utf8 == 1 and missing == 1
    assert summary.days[0].files == summary.days[1].files + 3
    # bad rows inside good files
    good = [p for p in _manifests(layout) if int(re.search(r"-(\d+)\.", p.name).group(1)) <= 3]  # 3 files a day
    assert len(good) == 3 * DAYS
    rows = pl.concat([_read(p).select(pl.col(c).cast(pl.String) for c in S.MANIFEST_SCHEMA) for p in good])
    assert (rows[S.COUNTRY_OF_ORIGIN] == "XX").any()
    assert (rows[S.CURRENCY] == "XYZ").any()
    assert (rows[S.DECLARED_VALUE] == "N/A").any() or (rows[S.ARRIVAL_DATE] == "2026-02-30").any()
    assert rows[S.DESCRIPTION].null_count() > 0
    assert summary.totals()["fault_rows"] > 0


def test_summary_rows_print_days_and_total(world):
    _, summary = world
    rows = summary.as_rows()
    assert len(rows) == DAYS + 1
    assert rows[-1][0] == "total"
    assert all(len(r) == len(summary.columns) for r in rows)
    assert rows[-1][1] == f"{summary.totals()['shipments']:,}"


def test_generate_rejects_bad_arguments(tmp_path):
    from riskpipe.errors import RiskpipeError

    with pytest.raises(RiskpipeError, match="days"):
        generate(Layout(tmp_path), START, 0, 10, seed=1)
    with pytest.raises(RiskpipeError, match="prevalence"):
        generate(Layout(tmp_path), START, 1, 10, seed=1, prevalence=2.0)


def test_signals_are_noisy_no_keyword_separates_classes(clean_world):
    layout, _ = clean_world
    rows = _good_manifest_rows(layout).unique(S.SHIPMENT_ID, keep="first")
    truth = pl.read_parquet(layout.truth / "*" / "truth.parquet")
    j = rows.join(truth.select(S.SHIPMENT_ID, S.CELL_ID), on=S.SHIPMENT_ID)
    j = j.with_columns(
        pl.col(S.CELL_ID).is_not_null().alias("bad"), pl.col(S.DESCRIPTION).str.to_lowercase().alias("d")
    )
    for word in ("cas", "dog food", "machine parts", "gift", "corsets"):
        hit = j.filter(pl.col("d").str.contains(word, literal=True))
        assert hit.height > 0
        assert hit["bad"].mean() < 0.9, word  # legitimate parcels share the word
    assert j.filter(pl.col("bad"))[S.SHIPPER_COUNTRY].n_unique() >= 2
    assert np.isfinite(j.filter(~pl.col("bad"))[S.DECLARED_VALUE].cast(pl.Float64).mean())
