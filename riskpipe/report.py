"""The nightly report: one self-contained HTML page (no network, charts as inline SVG).

Everything shown that comes from manifests is escaped by Jinja2's autoescape.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, timedelta

import jinja2
from markupsafe import escape
import polars as pl

from riskpipe import schema as S
from riskpipe.store import Layout

PSI_BINS = 10
DRIFT_WINDOW_DAYS = 30


# ---------------------------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------------------------
def psi(expected: pl.Series, actual: pl.Series, bins: int = PSI_BINS) -> float | None:
    """Population stability index of ``actual`` against ``expected`` on ``expected``'s deciles.

    Conventional reading: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift.
    """
    expected = expected.drop_nulls().cast(pl.Float64)
    actual = actual.drop_nulls().cast(pl.Float64)
    if expected.len() == 0 or actual.len() == 0:
        return None
    edges = sorted({float(expected.quantile(q / bins, "linear")) for q in range(1, bins)})
    def shares(values: pl.Series) -> list[float]:
        idx = values.cut(edges, labels=[str(i) for i in range(len(edges) + 1)]).cast(pl.String).cast(pl.Int32)
        counts = idx.value_counts().sort(idx.name)
        full = dict.fromkeys(range(len(edges) + 1), 0)
        for k, c in counts.iter_rows():
            full[k] = c
        n = values.len()
        return [max(c / n, 1e-4) for c in full.values()]
    e, a = shares(expected), shares(actual)
    return float(sum((ai - ei) * math.log(ai / ei) for ei, ai in zip(e, a)))


def drift_table(layout: Layout, day: date, scores: pl.DataFrame, features: pl.DataFrame | None,
                columns: list[str]) -> list[dict]:
    """PSI of the score and of key features on ``day`` against the previous 30 days' outputs."""
    past_days = [day - timedelta(days=i) for i in range(1, DRIFT_WINDOW_DAYS + 1)]
    rows: list[dict] = []
    score_files = [layout.day_dir(layout.scores, d) / "scores.parquet" for d in past_days]
    score_files = [str(f) for f in score_files if f.exists()]
    if score_files:
        past = pl.scan_parquet(score_files).select(S.RISK_SCORE).collect()
        rows.append({"name": S.RISK_SCORE, "psi": psi(past[S.RISK_SCORE], scores[S.RISK_SCORE]), "days": len(score_files)})
    if features is not None:
        feat_files = [layout.day_dir(layout.features, d) / "features.parquet" for d in past_days]
        feat_files = [str(f) for f in feat_files if f.exists()]
        cols = [c for c in columns if c in features.columns and features.schema[c].is_numeric()]
        if feat_files and cols:
            past = pl.scan_parquet(feat_files).select(cols).collect()
            for col in cols:
                rows.append({"name": col, "psi": psi(past[col], features[col]), "days": len(feat_files)})
    for row in rows:
        v = row["psi"]
        row["level"] = "n/a" if v is None else ("major" if v > 0.25 else "moderate" if v > 0.1 else "stable")
    return rows


# ---------------------------------------------------------------------------------------------
# charts (inline SVG; plain and readable)
# ---------------------------------------------------------------------------------------------
def bar_chart(items: list[tuple[str, float]], width: int = 520, bar_h: int = 18, color: str = "#3b6ea8") -> str:
    """Horizontal bar chart as an SVG string; labels are escaped."""
    if not items:
        return "<p class='muted'>nothing to show</p>"
    top = max(v for _, v in items) or 1.0
    label_w, pad = 150, 4
    h = len(items) * (bar_h + pad) + pad
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{h}' role='img'>"]
    for i, (label, value) in enumerate(items):
        y = pad + i * (bar_h + pad)
        w = max(1.0, (width - label_w - 70) * value / top)
        parts.append(
            f"<text x='{label_w - 6}' y='{y + bar_h - 5}' text-anchor='end' font-size='12'>{escape(label)}</text>"
            f"<rect x='{label_w}' y='{y}' width='{w:.1f}' height='{bar_h}' fill='{color}'/>"
            f"<text x='{label_w + w + 4:.1f}' y='{y + bar_h - 5}' font-size='12'>{_fmt(value)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def histogram(values: pl.Series, bins: int = 40, width: int = 520, height: int = 160, log_y: bool = True) -> str:
    """Histogram of scores in [0, 1] as SVG (log-scaled counts: scores are very skewed)."""
    values = values.drop_nulls()
    if values.len() == 0:
        return "<p class='muted'>no scores</p>"
    idx = (values.clip(0.0, 1.0) * bins).floor().cast(pl.Int32).clip(0, bins - 1)
    counts = dict.fromkeys(range(bins), 0)
    for k, c in idx.value_counts().iter_rows():
        counts[int(k)] = int(c)
    top = max(counts.values())
    scale = (lambda c: math.log10(1 + c) / math.log10(1 + top)) if log_y else (lambda c: c / top)
    bw = (width - 40) / bins
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height + 30}' role='img'>"]
    for k, c in counts.items():
        bh = (height - 10) * scale(c) if c else 0
        parts.append(f"<rect x='{30 + k * bw:.1f}' y='{height - bh:.1f}' width='{bw - 1:.1f}' height='{bh:.1f}' "
                     f"fill='#c0504d'><title>{k / bins:.3f}-{(k + 1) / bins:.3f}: {c}</title></rect>")
    parts.append(f"<line x1='30' y1='{height}' x2='{width - 10}' y2='{height}' stroke='#333'/>")
    for t in (0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f"<text x='{30 + t * (width - 40):.1f}' y='{height + 15}' font-size='11' text-anchor='middle'>{t:g}</text>")
    parts.append(f"<text x='2' y='12' font-size='11'>{'log count' if log_y else 'count'}</text></svg>")
    return "".join(parts)


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.3f}"


