"""The model card and its headline evaluation lines, written beside each saved model."""

from __future__ import annotations

from typing import Any

from riskpipe.model.evaluate import MIN_EVIDENCE_POSITIVES, view_summaries
from riskpipe.model.fit import training_warnings
from riskpipe.promotion import summary


def model_card(meta: dict[str, Any]) -> str:
    """A short markdown model card from the metadata."""
    window = meta.get("training_window", {})
    lines = [
        f"# Model card: {meta.get('version', '?')}",
        "",
        "**Purpose.** Rank arriving low-value shipments by the probability that an exam finds fentanyl, "
        "a fentanyl precursor or a pill press, so officers examine the riskiest first. A decision aid, "
        "not a decision: every exam is an officer's call.",
        "",
        f"**Estimator.** {meta.get('estimator', '?')}; probabilities calibrated ({meta.get('calibration', '?')}) "
        "on later days than those trained on.",
        "",
        f"**Training data.** Examined shipments with outcomes, arrival days {window.get('train_start')} to "
        f"{window.get('train_end')}; calibration days {window.get('calib_start')} to {window.get('calib_end')}; "
        f"evaluated on {window.get('eval_start')} to {window.get('eval_end')}. "
        f"Rows: {meta.get('n_train', '?')} ({meta.get('n_train_positive', '?')} positive); "
        f"calibration rows: {meta.get('n_calib', '?')} ({meta.get('n_calib_positive', '?')} positive).",
        "",
    ]
    weights = meta.get("sample_weights")
    if isinstance(weights, dict):
        lines += [
            f"**Selection weights.** {weights.get('weighted_rows', '?')} random exams weighted by 1 / their "
            f"selection probability (up to {weights.get('max', 0):.0f}); total weight {weights.get('sum', 0):,.0f}, "
            f"of positives {weights.get('positive_sum', 0):,.0f}.",
            "",
        ]
    warnings = meta["warnings"] if "warnings" in meta else training_warnings(meta)
    if warnings:
        lines += ["**Warnings.**", "", *(f"- {w}" for w in warnings), ""]
    lines += [
        f"**Features** ({len(meta.get('feature_columns', []))}): {', '.join(meta.get('feature_columns', []))}.",
        "",
        "**Evaluation** (held-out later days; see metrics in meta.json):",
        "",
    ]
    for key, value in (meta.get("headline_metrics") or {}).items():
        lines.append(f"- {key}: {value:.4f}" if isinstance(value, float) else f"- {key}: {value}")
    promo = meta.get("promotion")
    if isinstance(promo, dict) and "interval" in promo:
        lines += [
            "",
            "**Promotion evidence** (against the champion of the day, same evaluation days; "
            "doubly robust and inverse-propensity estimates from the random exams, paired bootstrap):",
            "",
            f"- decision: {promo.get('reason', '?')}",
            f"- {summary({'evidence': promo})}",
            f"- minimum labelled positives {promo.get('min_positives')}, margin {promo.get('margin')} hits, "
            f"{promo.get('bootstrap')} resamples, seed {promo.get('seed')}",
        ]
    lines += [
        "",
        "**Limits.** Labels exist only for examined shipments, mostly chosen by risk: metrics on them are "
        "biased towards what was already targeted; random exams give the unbiased hit rate. Smugglers adapt "
        "after seizures, so performance decays without retraining and exploration exams. The probability "
        "is calibrated on examined shipments, which are riskier than the average arrival.",
        "",
    ]
    return "\n".join(lines)


def headline_metrics(report: dict[str, Any], name: str = "model", min_positives: int | None = None) -> dict[str, Any]:
    """The model card's evaluation lines: per view its counts and prevalence, then precision and
    recall at 1x and 3x that prevalence and at the ports' capacity, each with its counts, or
    "not enough evidence (N positives)" when the view holds too few positives to judge."""
    out: dict[str, Any] = {}
    for v in view_summaries(report, MIN_EVIDENCE_POSITIVES if min_positives is None else min_positives):
        days = v["days"]
        span = f"{len(days)} days {days[0]}..{days[-1]}" if days else "no days"
        out[f"{v['view']} view"] = (
            f"{v['rows']:,} rows, {v['positives']} positives, {span}; prevalence {v['prevalence']:.4f} "
            f"({v['prevalence_basis']})"
        )
        m = v["scorers"].get(name)
        if m is None:
            continue
        at = [
            (
                f"{key} prevalence ({k:,} exams)",
                m["precision_at_prevalence"][key],
                m["recall_at_prevalence"][key],
                m["hits_at_prevalence"][key],
                m["selected_at_prevalence"][key],
            )
            for key, k in v["k_at_prevalence"].items()
        ]
        at.append(
            (
                "capacity (the ports' exam slots)",
                m["precision_at_capacity"],
                m["recall_at_capacity"],
                m["hits_at_capacity"],
                m["selected_at_capacity"],
            )
        )
        for label, p, r, hits, sel in at:
            out[f"{v['view']} precision / recall at {label}"] = v["verdict"] or (
                f"{p:.4f} / {r:.4f} ({hits} found; {sel:,} selected rows in the view; {v['positives']} positives)"
            )
    return out
