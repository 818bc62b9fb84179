"""Inline SVG drawn on the server: the shipment network graph. Charts (anything with axes) are
drawn by matplotlib in :mod:`riskpipe.charts`, the one chart helper of the report and the pages.

Why this one picture is not matplotlib: it is a node-link diagram, not a chart (no axes, no
scale), whose nodes are links to the linked shipments' pages with hover titles, styled by the
page's stylesheet (``.ship.net`` for the published network). matplotlib's SVG has fixed colours
and no per-node anchors or CSS classes. No JavaScript and no network: the page carries the
picture. Every label is escaped here (``html.escape``) because the result is inserted into
templates as markup.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any
from urllib.parse import quote

from markupsafe import Markup


def _t(value: Any) -> str:
    return escape(str(value), quote=True)


def network_svg(
    focal: str, net: dict[str, Any], link_base: str, link_suffix: str = "", width: int = 720, height: int = 460
) -> Markup:
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
