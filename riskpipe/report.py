"""The nightly report: one self-contained HTML page (no network, charts as inline SVG made by
matplotlib in :mod:`riskpipe.charts`).

Everything shown that comes from manifests is escaped by Jinja2's autoescape (and chart labels
by the chart module). Drift compares like with like: a history feature is compared only with
reference days whose own history window was already full (the store's first days have no
history, so a 30-day count grows for 30 days and looked like a major shift every night);
without enough such days it is "warming up", shown but not judged.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import jinja2
import polars as pl

from riskpipe import charts
from riskpipe import schema as S
from riskpipe.drift import psi
from riskpipe.names import ReferenceNames
from riskpipe.rank import gaps_sentence
from riskpipe.store import Layout

DRIFT_WINDOW_DAYS = 30
#: drift compares samples of a day (every k-th row of the id-sorted file, the smallest k that
#: keeps at most this many): the night's drift table held 12 feature columns of 30 reference
#: days whole (some 11 GB at 4 M rows a day); a PSI over ten bins from 100 k rows a day moves by
#: about 1e-4 (sampling noise ~ bins / rows), far below its 0.1 / 0.25 levels
DRIFT_PAST_DAY_ROWS = 100_000
DRIFT_TODAY_ROWS = 500_000
MIN_REFERENCE_DAYS = 7  # fewer comparable reference days than this: "warming up", not judged
HISTORY_LOOKBACK_DAYS = 90  # unwindowed history features (first seen, prior exams) warm up this long
_WINDOW = re.compile(r"_(\d+)d$")
_WORDS = [
    ("hist_", ""),
    ("cons_addr", "consignee address"),
    ("cons_name", "consignee name"),
    ("cons_phone", "consignee phone"),
    ("first_seen_days", "days since first seen"),
    ("prior_positives", "prior positive exams"),
    ("prior_exams", "prior exams"),
    ("_usd", " (USD)"),
    ("_kg", " (kg)"),
]


# ---------------------------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------------------------
def _number(value: object) -> float:
    """A Polars aggregate (mean, median) of a non-empty numeric series as a float."""
    if isinstance(value, (int, float)):
        return float(value)
    raise TypeError(f"expected a number, got {type(value).__name__}")


def warmup_days(column: str) -> int:
    """Days of history a feature needs before its values are comparable (0: none): the window of
    a ``hist_..._<N>d`` feature, ``HISTORY_LOOKBACK_DAYS`` for other history features."""
    if not column.startswith("hist_"):
        return 0
    m = _WINDOW.search(column)
    return int(m.group(1)) if m else HISTORY_LOOKBACK_DAYS


def feature_words(column: str) -> str:
    """A feature's name in words (``hist_cons_addr_parcels_30d`` -> ``consignee address parcels in 30 days``)."""
    text = column
    for a, b in _WORDS:
        text = text.replace(a, b)
    text = _WINDOW.sub(lambda m: f" in {m.group(1)} days", text)
    return text.replace("_", " ").strip()


def describe_change(name: str, past: pl.Series, now: pl.Series) -> str:
    """The shift in analysts' words: a share for yes/no and mostly-zero features, else the median."""
    past, now = past.drop_nulls().cast(pl.Float64), now.drop_nulls().cast(pl.Float64)
    if past.len() == 0 or now.len() == 0:
        return ""
    words = feature_words(name)

    def moved(a: float, b: float) -> str:
        return "rose" if b > a else "fell" if b < a else "stayed"

    binary = set(past.unique().to_list()) <= {0.0, 1.0} and set(now.unique().to_list()) <= {0.0, 1.0}
    if binary or _number((past == 0).mean()) > 0.5:
        a, b = _number((past != 0).mean()), _number((now != 0).mean())
        what = f"the share of parcels with {words}" if binary else f"the share of parcels with any {words}"
        return (
            f"{what} {moved(round(a, 3), round(b, 3))} from {a:.0%} to {b:.0%}"
            if moved(round(a, 3), round(b, 3)) != "stayed"
            else f"{what} stayed at {a:.0%}"
        )
    a, b = _number(past.median()), _number(now.median())
    fa, fb = charts.thousands(round(a, 3)), charts.thousands(round(b, 3))
    return f"the median {words} {moved(a, b)} from {fa} to {fb}" if fa != fb else f"the median {words} stayed at {fa}"


