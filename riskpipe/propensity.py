"""How much of the day a random exam stands for when two random draws share the day.

A day's random exams (``exam_reason = random``) come from two independent draws: the compliance
draw (a uniform share ``r`` of all the day's shipments, no probability recorded) and the published
list's exploration picks (each with its recorded ``selection_probability`` ``pi``). Each draw
alone stands for the whole day, so summing both as one sample counts the day twice. The union's
inclusion probability ``1 - (1 - r) * (1 - pi_i)`` would need ``pi_i`` of the compliance exams too,
and the list records it only for its picks (with ``pi = 0`` off the list the compliance exams are
overweighted: measured +70 % on hits in /tmp/rev2/t_ips.py's setting). Instead two estimators,
each unbiased, are averaged:

- given the exploration draw: its picks are known outcomes (weight 1) and the compliance exams
  off the list stand for the rest at ``1 / r``;
- given the compliance draw: its exams are known outcomes (weight 1) and the exploration picks
  stand for the rest at ``1 / pi``.

With ``lam`` = the compliance exams' share of the day's random exams, a random exam's weight is
``lam + (1 - lam) / pi`` on the list and ``lam / r + (1 - lam)`` off it; the weights of a day's
random exams sum to about its shipments. ``r`` is the known rate or the compliance exams / the
shipments off the list; ``lam`` from the day's counts (a ratio estimate: consistent, not exactly
unbiased). A shipment taken by both draws is read as an exploration pick (chance ``r * pi``).
Used by the promotion estimates and the training weights, so both weigh a random exam alike.
"""

from __future__ import annotations

import polars as pl

from riskpipe import schema as S

_TINY = 1e-12


def random_exam_probability(
    is_random: pl.Expr, recorded: pl.Expr, shipments: pl.Expr, rate: float | None = None
) -> pl.Expr:
    """1 / the weight of a random exam (see the module docstring): the probability to divide
    its outcome by. ``is_random``: boolean, the row is a random exam; ``recorded``: its
    exploration probability (null off the list); ``shipments``: the day's shipment count;
    ``rate``: the compliance rate when known."""
    pi = recorded.cast(pl.Float64)
    on_list = (is_random & pi.is_not_null()).fill_null(False).cast(pl.Int64).sum().over(S.ARRIVAL_DATE)
    off_list = (is_random & pi.is_null()).fill_null(False).cast(pl.Int64).sum().over(S.ARRIVAL_DATE)
    lam = (off_list / (on_list + off_list).clip(1, None)).cast(pl.Float64)
    if rate is not None:
        r = pl.lit(float(rate))
    else:
        r = off_list / (shipments.cast(pl.Float64) - on_list).clip(1.0, None)
    weight = (
        pl.when(pi.is_not_null())
        .then(lam + (1.0 - lam) / pi.clip(_TINY, 1.0))
        .otherwise(lam / r.clip(_TINY, 1.0) + (1.0 - lam))
    )
    return (1.0 / weight).cast(pl.Float64)
