from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl

from riskpipe import schema as S
from riskpipe.charts import bars
from riskpipe.report import render_report


def test_bar_chart_escapes_labels():
    svg = bars([("<script>alert(1)</script>", 3.0)], "t")
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg


def test_report_renders_manifest_text_inert_and_counts():
    scores = pl.DataFrame({S.SHIPMENT_ID: ["a", "b"], S.RISK_SCORE: [0.9, 0.1]})
    targets = pl.DataFrame(
        {
            S.RANK: [1],
            S.SHIPMENT_ID: ["a"],
            S.PORT_OF_ENTRY: ["4701"],
            S.RISK_SCORE: [0.9],
            S.SELECTION: ["risk"],
            S.REASON_TEXT: ["precursor named"],
            S.DESCRIPTION: ["<img src=x onerror=alert(1)>"],
            S.COUNTRY_OF_ORIGIN: ["CN"],
            S.NETWORK_ID: [None],
        }
    )
    raw = pl.DataFrame({S.MODE: ["express", "postal"], S.PORT_OF_ENTRY: ["4701", "4771"]})
    html = render_report(date(2026, 1, 5), scores, targets, raw, {"bad_type:declared_value": 3}, "v1", None, [], "now")
    assert "<img src=x" not in html
    assert "&lt;img src=x" in html
    assert ">3</text>" in html  # the quarantine bar shows its count
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")  # self-contained
    assert "Created with Matplotlib" in html  # the charts are matplotlib's


def test_report_of_a_rules_only_night_carries_an_escaped_banner():
    scores = pl.DataFrame({S.SHIPMENT_ID: ["a"], S.RISK_SCORE: [0.2]})
    targets = pl.DataFrame(
        {
            S.RANK: [1],
            S.SHIPMENT_ID: ["a"],
            S.PORT_OF_ENTRY: ["4701"],
            S.RISK_SCORE: [0.2],
            S.SELECTION: ["risk"],
            S.REASON_TEXT: [""],
            S.DESCRIPTION: ["x"],
            S.COUNTRY_OF_ORIGIN: ["CN"],
            S.NETWORK_ID: [None],
        }
    )
    raw = pl.DataFrame({S.MODE: ["express"], S.PORT_OF_ENTRY: ["4701"]})
    args = (date(2026, 1, 5), scores, targets, raw, {}, None, None, [], "now")
    assert "No usable model tonight" not in render_report(*args)
    html = render_report(*args, champion_problem="the champion is not usable: model <b>m1</b> is not signed")
    assert 'class="banner" role="alert"' in html and "No usable model tonight" in html
    assert "model &lt;b&gt;m1&lt;/b&gt; is not signed" in html


def _drift_home(tmp_path, n_days: int):
    """A store whose history starts on day 0: ``hist_cons_addr_parcels_30d`` grows while its
    window fills (as in any new home), ``declared_value_usd`` does not move."""
    from datetime import timedelta

    from riskpipe.store import Layout, write_parquet_atomic

    layout = Layout(tmp_path / "home")
    start = date(2026, 1, 1)
    rng = np.random.default_rng(1)
    days = [start + timedelta(days=i) for i in range(n_days)]
    for i, d in enumerate(days):
        write_parquet_atomic(pl.DataFrame({S.SHIPMENT_ID: ["x"]}), layout.raw_shipments_day(d) / "part-0.parquet")
        n = 2000
        filled = min(i, 30) / 30  # the 30-day window fills over the first 30 days
        feats = pl.DataFrame(
            {
                "hist_cons_addr_parcels_30d": rng.poisson(3.0 * filled + 0.01, n).astype(float),
                "declared_value_usd": rng.lognormal(3, 1, n),
            }
        )
        write_parquet_atomic(feats, layout.day_dir(layout.features, d) / "features.parquet")
    return layout, days


def test_drift_does_not_call_history_warm_up_a_major_shift(tmp_path):
    from riskpipe.report import drift_table

    layout, days = _drift_home(tmp_path, 20)  # day 19: the 30-day window is still filling
    day = days[-1]
    feats = pl.read_parquet(layout.day_dir(layout.features, day) / "features.parquet")
    scores = pl.DataFrame({S.SHIPMENT_ID: ["a"], S.RISK_SCORE: [0.1]})
    rows = {r["name"]: r for r in drift_table(layout, day, scores, feats, list(feats.columns))}
    assert rows["hist_cons_addr_parcels_30d"]["level"] == "warming up"
    assert "history starts 2026-01-01" in rows["hist_cons_addr_parcels_30d"]["warming"]
    assert rows["declared_value_usd"]["level"] == "stable"
    assert rows["declared_value_usd"]["words"].startswith("the median declared value (USD)")