def sample_step(rows: int, most: int) -> int:
    """The smallest k such that every k-th of ``rows`` rows is at most ``most`` rows."""
    return max(1, math.ceil(rows / max(1, most)))


def sampled_rows(files: Sequence[str | Path], columns: list[str], most: int) -> pl.DataFrame:
    """``columns`` of each file, every k-th row (at most ``most`` rows a file), one file after
    the other (streaming: a file is never held whole)."""
    parts = []
    for f in files:
        rows = pl.scan_parquet(f).select(pl.len()).collect().item()
        scan = pl.scan_parquet(f).select(columns).gather_every(sample_step(rows, most))
        parts.append(scan.collect(engine="streaming"))
    return pl.concat(parts, how="vertical") if parts else pl.DataFrame(schema={c: pl.Float64 for c in columns})


def drift_table(
    layout: Layout, day: date, scores: pl.DataFrame, features: pl.DataFrame | None, columns: list[str]
) -> list[dict]:
    """PSI of the score and of key features on ``day`` against the previous 30 days' outputs.

    ``scores`` and ``features``: the day's rows, or a sample of them (the night passes every k-th
    row, :data:`DRIFT_TODAY_ROWS` at most); each reference day is sampled the same way
    (:data:`DRIFT_PAST_DAY_ROWS`), so the table's memory does not grow with the day.

    A history feature is compared only with reference days that had their full history window
    (like with like); with fewer than ``MIN_REFERENCE_DAYS`` such days its level is
    ``"warming up"`` (shown, not judged, never "major"). Each row says the change in words."""
    past_days = [day - timedelta(days=i) for i in range(1, DRIFT_WINDOW_DAYS + 1)]
    rows: list[dict] = []
    score_paths = [layout.day_dir(layout.scores, d) / "scores.parquet" for d in past_days]
    score_files = [str(f) for f in score_paths if f.exists()]
    if score_files:
        # extra_columns: days published before scores.parquet had arrival_date sit among newer ones
        past = sampled_rows(score_files, [S.RISK_SCORE], DRIFT_PAST_DAY_ROWS)
        rows.append(
            {
                "name": S.RISK_SCORE,
                "psi": psi(past[S.RISK_SCORE], scores[S.RISK_SCORE]),
                "days": len(score_files),
                "words": describe_change(S.RISK_SCORE, past[S.RISK_SCORE], scores[S.RISK_SCORE]),
                "warming": None,
            }
        )
    if features is not None:
        raw_days = layout.raw_days()
        first = min(raw_days) if raw_days else day
        feat_files = {d: layout.day_dir(layout.features, d) / "features.parquet" for d in past_days}
        feat_files = {d: f for d, f in feat_files.items() if f.exists()}
        cols = [c for c in columns if c in features.columns and features.schema[c].is_numeric()]
        by_need: dict[int, list[str]] = {}
        for col in cols:
            by_need.setdefault(warmup_days(col), []).append(col)
        for need, group in sorted(by_need.items()):
            usable = sorted(d for d in feat_files if d - timedelta(days=need) >= first)
            full_today = day - timedelta(days=need) >= first
            if not full_today or len(usable) < MIN_REFERENCE_DAYS:
                ready = first + timedelta(days=need + MIN_REFERENCE_DAYS)
                for col in group:
                    rows.append(
                        {
                            "name": col,
                            "psi": None,
                            "days": len(usable),
                            "words": "",
                            "warming": f"history starts {first.isoformat()}; its {need}-day window is comparable from {ready.isoformat()}",
                        }
                    )
                continue
            past = sampled_rows([str(feat_files[d]) for d in usable], group, DRIFT_PAST_DAY_ROWS)
            for col in group:
                rows.append(
                    {
                        "name": col,
                        "psi": psi(past[col], features[col]),
                        "days": len(usable),
                        "words": describe_change(col, past[col], features[col]),
                        "warming": None,
                    }
                )
    for row in rows:
        v = row["psi"]
        if row.get("warming"):
            row["level"] = "warming up"
        else:
            row["level"] = "n/a" if v is None else ("major" if v > 0.25 else "moderate" if v > 0.1 else "stable")
    return rows


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
.kpi b{font-size:1.6em;display:block} .major{color:#b00} .moderate{color:#b70} .stable{color:#080} .warming-up{color:#777}
svg.mpl{max-width:100%;height:auto}
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
<section><h2>Exam slots used per port</h2>{{ chart_slots | safe }}</section>
{% if gaps %}<section><h2>Top risk not examined</h2>
<p>{{ gaps_sentence }}</p>
<table><tr><th>why not examined</th><th>shipments</th><th>risk mass</th></tr>
{% for key, r in gaps.reasons.items() %}<tr><td>{{ r.words }}</td><td>{{ r.shipments }}</td><td>{{ "%.2f"|format(r.risk_mass) }}</td></tr>
{% endfor %}<tr><td>total (of the top {{ gaps.top_n }}, risk mass {{ "%.2f"|format(gaps.top_risk_mass) }})</td><td>{{ gaps.not_examined }}</td>
<td>{{ "%.2f"|format(gaps.not_examined_risk_mass) }}</td></tr></table>
<p class="muted">Top N = the day's N highest risk scores, N = the exams on the list; risk mass = the sum of their
scores (the positives they are expected to hold).</p></section>{% endif %}
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
{% if drift %}<p class="muted">PSI below 0.1 is stable, 0.1 to 0.25 a moderate shift, above 0.25 a major one. History features are
compared with days whose own history window was full; until there are {{ min_reference_days }} such days they are warming up (not judged).</p>
{{ chart_drift | safe }}<table><tr><th>feature</th><th>what changed</th><th>PSI</th><th>level</th><th>days compared</th></tr>
{% for d in drift %}<tr><td>{{ d.name }}</td><td>{{ d.words or d.warming or "" }}</td><td>{{ "%.3f"|format(d.psi) if d.psi is not none else "n/a" }}</td>
<td class="{{ d.level|replace(' ', '-') }}">{{ d.level }}</td><td>{{ d.days }}</td></tr>{% endfor %}</table>
{% else %}<p class="muted">no earlier nights to compare with</p>{% endif %}
</body></html>
"""
)


def oea_claim_counts(
    raw_day: pl.DataFrame | pl.LazyFrame, features: pl.DataFrame | pl.LazyFrame | None
) -> dict[str, int] | None:
    """``mx_oea`` claims of the day: confirmed / not confirmed on the partner's OEA list, and not
    verified (no list imported for the day); None when nobody claims it. Counted as a streaming
    aggregate (frames or scans of the day)."""
    raw_day = raw_day.lazy()
    claims = (
        int(
            raw_day.select((pl.col(S.TRUSTED_TRADER).cast(pl.String) == "mx_oea").sum())
            .collect(engine="streaming")
            .item()
        )
        if S.TRUSTED_TRADER in raw_day.collect_schema()
        else 0
    )
    if claims == 0:
        return None
    ok = bad = 0
    if features is not None and {"xb_oea_confirmed", "xb_oea_unconfirmed"} <= set(features.lazy().collect_schema()):
        sums = features.lazy().select(pl.col("xb_oea_confirmed").sum(), pl.col("xb_oea_unconfirmed").sum())
        ok, bad = (int(v or 0) for v in sums.collect(engine="streaming").row(0))
    return {"confirmed": ok, "not_confirmed": bad, "not_verified": claims - ok - bad}


#: scores (probabilities, 0..1) are summed for the day's mean as integers of this many units
_MEAN_GRID = 2**52


def score_mean_exprs() -> list[pl.Expr]:
    """The day's mean score as two aggregates over ``risk_score`` (``_mean_units``,
    ``_mean_count``; :func:`score_mean_of`): an exact integer sum on a 2**-52 grid. A float sum's
    last bit follows the order the streaming engine's threads finish in, so two reads of one day
    differed (the summary's and the health page's mean alike)."""
    units = (pl.col(S.RISK_SCORE) * _MEAN_GRID).round().cast(pl.Int64, strict=False).cast(pl.Int128)
    return [units.sum().alias("_mean_units"), units.count().alias("_mean_count")]


def score_mean_of(row: Mapping[str, Any]) -> float | None:
    """The mean from :func:`score_mean_exprs`' aggregates in ``row`` (None: no score)."""
    count = int(row["_mean_count"] or 0)
    return int(row["_mean_units"]) / (_MEAN_GRID * count) if count else None


