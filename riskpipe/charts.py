"""Charts for the nightly report and the workbench's health page: one plotting library
(matplotlib), rendered offline to inline SVG.

Why this shape: the report must stay one self-contained file and the workbench's CSP allows no
inline script, so a chart is static SVG made on the server with matplotlib's SVG backend (no
pyplot, no GUI, no network). Text stays text (``svg.fonttype = "none"``, a generic sans-serif
font) so it is small and searchable; matplotlib escapes text content (``&``, ``<``, ``>``) and
labels that come from data (port codes, reasons) are cleaned first (control characters, length,
no mathtext). The result is checked once more for anything active before it is returned: the
SVG is ours, but it is inserted into pages as markup. Axes use thousands separators, never
``8.39e+03``.
"""

from __future__ import annotations

import io
import math
import re
import threading
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter

from riskpipe.store import write_bytes_atomic

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

GENERATOR = f"<!-- Created with Matplotlib v{matplotlib.__version__} (https://matplotlib.org/) by riskpipe.charts -->"
_RC: dict[RcKeyType, object] = {
    "svg.fonttype": "none",
    "svg.hashsalt": "riskpipe",  # stable ids: the same data gives the same SVG
    "text.parse_math": False,  # a "$" in a label is a dollar sign, not mathtext
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Liberation Sans", "Arial"],
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 10,
    "axes.grid": True,
    "grid.color": "#e5e8ec",
    "axes.axisbelow": True,
}
_LOCK = threading.Lock()  # rcParams are process-wide; the web app renders from a thread pool
_ACTIVE = re.compile(r"<\s*(script|foreignObject|iframe|image)|\son\w+\s*=|javascript:", re.I)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
COLORS = ["#0b5cad", "#c0392b", "#1f7a3a", "#8e44ad", "#a86b3b"]
EMPTY = '<p class="muted">not enough data yet</p>'


def label(value: object, limit: int = 40) -> str:
    """A data value as a chart label: no control characters, at most ``limit`` characters."""
    text = _CONTROL.sub(" ", str(value if value is not None else "")).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def thousands(v: float, _pos: object = None) -> str:
    """Tick text with thousands separators (integers plain, small values with decimals)."""
    if abs(v) >= 1000 or float(v).is_integer():
        return f"{v:,.0f}"
    return f"{v:,.2f}".rstrip("0").rstrip(".")


