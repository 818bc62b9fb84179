"""Model health: the champion's metadata, slot use per port, daily volumes, hit rates."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from riskpipe import schema as S
from riskpipe.errors import RiskpipeError
from riskpipe.rank import port_ceilings
from riskpipe.registry import META_FILE, champion_version
from riskpipe.report import score_mean_exprs, score_mean_of
from riskpipe.store import scan_raw_shipments
from riskpipe.web.days import DayFiles


class HealthData(DayFiles):
    """What the model-health page reads."""

    def champion(self) -> dict[str, Any] | None:
        """The champion's version and meta.json, the pointer read by the registry (a missing,
        broken or outside-the-registry pointer is no model; an unreadable meta.json is empty)."""
        models = Path(self.settings.models_dir)
        try:
            version = champion_version(models)
        except RiskpipeError:
            return None
        if version is None:
            return None
        try:
            meta = json.loads((models / version / META_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            meta = {}
        return {"version": version, "meta": meta if isinstance(meta, dict) else {}}

    def slot_use(self, day: date) -> list[dict[str, Any]]:
        """Per port on ``day``: exams picked by risk and by exploration, and the port's ceiling
        (``rank.port_ceilings`` of that day's shipments and the configured capacities)."""
        if not self.targets_path(day).exists():
            return []
        use = (
            pl.read_parquet(self.targets_path(day), columns=[S.PORT_OF_ENTRY, S.SELECTION])
            .group_by(pl.col(S.PORT_OF_ENTRY).cast(pl.String))
            .agg(
                (pl.col(S.SELECTION) == "risk").sum().alias("risk"),
                (pl.col(S.SELECTION) == "exploration").sum().alias("exploration"),
            )
            .sort(["risk", S.PORT_OF_ENTRY], descending=[True, False])
        )
        counts = dict(scan_raw_shipments(self.layout, [day]).group_by(S.PORT_OF_ENTRY).len().collect().iter_rows())
        slots = (
            port_ceilings({str(k): int(v) for k, v in counts.items() if k is not None}, self.settings) if counts else {}
        )
        return [
            {"port": p, "risk": int(r), "exploration": int(e), "slots": slots.get(p)} for p, r, e in use.iter_rows()
        ]

    def volumes(self, days: int = 14) -> list[dict[str, Any]]:
        """Per published day: scored shipments, targets by selection kind, mean and p99 score."""
        out = []
        for d in sorted(self.days()[:days]):
            row: dict[str, Any] = {
                "day": d,
                "scored": 0,
                "targets": 0,
                "risk": 0,
                "exploration": 0,
                "mean_score": None,
                "p99_score": None,
                "hist": [],
            }
            if self.scores_path(d).exists():
                s = (
                    pl.scan_parquet(self.scores_path(d))
                    .select(
                        pl.len().alias("n"),
                        *score_mean_exprs(),
                        pl.col(S.RISK_SCORE).quantile(0.99).alias("p99"),
                        *[
                            (
                                (pl.col(S.RISK_SCORE) >= i / 10)
                                & (pl.col(S.RISK_SCORE) < (i + 1) / 10 + (1e-9 if i == 9 else 0))
                            )
                            .sum()
                            .alias(f"h{i}")
                            for i in range(10)
                        ],
                    )
                    .collect()
                    .row(0, named=True)
                )
                row.update(
                    scored=s["n"],
                    mean_score=score_mean_of(s),  # the summary's mean, the same on every read
                    p99_score=s["p99"],
                    hist=[s[f"h{i}"] for i in range(10)],
                )
            if self.targets_path(d).exists():
                t = (
                    pl.scan_parquet(self.targets_path(d))
                    .group_by(pl.col(S.SELECTION).cast(pl.String))
                    .agg(pl.len())
                    .collect()
                )
                for sel, n in t.iter_rows():
                    if sel in ("risk", "exploration"):
                        row[sel] = n
                    row["targets"] += n
            out.append(row)
        return out


def weekly_hit_rates(labels: pl.DataFrame, weeks: int = 12) -> list[dict[str, Any]]:
    """Exams and fentanyl-related finds per exam week (Monday) and exam reason, last ``weeks``."""
    if labels.height == 0:
        return []
    last: date = labels.select(pl.col(S.EXAM_DATE).max()).item()
    f = (
        labels.filter(pl.col(S.EXAM_DATE) > last - timedelta(weeks=weeks))
        .group_by(
            pl.col(S.EXAM_DATE).dt.truncate("1w").alias("week"), pl.col(S.EXAM_REASON).cast(pl.String).alias("reason")
        )
        .agg(pl.len().alias("exams"), S.is_positive_expr().sum().cast(pl.Int64).alias("positives"))
        .sort("week", "reason")
        .with_columns(pl.col("week").dt.to_string("%Y-%m-%d"))
    )
    return f.to_dicts()


def hit_rates(labels: pl.DataFrame, days: int = 30) -> list[dict[str, Any]]:
    """Exams and fentanyl-related hit rate per exam day and reason (targeted vs random)."""
    if labels.height == 0:
        return []
    last: date = labels.select(pl.col(S.EXAM_DATE).max()).item()
    f = (
        labels.filter(pl.col(S.EXAM_DATE) > last - timedelta(days=days))
        .group_by(S.EXAM_DATE, pl.col(S.EXAM_REASON).cast(pl.String))
        .agg(pl.len().alias("exams"), S.is_positive_expr().sum().cast(pl.Int64).alias("positives"))
        .with_columns((pl.col("positives") / pl.col("exams")).alias("hit_rate"))
        .sort(S.EXAM_DATE, S.EXAM_REASON)
    )
    return f.to_dicts()
