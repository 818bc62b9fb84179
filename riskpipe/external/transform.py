"""Fitted derivations (training-row medians per group) and the estimator behind a mapping."""

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

    def fit(self, X: pl.DataFrame, y: np.ndarray, groups: np.ndarray | None = None) -> object: ...

    def predict_proba(self, X: pl.DataFrame) -> np.ndarray: ...


@dataclass(frozen=True)
class GroupMedians:
    """A fitted ``relative_to_group`` derivation: the training medians of ``column`` per value
    of each group column (only values with ``min_rows`` training rows) and overall."""

    name: str
    column: str
    groups: tuple[str, ...]
    tables: tuple[tuple[tuple[str, ...], tuple[float, ...]], ...]  # per group: (values, medians)
    overall: float | None

    @classmethod
    def fit(cls, d: Derivation, frame: pl.DataFrame) -> GroupMedians:
        """Learn the medians from the training rows ``frame`` (rows without a value ignored)."""
        value = pl.col(d.columns[0]).cast(pl.Float64)
        rows = frame.select(value.alias("v"), *(pl.col(g).cast(pl.String).alias(g) for g in d.groups))
        rows = rows.filter(pl.col("v").is_not_null())
        tables = []
        for g in d.groups:
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
            found = (
                pl.col(g)
                .cast(pl.String)
                .replace_strict(list(values), list(medians), default=pl.lit(None, pl.Float64), return_dtype=pl.Float64)
            )
            median = pl.coalesce(found, median)

        def ln(e: pl.Expr) -> pl.Expr:  # as op "log"
            return e.clip(lower_bound=0.0).log1p()

        return (ln(pl.col(self.column).cast(pl.Float64)) - ln(median)).alias(self.name)


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

    def fit(self, X: pl.DataFrame, y: np.ndarray, groups: np.ndarray | None = None) -> MappedModel:
        self.medians_: list[GroupMedians] = []
        for d in self.mapping.fitted():  # in order: a fitted derivation may use an earlier one
            self.medians_.append(GroupMedians.fit(d, X))
            X = X.with_columns(self.medians_[-1].expr())
        self.classifier.fit(self._select(X), y, groups=groups)
        return self

    def transform(self, X: pl.DataFrame) -> pl.DataFrame:
        """The features the estimator sees for rows ``X`` (fitted derivations added)."""
        for medians in self.medians_:
            X = X.with_columns(medians.expr())
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