# ---------------------------------------------------------------------------------------------
# page
# ---------------------------------------------------------------------------------------------
_TEMPLATE = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>riskpipe report {{ day }}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
h1{margin-bottom:0} .muted{color:#777} table{border-collapse:collapse;font-size:13px}
td,th{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:2em} .kpi{display:inline-block;margin-right:2em}
.kpi b{font-size:1.6em;display:block} .major{color:#b00} .moderate{color:#b70} .stable{color:#080}
.banner{background:#fde2e1;border:2px solid #b00;padding:.8em 1em;margin:1em 0}
.warn{border-left:4px solid #b70;background:#fff6e5;padding:4px 12px;margin:8px 0}
</style></head><body>
<h1>Targeting report, arrival date {{ day }}</h1>
{% if champion_problem %}<div class="banner" role="alert"><b>No usable model tonight: these targets were ranked by the
rules alone.</b> {{ champion_problem }}</div>
{% endif %}<p class="muted">model {{ model_version or "none (rules only)" }} &middot; generated {{ generated_at }}</p>
<div>
<span class="kpi"><b>{{ "{:,}".format(n_shipments) }}</b>shipments scored</span>
<span class="kpi"><b>{{ "{:,}".format(n_targets) }}</b>selected for exam</span>
<span class="kpi"><b>{{ "{:,}".format(n_exploration) }}</b>of them exploration</span>
<span class="kpi"><b>{{ "{:,}".format(n_quarantined) }}</b>rows quarantined</span>
</div>
<div class="grid">
<section><h2>Volumes by mode</h2>{{ chart_mode | safe }}</section>
<section><h2>Volumes by port (top 15)</h2>{{ chart_port | safe }}</section>
<section><h2>Quarantine by reason</h2>{{ chart_quarantine | safe }}</section>
{% if oea_claims %}<section><h2>Mexico OEA claims (mutual recognition)</h2>
<p>{{ "{:,}".format(oea_claims.confirmed) }} confirmed on the partner's OEA list ·
{{ "{:,}".format(oea_claims.not_confirmed) }} not confirmed (no trusted-trader credit)
{% if oea_claims.not_verified %}· {{ "{:,}".format(oea_claims.not_verified) }} not verified (no OEA list imported){% endif %}</p></section>{% endif %}
<section><h2>Risk score distribution</h2>{{ chart_scores | safe }}
<p class="muted">mean {{ "%.4f"|format(score_mean) }}, 99th percentile {{ "%.4f"|format(score_p99) }}</p></section>
</div>
<h2>Top targets</h2>
<table><tr><th>rank</th><th>shipment</th><th>port</th><th>score</th><th>selection</th><th>reasons</th><th>description</th><th>origin</th><th>network</th></tr>
{% for t in top %}<tr><td>{{ t.rank }}</td><td>{{ t.shipment_id }}</td><td>{{ t.port_of_entry }}</td>
<td>{{ "%.3f"|format(t.risk_score) }}</td><td>{{ t.selection }}</td><td>{{ t.reason_text }}</td>
<td>{{ t.description }}</td><td>{{ t.country_of_origin }}</td><td>{{ t.network_id or "" }}</td></tr>
{% endfor %}</table>
<h2>Model health</h2>
{% if model_warnings %}<div class="warn"><b>Model warnings</b><ul>{% for w in model_warnings %}<li>{{ w }}</li>{% endfor %}</ul></div>
{% endif %}{% if evaluation %}<table><tr>{% for k in evaluation[0].keys() %}<th>{{ k }}</th>{% endfor %}</tr>
{% for row in evaluation %}<tr>{% for v in row.values() %}<td>{{ v if v is string else ("%.3f"|format(v) if v is not none else "") }}</td>{% endfor %}</tr>{% endfor %}</table>
{% else %}<p class="muted">no evaluation recorded for this model</p>{% endif %}
<h3>Drift against the last {{ drift_window }} days (PSI)</h3>
{% if drift %}{{ chart_drift | safe }}<table><tr><th>column</th><th>PSI</th><th>level</th><th>days compared</th></tr>
{% for d in drift %}<tr><td>{{ d.name }}</td><td>{{ "%.3f"|format(d.psi) if d.psi is not none else "n/a" }}</td>
<td class="{{ d.level }}">{{ d.level }}</td><td>{{ d.days }}</td></tr>{% endfor %}</table>
{% else %}<p class="muted">no earlier nights to compare with</p>{% endif %}
</body></html>
"""
)


def oea_claim_counts(raw_day: pl.DataFrame, features: pl.DataFrame | None) -> dict[str, int] | None:
    """``mx_oea`` claims of the day: confirmed / not confirmed on the partner's OEA list, and not
    verified (no list imported for the day); None when nobody claims it."""
    claims = int((raw_day.get_column(S.TRUSTED_TRADER).cast(pl.String) == "mx_oea").sum()) \
        if S.TRUSTED_TRADER in raw_day.columns else 0
    if claims == 0:
        return None
    have = features is not None and {"xb_oea_confirmed", "xb_oea_unconfirmed"} <= set(features.columns)
    ok = int(features["xb_oea_confirmed"].sum()) if have else 0
    bad = int(features["xb_oea_unconfirmed"].sum()) if have else 0
    return {"confirmed": ok, "not_confirmed": bad, "not_verified": claims - ok - bad}


def render_report(
    day: date,
    scores: pl.DataFrame,
    targets: pl.DataFrame,
    raw_day: pl.DataFrame,
    quarantine_by_reason: dict[str, int],
    model_version: str | None,
    evaluation: list[dict] | None,
    drift: list[dict],
    generated_at: str,
    top_n: int = 50,
    champion_problem: str | None = None,
    model_warnings: Sequence[str] = (),
    oea_claims: dict[str, int] | None = None,
) -> str:
    """The report page for ``day`` as a string; ``champion_problem`` (why no model ranked the
    night) puts a banner at the top; ``model_warnings`` (``riskpipe.model.training_warnings`` of
    the champion) head the model section; ``oea_claims`` (:func:`oea_claim_counts`) counts the
    ``mx_oea`` claims confirmed and not confirmed on the partner's OEA list."""
    by_mode = raw_day.group_by(S.MODE).len().sort(["len", S.MODE], descending=[True, False])
    by_port = raw_day.group_by(S.PORT_OF_ENTRY).len().sort(["len", S.PORT_OF_ENTRY], descending=[True, False]).head(15)
    q_items = sorted(quarantine_by_reason.items(), key=lambda kv: (-kv[1], kv[0]))
    drift_items = [(d["name"], d["psi"]) for d in drift if d["psi"] is not None]
    n_explore = targets.filter(pl.col(S.SELECTION) == "exploration").height if targets.height else 0
    return _TEMPLATE.render(
        day=day.isoformat(),
        model_version=model_version,
        champion_problem=champion_problem,
        generated_at=generated_at,
        n_shipments=scores.height,
        n_targets=targets.height,
        n_exploration=n_explore,
        n_quarantined=sum(quarantine_by_reason.values()),
        chart_mode=bar_chart([(str(m), float(n)) for m, n in by_mode.iter_rows()]),
        chart_port=bar_chart([(str(p), float(n)) for p, n in by_port.iter_rows()], color="#6a8f3b"),
        chart_quarantine=bar_chart([(k, float(v)) for k, v in q_items], color="#a86b3b"),
        chart_scores=histogram(scores[S.RISK_SCORE]),
        score_mean=float(scores[S.RISK_SCORE].mean() or 0.0),
        score_p99=float(scores[S.RISK_SCORE].quantile(0.99) or 0.0),
        top=targets.sort(S.RANK).head(top_n).to_dicts(),
        evaluation=evaluation,
        drift=drift,
        drift_window=DRIFT_WINDOW_DAYS,
        chart_drift=bar_chart(drift_items, color="#7a5aa8"),
        model_warnings=list(model_warnings),
        oea_claims=oea_claims,
    )
