"""The shared tabular risk classifier: Polars frame in, probability of a positive out.

One estimator serves the shipment model and the external benchmark, so both measure the same
machinery. Columns play one of three roles:

- numeric: passed through (booleans as 0/1, dates as days since 1970-01-01); nulls stay missing,
  which gradient boosting handles natively;
- categorical (few levels, at most ``max_categories``): ordinal codes used as native categorical
  splits by ``HistGradientBoostingClassifier``; an unseen level or a null is treated as missing;
- high-cardinality codes (HTS codes, ports, party keys): target encoding (sklearn
  ``TargetEncoder``, cross-fitted on the training rows so a code's own label does not leak into
  its encoding) plus the code's relative frequency in the training rows. An unseen code gets the
  prior and frequency 0.

Roles are auto-detected when not given: numeric, boolean and date dtypes are numeric; string,
Categorical and Enum columns are categorical if they have at most ``max_categories`` distinct
values in the training frame, else high-cardinality. A column named in ``categorical`` or
``high_cardinality`` is read as text whatever its dtype (an integer office code is a code).

Saved with skops through ``riskpipe.registry``: the learned state is sklearn built-ins in a
``Pipeline`` plus plain lists, dicts and strings, and no function reference.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import GroupKFold, GroupShuffleSplit, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder, TargetEncoder
from sklearn.utils.validation import check_is_fitted

FREQ_SUFFIX = "__freq"
#: rows per tree-prediction call (about 10 MB of encoded features: stays in cache across trees)
PREDICT_CHUNK = 16_384
_NULL_KEY = "\x00null"  # stands for a null code in the frequency table only
#: what fit and predict accept (a lazy frame is collected first)
Frame = pl.DataFrame | pl.LazyFrame

#: Types beyond skops' defaults that a fitted ``TabularRiskClassifier`` saved by
#: ``riskpipe.modelfile.dumps_model`` holds (no functions: HGB's ``partial(check_array)`` is taken
#: out and rebuilt by the registry). The registry enforces its own exact list,
#: ``riskpipe.modelfile.MODEL_NODES``; checked by the round trip in tests/unit/test_estimator.py.
TABULAR_TRUSTED_TYPES: list[str] = [
    "riskpipe.estimator.TabularRiskClassifier",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.model_selection._split.StratifiedKFold",  # the TargetEncoder's seeded folds
]


def _is_numeric(dtype: pl.DataType) -> bool:
    return dtype.is_numeric() or dtype == pl.Boolean or dtype.is_temporal()


def _is_text(dtype: pl.DataType) -> bool:
    return dtype in (pl.String, pl.Categorical) or isinstance(dtype, (pl.Enum, pl.Categorical))


def _one_openmp_thread() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="openmp")  # this worker thread only, for its lifetime


def predict_chunked(
    predict: Callable[[np.ndarray], np.ndarray], Z: np.ndarray, workers: int | None = None
) -> np.ndarray:
    """``predict(Z)`` computed ``PREDICT_CHUNK`` rows at a time by ``workers`` Python threads
    (default: the CPU count, at most 4), each with one OpenMP thread. Tree prediction walks all
    rows once per tree: a chunk stays in cache across the trees (half the cost of one call on
    500 k rows), and the trees release the GIL, so threads share the chunks without OpenMP's
    synchronisation, which costs more than it gains on a busy shared machine. Rows are
    independent: the result equals ``predict(Z)``."""
    from concurrent.futures import ThreadPoolExecutor

    starts = range(0, Z.shape[0], PREDICT_CHUNK)
    workers = max(1, min(workers or os.cpu_count() or 1, 4, len(starts)))
    if workers == 1:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="openmp"):
            return (
                predict(Z) if len(starts) <= 1 else np.concatenate([predict(Z[i : i + PREDICT_CHUNK]) for i in starts])
            )
    with ThreadPoolExecutor(workers, initializer=_one_openmp_thread) as pool:
        return np.concatenate(list(pool.map(lambda i: predict(Z[i : i + PREDICT_CHUNK]), starts)))


def _is_missing(c: object) -> bool:
    return c is None or (isinstance(c, float) and np.isnan(c))


def _identity(trans: object) -> bool:
    """A fitted ``"passthrough"`` (sklearn stores it as a FunctionTransformer without a func)."""
    return isinstance(trans, FunctionTransformer) and trans.func is None and trans.validate is False


def _lookup(col: str, cats: Iterable[object], values: list[float], unknown: float) -> pl.Expr:
    """``col`` (text) mapped through a fitted encoder's ``categories_`` -> ``values``: a null
    takes the missing level's value when one was seen in training (sklearn keeps ``None`` as a
    level), else ``unknown``, as does an unseen code."""
    keys, vals, null_value = [], [], None
    for c, v in zip(cats, values, strict=False):
        if _is_missing(c):
            null_value = v
        else:
            keys.append(str(c))
            vals.append(v)
    null_value = unknown if null_value is None else null_value
    mapped = pl.col(col).cast(pl.String).replace_strict(keys, vals, default=unknown, return_dtype=pl.Float64)
    return pl.when(pl.col(col).is_null()).then(pl.lit(null_value, pl.Float64)).otherwise(mapped).alias(col)


def numeric_expr(col: str, dtype: pl.DataType) -> pl.Expr:
    """A numeric feature as Float64; dates and timestamps as days since the epoch."""
    if dtype == pl.Date:
        return pl.col(col).cast(pl.Int32).cast(pl.Float64)
    if dtype.is_temporal():
        return (pl.col(col).dt.epoch("s") / 86_400.0).cast(pl.Float64)
    return pl.col(col).cast(pl.Float64)


class TabularRiskClassifier(ClassifierMixin, BaseEstimator):
    """Gradient-boosted trees over numeric, categorical and high-cardinality code columns.

    Parameters
    ----------
    categorical, high_cardinality, numeric:
        Column roles; None means auto-detect from dtypes and level counts (see module doc).
        Columns given in none of the lists, with roles given, are auto-detected too.
    ignore:
        Columns never used as features (ids, labels that slipped in).
    max_categories:
        Most distinct levels for a native categorical (HGB allows at most 255).
    frequency_encoding:
        Add each high-cardinality code's relative frequency in the training rows.
    target_encoding_cv, target_encoding_smooth:
        Folds for cross-fitting and the smoothing of ``TargetEncoder``.
    learning_rate ... class_weight:
        ``HistGradientBoostingClassifier`` parameters. Defaults suit extreme class imbalance:
        a small learning rate with early stopping on log-loss (held-out share stratified),
        L2 regularisation and a minimum leaf size so that rare positives do not grow one-leaf
        rules.
    random_state:
        Seed for the boosting's early-stopping split and feature subsampling.
    """

    def __init__(
        self,
        categorical: list[str] | None = None,
        high_cardinality: list[str] | None = None,
        numeric: list[str] | None = None,
        ignore: list[str] | None = None,
        *,
        max_categories: int = 250,
        frequency_encoding: bool = True,
        target_encoding_cv: int = 5,
        target_encoding_smooth: float | str = "auto",
        learning_rate: float = 0.05,
        max_iter: int = 500,
        max_leaf_nodes: int | None = 31,
        max_depth: int | None = None,
        min_samples_leaf: int = 40,
        l2_regularization: float = 1.0,
        max_features: float = 1.0,
        max_bins: int = 255,
        early_stopping: bool | str = True,
        validation_fraction: float | None = 0.1,
        n_iter_no_change: int = 30,
        class_weight: dict[int, float] | str | None = None,
        random_state: int | None = None,
    ) -> None:
        self.categorical = categorical
        self.high_cardinality = high_cardinality
        self.numeric = numeric
        self.ignore = ignore
        self.max_categories = max_categories
        self.frequency_encoding = frequency_encoding
        self.target_encoding_cv = target_encoding_cv
        self.target_encoding_smooth = target_encoding_smooth
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.max_leaf_nodes = max_leaf_nodes
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.max_features = max_features
        self.max_bins = max_bins
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.class_weight = class_weight
        self.random_state = random_state

    # -- roles ---------------------------------------------------------------------------------
    def _resolve_roles(self, X: pl.DataFrame) -> tuple[list[str], list[str], list[str]]:
        """(numeric, categorical, high-cardinality) column lists, in frame order."""
        given = {
            "numeric": list(self.numeric or []),
            "categorical": list(self.categorical or []),
            "high_cardinality": list(self.high_cardinality or []),
        }
        ignore = set(self.ignore or [])
        seen: dict[str, str] = {}
        for role, cols in given.items():
            for col in cols:
                if col not in X.columns:
                    raise ValueError(f"TabularRiskClassifier: {role} column {col!r} is not in the frame")
                if col in seen:
                    raise ValueError(f"TabularRiskClassifier: column {col!r} is both {seen[col]} and {role}")
                seen[col] = role
        roles: dict[str, str] = {}
        for col, dtype in X.schema.items():
            if col in ignore:
                continue
            if col in seen:
                roles[col] = seen[col]
            elif _is_numeric(dtype):
                roles[col] = "numeric"
            elif _is_text(dtype):
                levels = X.get_column(col).drop_nulls().n_unique()
                roles[col] = "categorical" if levels <= self.max_categories else "high_cardinality"
            else:
                raise ValueError(
                    f"TabularRiskClassifier: column {col!r} has unsupported dtype {dtype}; "
                    "give it a role or list it in ignore"
                )
        by_role = {role: [c for c, r in roles.items() if r == role] for role in given}
        return by_role["numeric"], by_role["categorical"], by_role["high_cardinality"]

    # -- preparation shared by fit and predict --------------------------------------------------
    def _prepare(self, X: Frame) -> pl.DataFrame:
        """Cast the fitted columns to their role's dtype and add frequency columns."""
        X, exprs = self._prepare_exprs(X)
        return X.select(exprs)

    def _prepare_plan(self, X: Frame) -> pl.LazyFrame:
        """:meth:`_prepare` as a plan: the caller may read only some of its columns."""
        X, exprs = self._prepare_exprs(X)
        return X.lazy().select(exprs)

    def _prepare_exprs(self, X: Frame) -> tuple[pl.DataFrame, list[pl.Expr]]:
        if isinstance(X, pl.LazyFrame):
            X = X.collect()
        if not isinstance(X, pl.DataFrame):
            raise TypeError("TabularRiskClassifier expects a Polars DataFrame")
        missing = [c for c in self.feature_names_in_ if c not in X.columns]
        if missing:
            raise ValueError(f"TabularRiskClassifier: missing feature column(s): {', '.join(missing)}")
        exprs: list[pl.Expr] = []
        for col in self.numeric_features_:
            exprs.append(numeric_expr(col, X.schema[col]))
        for col in self.categorical_features_ + self.high_cardinality_features_:
            exprs.append(pl.col(col).cast(pl.String))
        for col in self.high_cardinality_features_ if self.frequency_encoding else []:
            keys, freqs = self.frequencies_[col]
            exprs.append(
                pl.col(col)
                .cast(pl.String)
                .fill_null(_NULL_KEY)
                .replace_strict(keys, freqs, default=0.0, return_dtype=pl.Float64)
                .alias(col + FREQ_SUFFIX)
            )
        return X, exprs

    def _frequency_table(self, X: pl.DataFrame, col: str) -> tuple[list[str], list[float]]:
        counts = (
            X.select(pl.col(col).cast(pl.String).fill_null(_NULL_KEY).alias("code")).group_by("code").len().sort("code")
        )
        n = max(X.height, 1)
        return counts["code"].to_list(), (counts["len"] / n).to_list()

    def _build_pipeline(self) -> Pipeline:
        numeric_cols = list(self.numeric_features_)
        if self.frequency_encoding:
            numeric_cols += [c + FREQ_SUFFIX for c in self.high_cardinality_features_]
        transformers: list[tuple[str, object, list[str]]] = []
        if self.categorical_features_:
            transformers.append(
                (
                    "categorical",
                    OrdinalEncoder(
                        handle_unknown="use_encoded_value",
                        unknown_value=np.nan,
                        encoded_missing_value=np.nan,
                        dtype=np.float64,
                    ),
                    list(self.categorical_features_),
                )
            )
        if self.high_cardinality_features_:
            transformers.append(
                (
                    "target",
                    TargetEncoder(
                        target_type="binary",
                        smooth=self.target_encoding_smooth,
                        # an explicit splitter: an int cv shuffles with an unseeded RNG in 1.9
                        cv=StratifiedKFold(self.target_encoding_cv, shuffle=True, random_state=self.random_state),
                    ),
                    list(self.high_cardinality_features_),
                )
            )
        if numeric_cols:
            transformers.append(("numeric", "passthrough", numeric_cols))
        n_cat = len(self.categorical_features_)
        n_out = n_cat + len(self.high_cardinality_features_) + len(numeric_cols)
        categorical_mask = [i < n_cat for i in range(n_out)] if n_cat else None
        hgb = HistGradientBoostingClassifier(
            learning_rate=self.learning_rate,
            max_iter=self.max_iter,
            max_leaf_nodes=self.max_leaf_nodes,
            max_depth=self.max_depth,
            min_samples_leaf=self.min_samples_leaf,
            l2_regularization=self.l2_regularization,
            max_features=self.max_features,
            max_bins=self.max_bins,
            categorical_features=categorical_mask,
            early_stopping=self.early_stopping,
            validation_fraction=self.validation_fraction,
            n_iter_no_change=self.n_iter_no_change,
            class_weight=self.class_weight,
            random_state=self.random_state,
        )
        encode = ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)
        return Pipeline([("encode", encode), ("model", hgb)])

    # -- sklearn API ---------------------------------------------------------------------------
    def fit(
        self, X: Frame, y: ArrayLike, sample_weight: ArrayLike | None = None, groups: ArrayLike | None = None
    ) -> TabularRiskClassifier:
        """Learn roles, frequency tables, encoders and trees from a Polars frame and 0/1 labels
        (``sample_weight``: per-row weights for the trees, e.g. inverse selection probabilities).

        ``groups`` (one key per row, e.g. a near-duplicate key): rows of a group are never split
        apart, neither across the target encoder's cross-fitting folds (a row's encoding never
        sees its own group's labels) nor between the trees' rows and the early-stopping holdout.
        Without it the folds and the holdout are drawn row by row, as before."""
        if isinstance(X, pl.LazyFrame):
            X = X.collect()
        if not isinstance(X, pl.DataFrame):
            raise TypeError("TabularRiskClassifier expects a Polars DataFrame")
        y_arr = np.asarray(y)
        if y_arr.shape[0] != X.height:
            raise ValueError(f"TabularRiskClassifier: X has {X.height} rows but y has {y_arr.shape[0]}")
        classes = np.unique(y_arr)
        if classes.shape[0] != 2:
            raise ValueError(f"TabularRiskClassifier: y must hold two classes, found {classes.tolist()}")
        numeric, categorical, high = self._resolve_roles(X)
        if not (numeric or categorical or high):
            raise ValueError("TabularRiskClassifier: no feature columns")
        self.numeric_features_ = numeric
        self.categorical_features_ = categorical
        self.high_cardinality_features_ = high
        self.feature_names_in_ = np.asarray(numeric + categorical + high, dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        self.frequencies_ = {c: self._frequency_table(X, c) for c in high} if self.frequency_encoding else {}
        self.pipeline_ = self._build_pipeline()
        weights = {} if sample_weight is None else {"model__sample_weight": np.asarray(sample_weight, dtype=float)}
        prepared = self._prepare(X)
        # scikit-learn's histogram binning fails on a numeric column with no value in its training
        # split ("window shape cannot be larger than input array shape"; early stopping holds out
        # validation_fraction of the rows first), e.g. a party-graph column with a handful of links
        # in a young home. A column with fewer values than min_samples_leaf can never be split on
        # (the side holding its values would be too small), so a constant in its place at fit time
        # changes no tree, and at predict time its values go down the same (unsplit) paths.
        unsplittable = [
            c
            for c, dtype in prepared.schema.items()
            if dtype.is_numeric()
            and prepared[c].cast(pl.Float64).is_finite().fill_null(False).sum() < self.min_samples_leaf
        ]
        prepared = prepared.with_columns(pl.lit(0.0).alias(c) for c in unsplittable)
        if groups is None:
            self.pipeline_.fit(prepared, y_arr, **weights)
        else:
            self._fit_grouped(prepared, y_arr, np.asarray(groups), sample_weight)
        self.classes_ = self.pipeline_.classes_
        self.n_iter_ = int(self.pipeline_.named_steps["model"].n_iter_)
        return self

    def _fit_grouped(
        self, prepared: pl.DataFrame, y: np.ndarray, groups: np.ndarray, sample_weight: ArrayLike | None
    ) -> None:
        """``fit``'s pipeline step with folds and holdout made of whole groups."""
        if groups.shape[0] != prepared.height:
            raise ValueError(f"TabularRiskClassifier: X has {prepared.height} rows but groups has {groups.shape[0]}")
        encode, hgb = self.pipeline_.named_steps["encode"], self.pipeline_.named_steps["model"]
        weights = None if sample_weight is None else np.asarray(sample_weight, dtype=float)
        rows, held = np.arange(prepared.height), None
        stop = self.early_stopping is True or (self.early_stopping == "auto" and prepared.height > 10_000)
        if stop and self.validation_fraction:
            split = GroupShuffleSplit(1, test_size=self.validation_fraction, random_state=self.random_state)
            rows, held = next(split.split(rows, groups=groups))
        target = [t for name, t, _ in encode.transformers if name == "target"]
        for enc in target:
            folds = GroupKFold(self.target_encoding_cv, shuffle=True, random_state=self.random_state)
            enc.set_params(cv=list(folds.split(rows, groups=groups[rows])))
        try:
            encoded = encode.fit_transform(prepared[rows], y[rows])
        finally:  # the fitted encoder keeps a plain splitter (what the registry saves)
            fitted = [t for name, t, _ in getattr(encode, "transformers_", []) if name == "target"]
            for enc in target + fitted:
                enc.set_params(
                    cv=StratifiedKFold(self.target_encoding_cv, shuffle=True, random_state=self.random_state)
                )
        kw: dict[str, object] = {} if weights is None else {"sample_weight": weights[rows]}
        if held is not None:
            hgb.set_params(early_stopping=True)
            kw.update(X_val=encode.transform(prepared[held]), y_val=y[held])
            if weights is not None:
                kw["sample_weight_val"] = weights[held]
        hgb.fit(encoded, y[rows], **kw)

    def predict_proba(self, X: Frame) -> np.ndarray:
        """Class probabilities, shape (n, 2); column 1 is the positive class."""
        return self._trees("predict_proba", X)

    def predict(self, X: Frame) -> np.ndarray:
        return self._trees("predict", X)

    def decision_function(self, X: Frame) -> np.ndarray:
        """Raw log-odds: ranks identically to ``predict_proba`` without saturating.

        All trees walk a matrix of only the encoded columns they split on (:meth:`head_trees`
        with every tree: the shipment model's 100 trees split on 12 of 89 columns), equal to the
        whole matrix's log-odds and about five times cheaper (fewer columns encoded, a matrix
        that stays in cache, no per-chunk validation)."""
        check_is_fitted(self, "pipeline_")
        predictors = getattr(self.pipeline_.named_steps.get("model"), "_predictors", None)
        head = self.head_trees(len(predictors)) if isinstance(predictors, list) and predictors else None
        if head is None:
            return self._trees("decision_function", X)
        used, log_odds = head
        Z = self.encode(X, columns=used)
        return predict_chunked(log_odds, Z) if Z.shape[0] else np.zeros(0)

    def _trees(self, method: str, X: Frame) -> np.ndarray:
        """The boosted trees' ``method`` on the encoded rows, ``PREDICT_CHUNK`` rows at a time
        on one thread: HGB walks all rows once per tree, so a chunk that stays in cache across
        the trees halves the cost on millions of rows, and OpenMP threads on a busy shared
        machine cost more in synchronisation than they gain. Rows are independent: the result
        equals one call on all rows."""
        return predict_chunked(getattr(self.pipeline_.named_steps["model"], method), self.encode(X))

    def encode(self, X: Frame, columns: list[int] | None = None) -> np.ndarray:
        """The matrix the trees see (for attribution): columns as ``encoded_feature_names_``
        (``columns``: only those encoded columns, in that order; other encoder layouts refuse).

        Row-major float64 built in Polars from the fitted encoders' tables (equal to the
        ``ColumnTransformer``'s output, which converts every code to a Python object and is
        several times slower on millions of rows); other encoder layouts use the transformer."""
        check_is_fitted(self, "pipeline_")
        if columns is not None:
            wanted = self._encode_exprs()
            if wanted is None:
                raise ValueError("TabularRiskClassifier.encode: columns= needs the built-in encoder layout")
            plan = self._prepare_plan(X).select([wanted[i] for i in columns])  # only their inputs computed
            return np.ascontiguousarray(plan.collect(engine="in-memory").to_numpy(order="c"), dtype=np.float64)
        prepared = self._prepare(X)
        exprs = self._encode_exprs()
        if exprs is None:
            return np.asarray(self.pipeline_.named_steps["encode"].transform(prepared))
        if not exprs:
            return np.empty((prepared.height, 0))
        return np.ascontiguousarray(prepared.select(exprs).to_numpy(order="c"), dtype=np.float64)

    def _encode_exprs(self) -> list[pl.Expr] | None:
        """Polars expressions reproducing the fitted ``ColumnTransformer`` column by column, or
        None when it holds anything but the ordinal, target and passthrough steps built here."""
        encode = self.pipeline_.named_steps["encode"]
        exprs: list[pl.Expr] = []
        for name, trans, cols in encode.transformers_:
            if name == "remainder":
                if trans != "drop":
                    return None
                continue
            if name == "numeric" and (trans == "passthrough" or _identity(trans)):
                exprs += [pl.col(c).cast(pl.Float64).fill_null(np.nan) for c in cols]  # no nulls: a C-order copy
            elif name == "categorical" and isinstance(trans, OrdinalEncoder):
                for col, cats in zip(cols, trans.categories_, strict=False):
                    # a NaN level is encoded_missing_value (NaN); a None level keeps its index
                    codes = [np.nan if isinstance(c, float) and np.isnan(c) else float(i) for i, c in enumerate(cats)]
                    exprs.append(_lookup(col, cats, codes, np.nan))
            elif name == "target" and isinstance(trans, TargetEncoder) and trans.target_type_ == "binary":
                prior = float(trans.target_mean_)
                for col, cats, enc in zip(cols, trans.categories_, trans.encodings_, strict=False):
                    exprs.append(_lookup(col, cats, [float(v) for v in enc], prior))
            else:
                return None
        return exprs

    def head_trees(self, trees: int) -> tuple[list[int], Callable[[np.ndarray], np.ndarray]] | None:
        """The encoded columns the first ``trees`` trees split on, and those trees' log-odds on a
        matrix of only these columns (``encode(X, columns=...)``), equal to the first ``trees``
        trees on the whole matrix: same nodes with their feature numbers renumbered, summed in
        the same order. A cascade's first stage (15 trees of the shipment model split on 11 of
        its 89 columns) then encodes and walks a narrow matrix. None when the model is not
        built-in trees on the built-in encoder layout."""
        hgb: Any = self.pipeline_.named_steps.get("model") if hasattr(self, "pipeline_") else None
        predictors = getattr(hgb, "_predictors", None)
        if not isinstance(predictors, list) or not 0 < trees <= len(predictors) or self._encode_exprs() is None:
            return None
        if any(len(it) != 1 for it in predictors[:trees]):  # one tree per iteration: binary
            return None
        heads = [it[0] for it in predictors[:trees]]
        used = sorted({int(f) for p in heads for f in p.nodes["feature_idx"][p.nodes["is_leaf"] == 0]})
        renumber = np.zeros(hgb.n_features_in_, dtype=heads[0].nodes["feature_idx"].dtype)
        renumber[used] = np.arange(len(used))
        narrow = []
        for p in heads:
            q = copy.copy(p)
            q.nodes = p.nodes.copy()
            q.nodes["feature_idx"] = renumber[p.nodes["feature_idx"]]  # a leaf's number is never read
            narrow.append(q)
        known, f_idx_map = hgb._bin_mapper.make_known_categories_bitsets()
        f_idx_map = np.ascontiguousarray(f_idx_map[used]) if len(used) else f_idx_map[:0]
        baseline = hgb._baseline_prediction

        def log_odds(Z: np.ndarray) -> np.ndarray:
            # as HGB's _raw_predict: a Fortran column of the baseline, each tree added in turn
            raw = np.zeros((Z.shape[0], 1), dtype=baseline.dtype, order="F")
            raw += baseline
            for q in narrow:
                raw[:, 0] += q.predict(Z, known, f_idx_map, 1)
            return raw.ravel()

        return used, log_odds

    @property
    def encoded_feature_names_(self) -> list[str]:
        check_is_fitted(self, "pipeline_")
        return [str(c) for c in self.pipeline_.named_steps["encode"].get_feature_names_out()]