def test_drift_compares_history_features_with_full_window_days_only(tmp_path):
    from riskpipe.report import drift_table

    layout, days = _drift_home(tmp_path, 75)  # days 30..73 have a full window; 44 of them are references
    day = days[-1]
    feats = pl.read_parquet(layout.day_dir(layout.features, day) / "features.parquet")
    scores = pl.DataFrame({S.SHIPMENT_ID: ["a"], S.RISK_SCORE: [0.1]})
    row = next(
        r for r in drift_table(layout, day, scores, feats, ["hist_cons_addr_parcels_30d"]) if r["name"] != S.RISK_SCORE
    )
    assert row["level"] == "stable" and row["days"] == 30  # all 30 reference days had a full window
    layout, days = _drift_home(tmp_path / "b", 45)  # references: days 14..43, of which 30..43 full
    day = days[-1]
    feats = pl.read_parquet(layout.day_dir(layout.features, day) / "features.parquet")
    row = next(
        r for r in drift_table(layout, day, scores, feats, ["hist_cons_addr_parcels_30d"]) if r["name"] != S.RISK_SCORE
    )
    assert row["days"] == 14 and row["level"] == "stable", row  # like with like: the warm-up days left out


def test_drift_reads_a_bounded_sample_of_each_reference_day(tmp_path, monkeypatch):
    """Each reference day is read as every k-th row, at most ``DRIFT_PAST_DAY_ROWS`` rows (the
    table held 12 feature columns of 30 whole days: ~11 GB at 4 M rows a day); the PSI is that
    of those samples."""
    from riskpipe import report
    from riskpipe.drift import psi
    from riskpipe.report import drift_table, sampled_rows

    layout, days = _drift_home(tmp_path, 45)
    day = days[-1]
    feats = pl.read_parquet(layout.day_dir(layout.features, day) / "features.parquet")
    files = [layout.day_dir(layout.features, d) / "features.parquet" for d in days[-31:-1]]
    sample = sampled_rows(files[:2], ["declared_value_usd"], 300)  # 2000 rows a day: every 7th
    whole = pl.concat([pl.read_parquet(f, columns=["declared_value_usd"]) for f in files[:2]])
    assert sample.height == 2 * 286
    assert sample["declared_value_usd"].to_list()[:286] == whole["declared_value_usd"].to_list()[0:2000:7]
    monkeypatch.setattr(report, "DRIFT_PAST_DAY_ROWS", 300)
    scores = pl.DataFrame({S.SHIPMENT_ID: ["a"], S.RISK_SCORE: [0.1]})
    row = next(r for r in drift_table(layout, day, scores, feats, ["declared_value_usd"]) if r["name"] != S.RISK_SCORE)
    expected = psi(sampled_rows(files, ["declared_value_usd"], 300)["declared_value_usd"], feats["declared_value_usd"])
    full = psi(pl.concat([pl.read_parquet(f) for f in files])["declared_value_usd"], feats["declared_value_usd"])
    assert row["psi"] == expected and row["days"] == 30 and expected != full


def test_drift_in_words():
    from riskpipe.report import describe_change

    assert describe_change("new_account", pl.Series([1] * 12 + [0] * 88), pl.Series([1] * 19 + [0] * 81)) == (
        "the share of parcels with new account rose from 12% to 19%"
    )
    assert describe_change(
        "hist_cons_addr_parcels_30d", pl.Series([0] * 80 + [2] * 20), pl.Series([0] * 60 + [2] * 40)
    ) == ("the share of parcels with any consignee address parcels in 30 days rose from 20% to 40%")
    assert describe_change(
        "gross_weight_kg", pl.Series([1000.0, 2000.0, 3000.0]), pl.Series([8000.0, 8390.0, 9000.0])
    ) == ("the median gross weight (kg) rose from 2,000 to 8,390")


