"""How sure a view's figures are: intervals, and "beats" only when the counts support it.

A view's precision and recall at a capacity are counts (hits among the selected exams, hits among
the positives), and on the random-exam view they are small counts: a model that finds 6 of 20
random-exam positives and a rule set that finds 2 may or may not differ. This module turns the
counts of :func:`riskpipe.model.evaluate.view_summaries` into 95 % Wilson intervals and into a
one-sided verdict per baseline: the model *beats* a baseline at a capacity when Fisher's exact
test rejects "the model finds no more of the view's positives than the baseline" at 5 %. The test
treats the two recalls as independent samples; both are judged on the same positives, whose finds
are positively correlated (what the rules find the model mostly finds too), so the test is
conservative: it says "beats" less often than a paired test would, never more.
"""

from __future__ import annotations

import math
from typing import Any

#: one-sided level of the "beats" verdict
ALPHA = 0.05
Z95 = 1.959963984540054
#: baselines the model is judged against, in the order they are reported
BASELINES = ("rules", "random")
BASELINE_NAMES = {"rules": "the rules alone", "random": "random selection"}


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (95 % by default); (0, 1) when n = 0. Unlike the
    normal approximation it stays inside [0, 1] and is sensible for 0/n and n/n."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def fisher_greater(a: int, b: int, n: int) -> float:
    """One-sided p-value of Fisher's exact test that a/n exceeds b/n (two samples of size n):
    P(X >= a) for X hypergeometric, 2n items of which a + b successes, n drawn."""
    if n <= 0:
        return 1.0
    total, hits = 2 * n, a + b
    denom = math.comb(total, n)
    tail = sum(math.comb(hits, x) * math.comb(total - hits, n - x) for x in range(a, min(hits, n) + 1))
    return min(1.0, tail / denom)


def _capacities(view: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, label) of each capacity a view reports: the prevalence multiples, then the ports'."""
    out = [(k, f"{k} prevalence ({n:,} exams)") for k, n in (view.get("k_at_prevalence") or {}).items()]
    return [*out, ("capacity", "ports' capacity")]


def _counts(m: dict[str, Any], key: str) -> tuple[int, int]:
    """(hits, selected) of one scorer at one capacity key."""
    if key == "capacity":
        return int(m.get("hits_at_capacity", 0)), int(m.get("selected_at_capacity", 0))
    return int(m["hits_at_prevalence"][key]), int(m["selected_at_prevalence"][key])


def view_evidence(view: dict[str, Any], model: str = "model", alpha: float = ALPHA) -> dict[str, Any]:
    """For one view summary (``view_summaries``): per capacity, each of ``model`` and the baselines'
    precision and recall with 95 % Wilson intervals, and per baseline whether ``model`` beats it
    (one-sided Fisher p-value on recall < ``alpha``). A view without enough evidence (its
    ``verdict``) gets no rows, only ``enough_evidence`` False. JSON-clean."""
    out: dict[str, Any] = {
        "view": view["view"],
        "positives": int(view["positives"]),
        "rows": int(view["rows"]),
        "days": list(view.get("days") or []),
        "enough_evidence": bool(view.get("enough_evidence", not view.get("verdict"))),
        "capacities": [],
    }
    scorers = view.get("scorers") or {}
    if not out["enough_evidence"] or model not in scorers:
        return out
    pos = out["positives"]
    names = [model, *[b for b in BASELINES if b in scorers]]
    for key, label in _capacities(view):
        rows: dict[str, dict[str, Any]] = {}
        for name in names:
            hits, sel = _counts(scorers[name], key)
            rows[name] = {
                "hits": hits,
                "selected": sel,
                "precision": hits / sel if sel else 0.0,
                "precision_ci": list(wilson(hits, sel)),
                "recall": hits / pos if pos else 0.0,
                "recall_ci": list(wilson(hits, pos)),
            }
        beats = {}
        for b in names[1:]:
            p = fisher_greater(rows[model]["hits"], rows[b]["hits"], pos)
            beats[b] = {"p_value": p, "beats": p < alpha}
        out["capacities"].append({"key": key, "label": label, "scorers": rows, "versus": beats})
    return out


def beats_sentence(ev: dict[str, Any], model: str = "model") -> str:
    """One line per view: whom the model beats, at which capacities, with the evidence; "not
    shown" where the counts do not support it (never "beats" on a p-value above the level)."""
    title = ev["view"].replace("_", " ")
    if not ev["enough_evidence"] or not ev["capacities"]:
        n = ev["positives"]
        return f"{title}: not enough evidence ({n} positive{'s' * (n != 1)}): no verdict"
    parts = []
    for b in ev["capacities"][0]["versus"]:
        won = [c for c in ev["capacities"] if c["versus"][b]["beats"]]
        lost = [c for c in ev["capacities"] if not c["versus"][b]["beats"]]

        def cites(cs: list[dict[str, Any]], b: str = b) -> str:
            return ", ".join(
                f"{c['key']} ({c['scorers'][model]['hits']} vs {c['scorers'][b]['hits']} of {ev['positives']}, "
                f"p = {c['versus'][b]['p_value']:.3f})"
                for c in cs
            )

        name = BASELINE_NAMES.get(b, b)
        if won:
            text = f"beats {name} at {cites(won)}"
            if lost:
                text += f"; not shown at {cites(lost)}"
        else:
            text = f"does not show it beats {name} (at {cites(lost)})"
        parts.append(text)
    return f"{title}: the model " + "; ".join(parts)
