"""Fitted derivations (training-row medians and percentiles per group) and the estimator behind
a mapping."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import polars as pl

from riskpipe.external.mapping import ROLES, Derivation, Mapping


class Classifier(Protocol):
    """What the benchmark needs of an estimator: fit on a frame and 0/1 labels, probabilities
    (column 1 positive), and the boosting rounds it used (``TabularRiskClassifier`` or a
    ``MappedModel`` around one)."""

    @property
    def n_iter_(self) -> int: ...

    def fit(
        self,
        X: pl.DataFrame,
        y: np.ndarray,
        sample_weight: np.ndarray | None = None,
        groups: np.ndarray | None = None,
    ) -> object: ...

    def predict_proba(self, X: pl.DataFrame) -> np.ndarray: ...


def group_key(columns: tuple[str, ...]) -> pl.Expr:
    """One text key per row for a group of one or more columns (null when any of them is null)."""
    if len(columns) == 1:
        return pl.col(columns[0]).cast(pl.String)
    return pl.concat_str([pl.col(c).cast(pl.String) for c in columns], separator="\x1f")


@dataclass(frozen=True)
class GroupMedians:
    """A fitted ``relative_to_group`` derivation: the training medians of ``column`` per value
    of each group column (only values with ``min_rows`` training rows) and overall."""

    name: str
    column: str
    groups: tuple[tuple[str, ...], ...]
    tables: tuple[tuple[tuple[str, ...], tuple[float, ...]], ...]  # per group: (keys, medians)
    overall: float | None

    @classmethod
    def fit(cls, d: Derivation, frame: pl.DataFrame) -> GroupMedians:
        """Learn the medians from the training rows ``frame`` (rows without a value ignored)."""
        value = pl.col(d.columns[0]).cast(pl.Float64)
        keys = [f"_g{i}" for i in range(len(d.groups))]
        rows = frame.select(value.alias("v"), *(group_key(g).alias(k) for g, k in zip(d.groups, keys, strict=True)))
        rows = rows.filter(pl.col("v").is_not_null())
        tables = []
        for g in keys:
            t = (
                rows.drop_nulls(g)
                .group_by(g)
                .agg(pl.col("v").median().alias("m"), pl.len().alias("n"))
                .filter(pl.col("n") >= d.min_rows)
                .sort(g)
            )
            tables.append((tuple(t[g].to_list()), tuple(t["m"].to_list())))
        overall = rows.select(pl.col("v").median()).item() if rows.height else None
        return cls(d.name, d.columns[0], d.groups, tuple(tables), None if overall is None else float(overall))

    def expr(self) -> pl.Expr:
        """The feature of any rows: the finest group's training median, else a coarser one's."""
        median = pl.lit(self.overall, pl.Float64)
        for g, (values, medians) in reversed(list(zip(self.groups, self.tables, strict=False))):
            found = group_key(g).replace_strict(
                list(values), list(medians), default=pl.lit(None, pl.Float64), return_dtype=pl.Float64
            )
            median = pl.coalesce(found, median)

        def ln(e: pl.Expr) -> pl.Expr:  # as op "log"
            return e.clip(lower_bound=0.0).log1p()

        return (ln(pl.col(self.column).cast(pl.Float64)) - ln(median)).alias(self.name)

    def transform(self, X: pl.DataFrame) -> pl.DataFrame:
        return X.with_columns(self.expr())


@dataclass(frozen=True)
class GroupRanks:
    """A fitted ``rank_in_group`` derivation: per group (finest first, only groups with
    ``min_rows`` valued training rows) and overall, the distinct training values of ``column``
    with the number of training values below each (``lt``) and at most each (``le``)."""

    name: str
    column: str
    groups: tuple[tuple[str, ...], ...]
    tables: tuple[pl.DataFrame, ...]  # per group, then overall: _k, _at, _lt, _le, _n

    @classmethod
    def fit(cls, d: Derivation, frame: pl.DataFrame) -> GroupRanks:
        """Learn the sorted values from the training rows ``frame`` (rows without a value ignored)."""
        value = pl.col(d.columns[0]).cast(pl.Float64).alias("_at")
        tables = []
        for g in (*d.groups, ()):
            key = (group_key(g) if g else pl.lit("", pl.String)).alias("_k")
            rows = frame.select(key, value).drop_nulls()
            counts = rows.group_by("_k", "_at").len("_c").sort("_k", "_at")
            t = counts.with_columns(
                _le=pl.col("_c").cum_sum().over("_k"), _n=pl.col("_c").sum().over("_k")
            ).with_columns(_lt=pl.col("_le") - pl.col("_c"))
            if g:
                t = t.filter(pl.col("_n") >= d.min_rows)
            tables.append(t.select("_k", "_at", "_lt", "_le", "_n").sort("_at"))
        return cls(d.name, d.columns[0], d.groups, tuple(tables))

    def transform(self, X: pl.DataFrame) -> pl.DataFrame:
        """The feature of any rows: mid-rank percentile in the finest group with enough training
        rows, else a coarser one, else all training rows (null without a value)."""
        row, v = "__riskpipe_rank_row", pl.col(self.column).cast(pl.Float64).alias("_v")
        levels: list[pl.DataFrame] = []
        for g, t in zip((*self.groups, ()), self.tables, strict=True):
            key = (group_key(g) if g else pl.lit("", pl.String)).alias("_k")
            q = X.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias(row), key, v).drop_nulls().sort("_v")
            j = q.join_asof(
                t.drop("_n"), left_on="_v", right_on="_at", by="_k", strategy="backward", check_sortedness=False
            )  # both sides sorted by value above
            j = j.join(t.select("_k", "_n").unique("_k"), on="_k", how="left")
            below = pl.when(pl.col("_at") == pl.col("_v")).then(pl.col("_lt")).otherwise(pl.col("_le")).fill_null(0)
            at_most = pl.col("_le").fill_null(0)
            pct = ((below + at_most).cast(pl.Float64) / 2.0 / pl.col("_n").cast(pl.Float64)).alias(f"_p{len(levels)}")
            levels.append(j.select(row, pct))
        found = X.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias(row))
        for level in levels:
            found = found.join(level, on=row, how="left", maintain_order="left")
        return X.with_columns(pl.coalesce(found.drop(row).get_columns()).alias(self.name))


#: the fitted state of each fitted op
FITTERS: dict[str, type[GroupMedians] | type[GroupRanks]] = {
    "relative_to_group": GroupMedians,
    "rank_in_group": GroupRanks,
}


class MappedModel:
    """The shared estimator behind a mapping's fitted derivations: ``fit`` learns them from the
    training rows (then the estimator on the completed features), ``predict_proba`` looks them
    up, so no statistic of the rows being scored reaches their features."""

    def __init__(self, mapping: Mapping, classifier: Classifier) -> None:
        self.mapping = mapping
        self.classifier = classifier

    def _select(self, X: pl.DataFrame) -> pl.DataFrame:
        roles = self.mapping.features_by_role()
        return X.select(c for r in ROLES for c in roles[r])

    def fit(
        self,
        X: pl.DataFrame,
        y: np.ndarray,
        sample_weight: np.ndarray | None = None,
        groups: np.ndarray | None = None,
    ) -> MappedModel:
        self.fitted_: list[GroupMedians | GroupRanks] = []
        for d in self.mapping.fitted():  # in order: a fitted derivation may use an earlier one
            self.fitted_.append(FITTERS[d.op].fit(d, X))
            X = self.fitted_[-1].transform(X)
        self.classifier.fit(self._select(X), y, sample_weight=sample_weight, groups=groups)
        return self

    def transform(self, X: pl.DataFrame) -> pl.DataFrame:
        """The features the estimator sees for rows ``X`` (fitted derivations added)."""
        for fitted in self.fitted_:
            X = fitted.transform(X)
        return self._select(X)

    def predict_proba(self, X: pl.DataFrame) -> np.ndarray:
        return self.classifier.predict_proba(self.transform(X))

    @property
    def n_iter_(self) -> int:
        return int(self.classifier.n_iter_)


def build_model(mapping: Mapping, random_state: int = 0) -> Classifier:
    """The shared estimator with the mapping's roles and model parameters (wrapped in a
    ``MappedModel`` when the mapping has fitted derivations)."""
    from riskpipe.estimator import TabularRiskClassifier

    roles = mapping.features_by_role()
    params = {"random_state": random_state, **mapping.model}
    classifier = TabularRiskClassifier(
        numeric=roles["numeric"],
        categorical=roles["categorical"],
        high_cardinality=roles["high_cardinality"],
        **params,
    )
    return MappedModel(mapping, classifier) if mapping.fitted() else classifier
