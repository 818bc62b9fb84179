"""Evidence before promotion: off-policy estimates of hits at capacity and a paired bootstrap.

Labels exist only where someone chose to look, mostly where the champion (or the rules before
it) pointed. Comparing challenger and champion on labelled precision judges the challenger only
where the champion looked. The random compliance exams (``exam_reason = random``) are the one
part of the labels whose selection probability is known: a uniform draw of the day's parcels at
rate ``p`` (the synthetic exam policy, ``riskpipe.synth.exams``, draws 1 % before targeting; the
published list's ``selection = exploration`` rows play that role once their outcomes return).

For a policy (a score ranked per day, its top ``capacity`` selected) the quantity estimated is
its *hits at capacity*: positives among the shipments it would select, summed over the days.

- **IPS** (inverse propensity, Horvitz-Thompson): ``sum over targeted exams the policy selects
  of y + sum over random exams it selects of y / p`` (the DR form below with ``q = 0``). The
  targeted outcomes are known whoever looked; without them the policy that made the list scored
  0 (exploration is drawn only among its non-picks). Unbiased under the DR assumptions below,
  with random exams independent of the outcome and of the policy's scores (the policy must not
  have been fitted on those days' outcomes). ``p`` covers the day's compliance draw (the
  setting's known rate when given, else a ratio estimate) and its exploration picks (recorded
  probabilities): ``riskpipe.propensity``. Very noisy: at prevalence 0.003 and 1 % random exams
  a week holds one or two random positives.
- **DR** (doubly robust): ``sum over selected rows of mu + sum over random exams selected of
  (y - q) / p_day``, where ``mu`` is the observed outcome for shipments examined for another reason
  (targeted: their outcome is known whoever looked) and ``q`` (a model's probability, here the mean
  of challenger's and champion's production scores) for the others, random exams included. The
  correction term has expectation ``sum over selected unexamined rows of (y - q)``, so the estimate
  is unbiased for any ``q`` under the IPS assumption plus: random exams are a uniform draw among
  the shipments not examined for another reason (true when the draw comes first and targeted exams
  rarely coincide with it); ``q`` only changes the variance.

The interval of challenger - champion is a paired percentile bootstrap: shipments are resampled
with replacement within each day (the same resample for both policies, selections and rates held
fixed), seeded, so the same data give the same interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import polars as pl

from riskpipe import schema as S
from riskpipe.propensity import random_exam_probability

RANDOM_REASON = "random"
DEFAULT_BOOTSTRAP = 2000
DEFAULT_LEVEL = 0.95


@dataclass(frozen=True)
class PromotionEvidence:
    """What the promotion decision rests on (JSON-clean via ``as_dict``)."""

    estimator: str  # "doubly robust" (the decision) with the IPS figures beside it
    days: list[str]
    challenger_hits: float  # DR estimate of hits at capacity over ``days``
    champion_hits: float
    difference: float  # challenger - champion (DR)
    interval: tuple[float, float]  # paired bootstrap interval of ``difference``
    level: float
    challenger_hits_ips: float
    champion_hits_ips: float
    difference_ips: float
    interval_ips: tuple[float, float]
    labelled_positives: int
    random_exams: int
    random_positives: int
    bootstrap: int
    seed: int

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["interval"] = list(self.interval)
        out["interval_ips"] = list(self.interval_ips)
        return out


def _frame(scored: pl.DataFrame, days: Sequence[Any], rate: float | None) -> pl.DataFrame:
    """Rows of ``days`` with ``_y`` (0/1, null unexamined), ``_random`` and ``_p``: a random
    exam's chance of being drawn by the compliance draw (``rate``, else the day's random exams
    without a recorded probability / shipments) or the exploration draw (its recorded
    ``selection_probability``): ``riskpipe.propensity``."""
    reason = pl.col(S.EXAM_REASON).cast(pl.String)
    examined = pl.col(S.IS_POSITIVE).is_not_null()
    frame = scored.filter(pl.col(S.ARRIVAL_DATE).is_in(list(days))).with_columns(
        pl.col(S.IS_POSITIVE).cast(pl.Float64).alias("_y"),
        (examined & (reason == RANDOM_REASON)).fill_null(False).alias("_random"),
        (examined & (reason != RANDOM_REASON).fill_null(True)).fill_null(False).alias("_targeted"),
    )
    recorded = (
        pl.col(S.SELECTION_PROBABILITY) if S.SELECTION_PROBABILITY in frame.columns else pl.lit(None, dtype=pl.Float64)
    )
    # one probability per random exam covering both draws (compliance and exploration)
    p = random_exam_probability(pl.col("_random"), recorded, pl.len().over(S.ARRIVAL_DATE), rate)
    return frame.with_columns(p.alias("_p"))


def _ips_terms(selected: str) -> pl.Expr:
    """Per-row IPS contribution of a policy whose selection is the boolean column ``selected``:
    the observed outcome of its targeted picks, the weighted outcome of its random exams.
    Exploration is drawn only among the shipments risk did not pick, so the picks of the policy
    that made the list have chance 0 of a random exam: without their known outcomes its IPS
    was structurally 0 and the comparison favoured any challenger."""
    return (
        pl.when(pl.col(selected) & pl.col("_targeted"))
        .then(pl.col("_y"))
        .when(pl.col(selected) & pl.col("_random") & (pl.col("_p") > 0))
        .then(pl.col("_y") / pl.col("_p"))
        .otherwise(0.0)
    )


def _dr_terms(selected: str, q: str) -> pl.Expr:
    """Per-row DR contribution: mu on selected rows plus the IPS correction on random exams."""
    mu = pl.when(pl.col("_targeted")).then(pl.col("_y")).otherwise(pl.col(q).cast(pl.Float64).fill_null(0.0))
    correction = (
        pl.when(pl.col("_random") & (pl.col("_p") > 0))
        .then((pl.col("_y") - pl.col(q).cast(pl.Float64).fill_null(0.0)) / pl.col("_p"))
        .otherwise(0.0)
    )
    return pl.when(pl.col(selected)).then(mu + correction).otherwise(0.0)


def ips_hits(
    scored: pl.DataFrame, selected: str, days: Sequence[Any] | None = None, rate: float | None = None
) -> float:
    """Horvitz-Thompson estimate of a policy's hits at capacity from the random exams (see the
    module docstring for the assumptions). ``selected``: boolean column, the policy's picks."""
    days = sorted(scored[S.ARRIVAL_DATE].unique().to_list()) if days is None else days
    return float(_frame(scored, days, rate).select(_ips_terms(selected).sum()).item() or 0.0)