@dataclass(frozen=True)
class DayFigures:
    """What the report and the night's summary show of the whole day: shipments scored, the
    score histogram (``charts.score_bins``), mean and 99th percentile, shipments by mode and by
    port (raw rows). :meth:`of` counts them as streaming aggregates, so a scan of a day larger
    than memory works as well as a frame."""

    shipments: int
    score_bins: list[int]
    score_mean: float
    score_p99: float
    by_mode: list[tuple[str, int]]
    by_port: list[tuple[str, int]]

    @classmethod
    def of(cls, scores: pl.DataFrame | pl.LazyFrame, raw_day: pl.DataFrame | pl.LazyFrame) -> DayFigures:
        score = pl.col(S.RISK_SCORE)
        head = (
            scores.lazy()
            .select(pl.len().alias("n"), *score_mean_exprs(), score.count().alias("scored"))
            .collect(engine="streaming")
            .row(0, named=True)
        )
        head["mean"] = score_mean_of(head) or 0.0
        head["p99"] = score_quantile(scores, 0.99, int(head["scored"]))
        bins = charts.score_bins_of(scores.lazy(), S.RISK_SCORE)
        raw = raw_day.lazy()
        by_mode = raw.group_by(S.MODE).len().collect(engine="streaming").sort(["len", S.MODE], descending=[True, False])
        by_port = (
            raw.group_by(S.PORT_OF_ENTRY)
            .len()
            .collect(engine="streaming")
            .sort(["len", S.PORT_OF_ENTRY], descending=[True, False])
        )
        return cls(
            shipments=int(head["n"]),
            score_bins=bins,
            score_mean=_number(head["mean"] or 0.0),
            score_p99=float(head["p99"] or 0.0),
            by_mode=[(str(m), int(n)) for m, n in by_mode.iter_rows()],
            by_port=[(str(p), int(n)) for p, n in by_port.iter_rows()],
        )


