from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl

from riskpipe import schema as S
from riskpipe.report import bar_chart, psi, render_report


def test_psi_is_zero_for_same_distribution_and_large_for_shift():
    rng = np.random.default_rng(0)
    base = pl.Series(rng.normal(size=20_000))
    same = pl.Series(rng.normal(size=20_000))
    shifted = pl.Series(rng.normal(1.0, 1.0, size=20_000))
    assert psi(base, same) < 0.01
    assert psi(base, shifted) > 0.25
    assert psi(pl.Series([], dtype=pl.Float64), same) is None


def test_bar_chart_escapes_labels():
    svg = bar_chart([("<script>alert(1)</script>", 3.0)])
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg


def test_report_renders_manifest_text_inert_and_counts():
    scores = pl.DataFrame({S.SHIPMENT_ID: ["a", "b"], S.RISK_SCORE: [0.9, 0.1]})
    targets = pl.DataFrame(
        {
            S.RANK: [1], S.SHIPMENT_ID: ["a"], S.PORT_OF_ENTRY: ["4701"], S.RISK_SCORE: [0.9],
            S.SELECTION: ["risk"], S.REASON_TEXT: ["precursor named"], S.DESCRIPTION: ["<img src=x onerror=alert(1)>"],
            S.COUNTRY_OF_ORIGIN: ["CN"], S.NETWORK_ID: [None],
        }
    )
    raw = pl.DataFrame({S.MODE: ["express", "postal"], S.PORT_OF_ENTRY: ["4701", "4771"]})
    html = render_report(date(2026, 1, 5), scores, targets, raw, {"bad_type:declared_value": 3}, "v1", None, [], "now")
    assert "<img src=x" not in html
    assert "&lt;img src=x" in html
    assert ">3</text>" in html  # the quarantine bar shows its count
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")  # self-contained


def test_report_of_a_rules_only_night_carries_an_escaped_banner():
    scores = pl.DataFrame({S.SHIPMENT_ID: ["a"], S.RISK_SCORE: [0.2]})
    targets = pl.DataFrame(
        {
            S.RANK: [1], S.SHIPMENT_ID: ["a"], S.PORT_OF_ENTRY: ["4701"], S.RISK_SCORE: [0.2],
            S.SELECTION: ["risk"], S.REASON_TEXT: [""], S.DESCRIPTION: ["x"], S.COUNTRY_OF_ORIGIN: ["CN"],
            S.NETWORK_ID: [None],
        }
    )
    raw = pl.DataFrame({S.MODE: ["express"], S.PORT_OF_ENTRY: ["4701"]})
    args = (date(2026, 1, 5), scores, targets, raw, {}, None, None, [], "now")
    assert "No usable model tonight" not in render_report(*args)
    html = render_report(*args, champion_problem="the champion is not usable: model <b>m1</b> is not signed")
    assert 'class="banner" role="alert"' in html and "No usable model tonight" in html
    assert "model &lt;b&gt;m1&lt;/b&gt; is not signed" in html


def test_report_counts_oea_claims_confirmed_and_not_confirmed() -> None:
    from riskpipe.report import oea_claim_counts

    raw = pl.DataFrame({S.TRUSTED_TRADER: ["mx_oea", "mx_oea", "mx_oea", "ctpat", None]})
    feats = pl.DataFrame({"xb_oea_confirmed": [1, 0, 0, 0, 0], "xb_oea_unconfirmed": [0, 1, 0, 0, 0]},
                         schema={"xb_oea_confirmed": pl.Int8, "xb_oea_unconfirmed": pl.Int8})
    counts = oea_claim_counts(raw, feats)
    assert counts == {"confirmed": 1, "not_confirmed": 1, "not_verified": 1}
    assert oea_claim_counts(raw.filter(pl.col(S.TRUSTED_TRADER) != "mx_oea"), feats.head(2)) is None
    scores = pl.DataFrame({S.SHIPMENT_ID: ["a"], S.RISK_SCORE: [0.2]})
    targets = pl.DataFrame({S.RANK: [1], S.SHIPMENT_ID: ["a"], S.PORT_OF_ENTRY: ["2304"], S.RISK_SCORE: [0.2],
                            S.SELECTION: ["risk"], S.REASON_TEXT: [""], S.DESCRIPTION: ["x"],
                            S.COUNTRY_OF_ORIGIN: ["MX"], S.NETWORK_ID: [None]})
    day = pl.DataFrame({S.MODE: ["truck"], S.PORT_OF_ENTRY: ["2304"]})
    args = (date(2026, 1, 5), scores, targets, day, {}, None, None, [], "now")
    assert "Mexico OEA claims" not in render_report(*args)
    html = " ".join(render_report(*args, oea_claims=counts).split())
    assert "1 confirmed on the partner's OEA list · 1 not confirmed (no trusted-trader credit) · 1 not verified" in html