def wilson(positives: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion (95 % by default): honest with few exams."""
    if n <= 0:
        return (0.0, 1.0)
    p = positives / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _figure(width_in: float, height_in: float) -> Figure:
    return Figure(figsize=(width_in, height_in), dpi=72, layout="constrained")


def _svg(fig: Figure, title: str) -> str:
    """The figure as an inline ``<svg>`` (no XML prolog, no metadata), with a generator comment
    and an accessible title; anything active found in it replaces the chart with a message."""
    buf = io.StringIO()
    FigureCanvasSVG(fig).print_svg(buf, metadata={"Creator": None, "Date": None, "Format": None, "Type": None})
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    text = text.replace(' xmlns:xlink="http://www.w3.org/1999/xlink"', "", 1)  # HTML knows xlink:href
    head_end = text.index(">") + 1
    text = (
        text[:head_end].replace("<svg ", '<svg class="mpl" role="img" ', 1)
        + f"\n{GENERATOR}\n<title>{escape(title)}</title>"
        + text[head_end:]
    )
    if _ACTIVE.search(text):
        return '<p class="muted">chart withheld: it contained markup</p>'
    return text


def bars(
    items: Sequence[tuple[str, float]],
    title: str,
    xlabel: str = "",
    color: str = COLORS[0],
    percent: bool = False,
    width_in: float = 6.5,
    marks: Sequence[tuple[float, str]] = (),
    decimals: int | None = None,
) -> str:
    """Horizontal bars, first item on top, the value printed at each bar's end; ``marks`` draws
    labelled threshold lines (e.g. PSI 0.1 and 0.25)."""
    if not items:
        return EMPTY
    names = [label(k) for k, _ in items][::-1]
    values = [float(v) for _, v in items][::-1]
    with _LOCK, matplotlib.rc_context(_RC):
        fig = _figure(width_in, 0.8 + 0.24 * len(items))
        ax = fig.add_subplot()
        ax.barh(range(len(values)), values, color=color, height=0.7)
        ax.set_yticks(range(len(values)), names)
        ax.grid(axis="y", visible=False)
        ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0) if percent else FuncFormatter(thousands))
        ax.xaxis.set_major_locator(MaxNLocator(5))
        top = max([*values, *(m for m, _ in marks)]) if values else 1.0
        ax.set_xlim(0, (top or 1.0) * 1.18)
        for i, v in enumerate(values):
            text = f"{v:.0%}" if percent else (f"{v:,.{decimals}f}" if decimals is not None else thousands(v))
            ax.text(v + (top or 1.0) * 0.01, i, text, va="center", fontsize=8)
        for x, text in marks:
            ax.axvline(x, color="#b3261e", linewidth=0.8, linestyle="--")
            ax.text(x, len(values) - 0.4, f" {label(text)}", fontsize=7, color="#b3261e", va="bottom")
        ax.set_xlabel(xlabel)
        ax.set_title(title, loc="left")
        return _svg(fig, title)


def score_histogram(counts: Sequence[int], title: str = "Risk score distribution") -> str:
    """Counts of equal-width score bins over [0, 1] (counted by the caller in Polars: a 4 M-row
    day is not handed over as Python floats), on a log axis: scores are very skewed."""
    if not counts or not sum(counts):
        return EMPTY
    n = len(counts)
    edges = [i / n for i in range(n + 1)]
    with _LOCK, matplotlib.rc_context(_RC):
        fig = _figure(6.5, 2.6)
        ax = fig.add_subplot()
        ax.stairs([max(int(c), 0) for c in counts], edges, fill=True, color=COLORS[1])
        ax.set_yscale("symlog", linthresh=1)
        ax.yaxis.set_major_formatter(FuncFormatter(thousands))
        ax.set_xlabel("risk score")
        ax.set_ylabel("shipments (log scale)")
        ax.set_xlim(0, 1)
        ax.set_ylim(bottom=0)
        ax.set_title(title, loc="left")
        return _svg(fig, title)


def score_bins(scores: pl.Series | Sequence[float | None], bins: int = 40) -> list[int]:
    """Equal-width bin counts of a Polars series of scores in [0, 1] (nulls dropped)."""
    values = scores if isinstance(scores, pl.Series) else pl.Series(list(scores))
    return score_bins_of(values.cast(pl.Float64).to_frame("score").lazy(), "score", bins)


def score_bins_of(frame: pl.LazyFrame, column: str, bins: int = 40) -> list[int]:
    """:func:`score_bins` of ``frame``'s ``column``, counted as a streaming aggregate (a scan of a
    day larger than memory works); [] when it has no score."""
    idx = (pl.col(column).cast(pl.Float64).clip(0.0, 1.0) * bins).floor().cast(pl.Int32).clip(0, bins - 1)
    found = (
        frame.filter(pl.col(column).is_not_null())
        .select(idx.alias("_bin"))
        .group_by("_bin")
        .len()
        .collect(engine="streaming")
    )
    if found.is_empty():
        return []
    counts = dict.fromkeys(range(bins), 0)
    for k, c in found.iter_rows():
        counts[int(k)] = int(c)
    return [counts[i] for i in range(bins)]


def lines(
    x_labels: Sequence[str],
    series: dict[str, Sequence[float | None]],
    title: str,
    ylabel: str = "",
    y_max: float | None = None,
    hlines: Sequence[tuple[float, str]] = (),
) -> str:
    """One line per series over days (gaps where a value is missing); optional threshold lines."""
    if not x_labels or not any(v is not None for vs in series.values() for v in vs):
        return EMPTY
    xs = list(range(len(x_labels)))
    with _LOCK, matplotlib.rc_context(_RC):
        fig = _figure(6.5, 2.6)
        ax = fig.add_subplot()
        for k, (name, vs) in enumerate(series.items()):
            ys = [math.nan if v is None else float(v) for v in vs]
            ax.plot(xs, ys, marker="o", markersize=3, color=COLORS[k % len(COLORS)], label=label(name))
        for y, text in hlines:
            ax.axhline(y, color="#b3261e", linewidth=0.8, linestyle="--")
            ax.text(xs[-1], y, f" {label(text)}", va="bottom", ha="right", fontsize=7, color="#b3261e")
        step = max(1, len(xs) // 8)
        ax.set_xticks(xs[::step], [label(x, 12) for x in x_labels[::step]])
        ax.yaxis.set_major_formatter(FuncFormatter(thousands))
        ax.yaxis.set_major_locator(MaxNLocator(5))
        if y_max is not None:
            ax.set_ylim(0, y_max)
        else:
            ax.set_ylim(bottom=0)
        ax.set_ylabel(ylabel)
        ax.set_title(title, loc="left")
        if len(series) > 1:
            ax.legend(fontsize=8, frameon=False, loc="best")
        return _svg(fig, title)


def hit_rate_by_week(rows: Sequence[dict], title: str = "Hit rate by exam week (95 % Wilson interval)") -> str:
    """Rows ``{"week": str, "reason": str, "exams": int, "positives": int}``: one series per
    exam reason, each point with its interval (a week of 3 exams says little, and shows it)."""
    if not rows:
        return EMPTY
    weeks = sorted({r["week"] for r in rows})
    reasons = sorted({r["reason"] for r in rows})
    pos = {w: i for i, w in enumerate(weeks)}
    with _LOCK, matplotlib.rc_context(_RC):
        fig = _figure(6.5, 2.8)
        ax = fig.add_subplot()
        for k, reason in enumerate(reasons):
            sub = [r for r in rows if r["reason"] == reason and r["exams"] > 0]
            if not sub:
                continue
            offset = (k - (len(reasons) - 1) / 2) * 0.12
            xs = [pos[r["week"]] + offset for r in sub]
            ps = [r["positives"] / r["exams"] for r in sub]
            lo_hi = [wilson(r["positives"], r["exams"]) for r in sub]
            err = [
                [p - lo for p, (lo, _) in zip(ps, lo_hi, strict=False)],
                [hi - p for p, (_, hi) in zip(ps, lo_hi, strict=False)],
            ]
            ax.errorbar(
                xs, ps, yerr=err, fmt="o-", markersize=3, capsize=2, color=COLORS[k % len(COLORS)], label=label(reason)
            )
        step = max(1, len(weeks) // 8)
        ax.set_xticks(range(0, len(weeks), step), [label(w, 12) for w in weeks[::step]])
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.set_ylim(0, 1)
        ax.set_ylabel("exams with a fentanyl-related find")
        ax.set_title(title, loc="left")
        ax.legend(fontsize=8, frameon=False, loc="upper left")
        return _svg(fig, title)


def slot_use(rows: Sequence[dict], title: str = "Exam slots used per port") -> str:
    """Rows ``{"port": str, "name": str, "risk": int, "exploration": int, "slots": int | None}``:
    stacked risk and exploration exams per port, the port's ceiling (``slots``) marked where known."""
    if not rows:
        return EMPTY
    rows = list(rows)[::-1]
    names = [label(f"{r['port']} {r.get('name') or ''}".strip(), 34) for r in rows]
    risk = [int(r.get("risk") or 0) for r in rows]
    expl = [int(r.get("exploration") or 0) for r in rows]
    with _LOCK, matplotlib.rc_context(_RC):
        fig = _figure(6.5, 1.2 + 0.26 * len(rows))
        ax = fig.add_subplot()
        ys = range(len(rows))
        ax.barh(ys, risk, color=COLORS[0], height=0.7, label="risk")
        ax.barh(ys, expl, left=risk, color=COLORS[2], height=0.7, label="exploration")
        slots = [r.get("slots") for r in rows]
        known = [(y, s) for y, s in zip(ys, slots, strict=False) if s is not None]
        if known:
            ax.scatter(
                [s for _, s in known],
                [y for y, _ in known],
                marker="|",
                s=160,
                color="#14213d",
                label="ceiling",
                zorder=3,
            )
        ax.set_yticks(list(ys), names)
        ax.grid(axis="y", visible=False)
        ax.xaxis.set_major_formatter(FuncFormatter(thousands))
        ax.xaxis.set_major_locator(MaxNLocator(5, integer=True))
        ax.set_xlabel("exams")
        ax.set_title(title, loc="left")
        fig.legend(fontsize=8, frameon=False, loc="outside lower center", ncol=3)  # never over the bars
        return _svg(fig, title)


def recall_by_week_png(series: dict[str, Sequence[float | None]], weeks: Sequence[int], path: Path, title: str) -> None:
    """A PNG file (the adaptation study's ``--plot``): recall at capacity per week, one line per
    policy, y from 0 to 1. Written atomically (a temporary file renamed into place)."""
    with _LOCK, matplotlib.rc_context(_RC):
        fig = Figure(figsize=(7.5, 3.6), dpi=110, layout="constrained")
        ax = fig.add_subplot()
        for k, (name, vs) in enumerate(series.items()):
            ys = [math.nan if v is None else float(v) for v in vs]
            ax.plot(list(weeks), ys, marker="o", markersize=4, color=COLORS[k % len(COLORS)], label=label(name, 60))
        ax.set_xticks(list(weeks))
        ax.set_xlabel("week of the simulation")
        ax.set_ylabel("recall at capacity")
        ax.set_ylim(0, 1)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_title(label(title, 90), loc="left")
        ax.legend(fontsize=8, frameon=False, loc="best")
        buf = io.BytesIO()
        FigureCanvasAgg(fig).print_png(buf)
    write_bytes_atomic(buf.getvalue(), path)