def dr_hits(
    scored: pl.DataFrame, selected: str, q: str, days: Sequence[Any] | None = None, rate: float | None = None
) -> float:
    """Doubly robust estimate of a policy's hits at capacity (``q``: outcome-model column)."""
    days = sorted(scored[S.ARRIVAL_DATE].unique().to_list()) if days is None else days
    return float(_frame(scored, days, rate).select(_dr_terms(selected, q).sum()).item() or 0.0)


def paired_bootstrap(
    diff: np.ndarray,
    day_index: np.ndarray,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> tuple[float, float]:
    """Percentile interval of ``sum(diff)`` when shipments are resampled with replacement within
    each day (``day_index``: the day of each row). Both policies' contributions are in ``diff``
    (challenger - champion per row), so each resample is shared: a paired bootstrap. Only rows
    with a nonzero difference are drawn individually (the rest are one multinomial cell), which
    is an exact resample of the day at the cost of its few differing rows."""
    diff = np.asarray(diff, dtype=float)
    day_index = np.asarray(day_index)
    rng = np.random.default_rng(seed)
    totals = np.zeros(n_boot)
    for day in np.unique(day_index):
        rows = day_index == day
        n = int(rows.sum())
        d = diff[rows]
        d = d[d != 0]
        if not d.size:
            continue
        counts = rng.multinomial(n, np.r_[np.full(d.size, 1.0 / n), 1.0 - d.size / n].clip(0, 1), size=n_boot)
        totals += counts[:, : d.size] @ d
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(totals, [alpha, 1.0 - alpha])
    # hits are counts: differences below 1e-9 are floating-point noise of near-zero scores
    return round(float(lo), 9) + 0.0, round(float(hi), 9) + 0.0


def estimate(
    scored: pl.DataFrame,
    challenger: str,
    champion: str,
    q: str,
    days: Sequence[Any],
    *,
    rate: float | None = None,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> PromotionEvidence:
    """DR and IPS hits at capacity of the ``challenger`` and ``champion`` selections (boolean
    columns of ``scored``) over ``days``, paired bootstrap intervals of their difference, and
    the evidence counts (labelled positives, random exams, random positives on those days)."""
    days = sorted(days)
    frame = _frame(scored, days, rate).sort(S.ARRIVAL_DATE, S.SHIPMENT_ID)
    terms = frame.select(
        _dr_terms(challenger, q).alias("dr_ch"),
        _dr_terms(champion, q).alias("dr_champ"),
        _ips_terms(challenger).alias("ips_ch"),
        _ips_terms(champion).alias("ips_champ"),
        pl.col(S.ARRIVAL_DATE).rank("dense").alias("day"),
    )
    day = terms["day"].to_numpy()
    dr_diff = (terms["dr_ch"] - terms["dr_champ"]).to_numpy()
    ips_diff = (terms["ips_ch"] - terms["ips_champ"]).to_numpy()
    # one seed for both intervals: the same resamples of shipments
    interval = paired_bootstrap(dr_diff, day, n_boot, seed, level)
    interval_ips = paired_bootstrap(ips_diff, day, n_boot, seed, level)
    counts = frame.select(
        (pl.col("_y") == 1).fill_null(False).sum().alias("labelled_positives"),
        pl.col("_random").sum().alias("random_exams"),
        (pl.col("_random") & (pl.col("_y") == 1)).fill_null(False).sum().alias("random_positives"),
    ).row(0, named=True)
    ch, cp = float(terms["dr_ch"].sum()), float(terms["dr_champ"].sum())
    ich, icp = float(terms["ips_ch"].sum()), float(terms["ips_champ"].sum())
    return PromotionEvidence(
        estimator="doubly robust",
        days=[d.isoformat() if hasattr(d, "isoformat") else str(d) for d in days],
        challenger_hits=ch,
        champion_hits=cp,
        difference=ch - cp,
        interval=interval,
        level=level,
        challenger_hits_ips=ich,
        champion_hits_ips=icp,
        difference_ips=ich - icp,
        interval_ips=interval_ips,
        labelled_positives=int(counts["labelled_positives"] or 0),
        random_exams=int(counts["random_exams"] or 0),
        random_positives=int(counts["random_positives"] or 0),
        bootstrap=n_boot,
        seed=seed,
    )


def decide(evidence: PromotionEvidence, min_positives: int, margin: float = 0.0) -> tuple[bool, str]:
    """Promote only with at least ``min_positives`` labelled positives on the evaluation days and
    a bootstrap interval of challenger - champion whose lower bound exceeds ``margin`` (hits)."""
    lo, hi = evidence.interval
    if evidence.labelled_positives < min_positives:
        return False, (
            f"not enough evidence: champion kept ({evidence.labelled_positives} labelled positives "
            f"< minimum {min_positives})"
        )
    if lo > margin:
        return True, f"challenger better: interval lower bound {lo:+.2f} > margin {margin:g} hits: promoted"
    if hi < 0:
        return False, "challenger worse: interval below zero: champion kept"
    if lo == hi == 0:
        return False, "no difference between challenger and champion (interval [0, 0]): champion kept"
    if lo <= 0 <= hi:
        return False, "interval straddles zero: champion kept"
    return False, f"interval lower bound {lo:+.2f} <= margin {margin:g} hits: champion kept"


def summary(record: dict[str, Any]) -> str:
    """One line: the estimates, the interval and the evidence counts of a decision record (empty
    when the record holds no comparison, e.g. a first model)."""
    ev = record.get("evidence")
    if not isinstance(ev, dict) or "interval" not in ev:
        return ""
    lo, hi = ev["interval"]
    ilo, ihi = ev.get("interval_ips") or (0.0, 0.0)
    return (
        f"hits at capacity over {len(ev.get('days', []))} days ({ev.get('estimator', 'doubly robust')}): challenger "
        f"{ev['challenger_hits']:.1f} vs champion {ev['champion_hits']:.1f}, difference {ev['difference']:+.1f}, "
        f"{ev.get('level', DEFAULT_LEVEL):.0%} interval [{lo:+.1f}, {hi:+.1f}] (IPS from random exams: "
        f"{ev.get('difference_ips', 0.0):+.1f}, [{ilo:+.1f}, {ihi:+.1f}]); evidence: {ev['labelled_positives']} labelled "
        f"positives, {ev['random_exams']} random exams, {ev['random_positives']} random positives"
    )


def select_at_capacity(scored: pl.DataFrame, names: Sequence[str], capacity: dict[Any, int]) -> pl.DataFrame:
    """``scored`` with a boolean ``selected__<name>`` per scorer: the day's top ``capacity``
    by ``score__<name>`` (ties by shipment id, as ``riskpipe.model.evaluate_scored`` ranks)."""
    cap = pl.DataFrame(
        {S.ARRIVAL_DATE: list(capacity), "_k": list(capacity.values())},
        schema={S.ARRIVAL_DATE: pl.Date, "_k": pl.Int64},
    )
    frame = scored.sort(S.ARRIVAL_DATE, S.SHIPMENT_ID).join(cap, on=S.ARRIVAL_DATE, how="left", maintain_order="left")
    return frame.with_columns(
        [
            (
                pl.col(f"score__{n}").fill_nan(None).rank("ordinal", descending=True).over(S.ARRIVAL_DATE)
                <= pl.col("_k").fill_null(0)
            )
            .fill_null(False)
            .alias(f"selected__{n}")
            for n in names
        ]
    ).drop("_k")