def test_report_charts_are_matplotlib_svg_with_escaped_data_labels():
    from riskpipe import report

    scores = pl.DataFrame({S.SHIPMENT_ID: ["a", "b"], S.RISK_SCORE: [0.9, 0.1]})
    targets = pl.DataFrame(
        {
            S.RANK: [1],
            S.SHIPMENT_ID: ["a"],
            S.PORT_OF_ENTRY: ["<b>47</b>"],
            S.RISK_SCORE: [0.9],
            S.SELECTION: ["risk"],
            S.REASON_TEXT: ["x"],
            S.DESCRIPTION: ["x"],
            S.COUNTRY_OF_ORIGIN: ["CN"],
            S.NETWORK_ID: [None],
        }
    )
    raw = pl.DataFrame({S.MODE: ["express"] * 8390, S.PORT_OF_ENTRY: ['"><script>alert(1)</script>'] * 8390})
    html = render_report(date(2026, 1, 5), scores, targets, raw, {}, "v1", None, [], "now", port_slots={"<b>47</b>": 3})
    assert html.count("Created with Matplotlib") >= 4  # modes, ports, slot use, scores
    assert "<script>" not in html and "<b>47</b>" not in html
    assert "&lt;script&gt;" in html and "&lt;b&gt;47&lt;/b&gt;" in html
    assert "8,390" in html and "8.39e+03" not in html  # thousands separators
    assert not hasattr(report, "bar_chart") and not hasattr(report, "histogram")  # no hand-drawn charts left


def test_report_counts_oea_claims_confirmed_and_not_confirmed() -> None:
    from riskpipe.report import oea_claim_counts

    raw = pl.DataFrame({S.TRUSTED_TRADER: ["mx_oea", "mx_oea", "mx_oea", "ctpat", None]})
    feats = pl.DataFrame(
        {"xb_oea_confirmed": [1, 0, 0, 0, 0], "xb_oea_unconfirmed": [0, 1, 0, 0, 0]},
        schema={"xb_oea_confirmed": pl.Int8, "xb_oea_unconfirmed": pl.Int8},
    )
    counts = oea_claim_counts(raw, feats)
    assert counts == {"confirmed": 1, "not_confirmed": 1, "not_verified": 1}
    assert oea_claim_counts(raw.filter(pl.col(S.TRUSTED_TRADER) != "mx_oea"), feats.head(2)) is None
    scores = pl.DataFrame({S.SHIPMENT_ID: ["a"], S.RISK_SCORE: [0.2]})
    targets = pl.DataFrame(
        {
            S.RANK: [1],
            S.SHIPMENT_ID: ["a"],
            S.PORT_OF_ENTRY: ["2304"],
            S.RISK_SCORE: [0.2],
            S.SELECTION: ["risk"],
            S.REASON_TEXT: [""],
            S.DESCRIPTION: ["x"],
            S.COUNTRY_OF_ORIGIN: ["MX"],
            S.NETWORK_ID: [None],
        }
    )
    day = pl.DataFrame({S.MODE: ["truck"], S.PORT_OF_ENTRY: ["2304"]})
    args = (date(2026, 1, 5), scores, targets, day, {}, None, None, [], "now")
    assert "Mexico OEA claims" not in render_report(*args)
    html = " ".join(render_report(*args, oea_claims=counts).split())
    assert "1 confirmed on the partner's OEA list · 1 not confirmed (no trusted-trader credit) · 1 not verified" in html


def test_report_shows_the_top_risk_the_list_could_not_examine() -> None:
    from riskpipe.config import Settings
    from riskpipe.rank import rank_day, top_risk_gaps

    # port 4701 (ceiling 2) holds the four highest scores, 2720 (ceiling 2) low ones
    ids = ["h0", "h1", "h2", "h3", "l0", "l1"]
    scores = pl.DataFrame(
        {
            S.SHIPMENT_ID: ids,
            S.RISK_SCORE: [0.9, 0.8, 0.7, 0.6, 0.1, 0.05],
            S.REASONS: [[]] * 6,
            S.MODEL_VERSION: ["v1"] * 6,
        },
        schema_overrides={S.REASONS: pl.List(pl.String)},
    )
    raw = pl.DataFrame(
        {
            S.SHIPMENT_ID: ids,
            S.PORT_OF_ENTRY: ["4701"] * 4 + ["2720"] * 2,
            S.ARRIVAL_DATE: [date(2026, 1, 5)] * 6,
            S.MODE: ["express"] * 6,
        }
    )
    settings = Settings(port_capacity={"4701": 2, "2720": 2}, exploration_share=0.0)
    targets = rank_day(scores, raw, settings, texts={})
    gaps = top_risk_gaps(scores, raw, targets, settings)
    assert gaps["not_examined"] == 2 and gaps["reasons"]["port_ceiling"]["shipments"] == 2
    html = " ".join(render_report(date(2026, 1, 5), scores, targets, raw, {}, "v1", None, [], "now", gaps=gaps).split())
    assert "Top risk not examined" in html
    assert (
        "of the day&#39;s top-4 risk (risk mass 3.00), 2 were not examined (risk mass 1.30): 2 because their port&#39;s ceiling"
        in html
    )
    assert "Top risk not examined" not in render_report(
        date(2026, 1, 5), scores, targets, raw, {}, "v1", None, [], "now"
    )
