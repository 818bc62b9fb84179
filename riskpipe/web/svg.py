"""Inline SVG drawn on the server: the shipment network graph and small charts.

No JavaScript and no network: the page carries the picture. Every label is escaped here
(``html.escape``) because the result is inserted into templates as markup.
"""

from __future__ import annotations

import math
from urllib.parse import quote
from html import escape
from typing import Any

from markupsafe import Markup


def _t(value: Any) -> str:
    return escape(str(value), quote=True)


def network_svg(focal: str, net: dict[str, Any], link_base: str, link_suffix: str = "", width: int = 720, height: int = 460) -> Markup:
    """Focal shipment in the centre, shared identifiers on an inner ring, linked shipments on an
    outer ring next to the identifiers they share; shipments of the published network in red."""
    cx, cy = width / 2, height / 2
    idents = net["identifiers"]
    others = net["shipments"]
    pos: dict[str, tuple[float, float]] = {focal: (cx, cy)}
    r1, r2 = min(cx, cy) * 0.42, min(cx, cy) * 0.85
    for i, ident in enumerate(idents):
        a = 2 * math.pi * i / max(1, len(idents)) - math.pi / 2
        pos[ident["id"]] = (cx + r1 * math.cos(a), cy + r1 * math.sin(a))
    # each linked shipment sits on the outer ring in the sector of the first identifier it shares
    angle = {ident["id"]: 2 * math.pi * i / max(1, len(idents)) - math.pi / 2 for i, ident in enumerate(idents)}
    groups: dict[str, list[dict]] = {}
    for s in others:
        groups.setdefault(s["links"][0] if s.get("links") else "", []).append(s)
    sector = 2 * math.pi / max(1, len(idents))
    for key, members in groups.items():
        centre = angle.get(key, math.pi / 2)
        span = sector * 0.8 if key in angle else 2 * math.pi * 0.9
        for j, s in enumerate(members):
            a = centre + (span * ((j + 0.5) / len(members) - 0.5) if len(members) > 1 else 0.0)
            if key in angle and len(members) == 1:
                a += sector * 0.15  # off the identifier's radius, so edges do not overlap
            pos["s:" + s["id"]] = (cx + r2 * math.cos(a), cy + r2 * math.sin(a))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="network" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="shipment network">'
    ]
    ident_ids = {i["id"] for i in idents}
    for a, b in net["edges"]:
        pa = pos.get(a if a == focal else ("s:" + a)) if a not in ident_ids else pos.get(a)
        pb = pos.get(b)
        if pa and pb:
            parts.append(f'<line x1="{pa[0]:.1f}" y1="{pa[1]:.1f}" x2="{pb[0]:.1f}" y2="{pb[1]:.1f}" class="edge"/>')
    for ident in idents:
        x, y = pos[ident["id"]]
        label = ident["value"] if len(ident["value"]) <= 22 else ident["value"][:21] + "…"
        parts.append(
            f'<g class="ident"><title>{_t(ident["kind"])}: {_t(ident["value"])}</title>'
            f'<rect x="{x - 6:.1f}" y="{y - 6:.1f}" width="12" height="12"/>'
            f'<text x="{x:.1f}" y="{y - 10:.1f}" text-anchor="middle">{_t(ident["kind"])}</text>'
            f'<text x="{x:.1f}" y="{y + 18:.1f}" text-anchor="middle" class="small">{_t(label)}</text></g>'
        )
    for s in others:
        x, y = pos["s:" + s["id"]]
        cls = "ship net" if s.get("in_network") else "ship"
        parts.append(
            f'<a href="{_t(link_base + quote(s["id"], safe="") + link_suffix)}"><g class="{cls}"><title>{_t(s["id"])}</title>'
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="7"/>'
            f'<text x="{x:.1f}" y="{y + 19:.1f}" text-anchor="middle" class="small">{_t(s["id"][-10:])}</text></g></a>'
        )
    parts.append(
        f'<g class="ship focal"><title>{_t(focal)}</title><circle cx="{cx:.1f}" cy="{cy:.1f}" r="11"/>'
        f'<text x="{cx:.1f}" y="{cy + 26:.1f}" text-anchor="middle">{_t(focal)}</text></g>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))


def line_chart(series: dict[str, list[float | None]], labels: list[str], width: int = 640, height: int = 200, y_max: float | None = None) -> Markup:
    """A small multi-series line chart (one colour class per series, legend below)."""
    pad_l, pad_b, pad_t = 44, 28, 10
    values = [v for vs in series.values() for v in vs if v is not None]
    if not values or not labels:
        return Markup('<p class="muted">not enough data yet</p>')
    top = y_max if y_max is not None else (max(values) * 1.1 or 1.0)
    n = len(labels)
    w, h = width - pad_l - 10, height - pad_b - pad_t

    def xy(i: int, v: float) -> tuple[float, float]:
        x = pad_l + (w * i / max(1, n - 1))
        return x, pad_t + h - h * min(v, top) / top

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height + 18 * len(series)}" width="{width}">']
    for frac in (0, 0.5, 1):
        y = pad_t + h - h * frac
        out.append(f'<line x1="{pad_l}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{pad_l - 4}" y="{y + 4:.1f}" text-anchor="end" class="small">{top * frac:.3g}</text>')
    step = max(1, n // 7)
    for i in range(0, n, step):
        x, _ = xy(i, 0)
        out.append(f'<text x="{x:.1f}" y="{height - 8}" text-anchor="middle" class="small">{_t(labels[i])}</text>')
    for k, (name, vs) in enumerate(series.items()):
        pts = [xy(i, v) for i, v in enumerate(vs) if v is not None]
        if pts:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
            out.append(f'<polyline points="{path}" class="s{k % 4}"/>')
            out.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" class="s{k % 4}"/>' for x, y in pts)
        ly = height + 14 + 18 * k
        out.append(f'<rect x="{pad_l}" y="{ly - 9}" width="10" height="10" class="s{k % 4}"/>')
        out.append(f'<text x="{pad_l + 16}" y="{ly}" class="small">{_t(name)}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def histogram(counts: list[int], width: int = 300, height: int = 120) -> Markup:
    """Bars of a 10-bin score histogram (share of the day, so days compare)."""
    total = sum(counts)
    if not total:
        return Markup('<span class="muted">no scores</span>')
    shares = [c / total for c in counts]
    top = max(shares) or 1.0
    bw = (width - 20) / len(counts)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="hist" viewBox="0 0 {width} {height}" width="{width}">']
    for i, s in enumerate(shares):
        bh = (height - 24) * s / top
        out.append(
            f'<rect x="{10 + i * bw:.1f}" y="{height - 16 - bh:.1f}" width="{bw - 2:.1f}" height="{bh:.1f}"><title>'
            f"{i / 10:.1f}-{(i + 1) / 10:.1f}: {counts[i]}</title></rect>"
        )
    out.append(f'<text x="10" y="{height - 3}" class="small">0</text><text x="{width - 10}" y="{height - 3}" text-anchor="end" class="small">1</text>')
    out.append("</svg>")
    return Markup("".join(out))