def score_quantile(scores: pl.DataFrame | pl.LazyFrame, q: float, scored: int) -> float | None:
    """``risk_score.quantile(q)`` (Polars' default, the nearest rank: index ``(n - 1) q`` rounded
    half away from zero, nulls left out; ``scored``: the non-null scores) as the smallest of the
    top ``n - index`` scores: a streaming top-k holds those, not the day's column (8 bytes a row;
    at q = 0.99, 1 % of it)."""
    if scored <= 0:
        return None
    index = math.floor((scored - 1) * q + 0.5)
    top = scores.lazy().select(pl.col(S.RISK_SCORE).drop_nulls().top_k(scored - index).min())
    value = top.collect(engine="streaming").item()
    return None if value is None else float(value)


def render_report(
    day: date,
    scores: pl.DataFrame | pl.LazyFrame | DayFigures,
    targets: pl.DataFrame,
    raw_day: pl.DataFrame | pl.LazyFrame | None,
    quarantine_by_reason: dict[str, int],
    model_version: str | None,
    evaluation: list[dict] | None,
    drift: list[dict],
    generated_at: str,
    top_n: int = 50,
    champion_problem: str | None = None,
    model_warnings: Sequence[str] = (),
    port_slots: dict[str, int] | None = None,
    oea_claims: dict[str, int] | None = None,
    gaps: dict | None = None,
) -> str:
    """The report page for ``day`` as a string; ``champion_problem`` (why no model ranked the
    night) puts a banner at the top; ``model_warnings`` (``riskpipe.model.training_warnings`` of
    the champion) head the model section; ``scores`` and ``raw_day`` (frames or scans of the
    day) give its :class:`DayFigures`, or ``scores`` is those figures (``raw_day`` unused); ``port_slots`` (each port's ceiling that night,
    ``rank.port_ceilings``) marks each port's capacity on the slot-use chart; ``gaps``
    (``rank.top_risk_gaps``) is the table of the day's top risk the list could not examine; ``oea_claims`` (:func:`oea_claim_counts`) counts
    the ``mx_oea`` claims confirmed and not confirmed on the partner's OEA list."""
    names = ReferenceNames.load()
    if isinstance(scores, DayFigures):
        figures = scores
    elif raw_day is None:
        raise ValueError("render_report: the day's raw rows are needed with its scores")
    else:
        figures = DayFigures.of(scores, raw_day)
    q_items = sorted(quarantine_by_reason.items(), key=lambda kv: (-kv[1], kv[0]))
    judged = [d for d in drift if d["psi"] is not None and d["level"] != "warming up"]
    drift_items = [(charts.label(d["name"], 36), float(d["psi"])) for d in sorted(judged, key=lambda d: -d["psi"])]
    n_explore = targets.filter(pl.col(S.SELECTION) == "exploration").height if targets.height else 0
    slot_rows = []
    if targets.height:
        use = (
            targets.group_by(pl.col(S.PORT_OF_ENTRY).cast(pl.String))
            .agg(
                (pl.col(S.SELECTION) == "risk").sum().alias("risk"),
                (pl.col(S.SELECTION) == "exploration").sum().alias("exploration"),
            )
            .sort(["risk", S.PORT_OF_ENTRY], descending=[True, False])
        )
        slot_rows = [
            {"port": p, "name": names.port(p), "risk": r, "exploration": e, "slots": (port_slots or {}).get(p)}
            for p, r, e in use.iter_rows()
        ][:20]
    port_items = [(f"{p} {names.port(p)}".strip(), float(n)) for p, n in figures.by_port[:15]]
    return _TEMPLATE.render(
        day=day.isoformat(),
        model_version=model_version,
        champion_problem=champion_problem,
        generated_at=generated_at,
        n_shipments=figures.shipments,
        n_targets=targets.height,
        n_exploration=n_explore,
        n_quarantined=sum(quarantine_by_reason.values()),
        chart_mode=charts.bars(
            [(m, float(n)) for m, n in figures.by_mode],
            "Shipments by mode",
            "shipments",
        ),
        chart_port=charts.bars(port_items, "Shipments by port of entry", "shipments", color=charts.COLORS[2]),
        chart_slots=charts.slot_use(slot_rows),
        chart_quarantine=charts.bars(
            [(k, float(v)) for k, v in q_items], "Quarantined rows by reason", "rows", color=charts.COLORS[4]
        ),
        chart_scores=charts.score_histogram(figures.score_bins),
        score_mean=figures.score_mean,
        score_p99=figures.score_p99,
        top=targets.sort(S.RANK).head(top_n).to_dicts(),
        evaluation=evaluation,
        drift=drift,
        drift_window=DRIFT_WINDOW_DAYS,
        min_reference_days=MIN_REFERENCE_DAYS,
        chart_drift=charts.bars(
            drift_items,
            "Population stability index (PSI)",
            "PSI",
            color=charts.COLORS[3],
            marks=[(0.1, "moderate"), (0.25, "major")],
            decimals=3,
        ),
        model_warnings=list(model_warnings),
        oea_claims=oea_claims,
        gaps=gaps,
        gaps_sentence=gaps_sentence(gaps) if gaps else "",
    )
