"""The shipment risk model: the estimator classes whose import path is stored in model files.

``RiskModel`` (trees + linear partner, calibrated on later days), ``ProbabilityCalibrator`` and
``LinearBaseline`` are defined here because saved models name them as ``riskpipe.model.<Class>``
(``riskpipe.modelfile.MODEL_NODES``). Fitting is in ``riskpipe.model.fit``, explanation
(occlusion, reasons) in ``riskpipe.model.explain``, held-out metrics in
``riskpipe.model.evaluate`` and the model card in ``riskpipe.model.card``.

Calibration is Platt (sigmoid) on the model's log-odds by default: it keeps the model's order
(isotonic, available with ``calibration="isotonic"``, makes ties among the top when positives are
few). Calibrated on examined shipments, so the probability is that of a finding *if examined*.
"""

from __future__ import annotations

import collections
import copy
import itertools
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl
from scipy.sparse import csr_matrix
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from riskpipe import schema as S
from riskpipe.estimator import TabularRiskClassifier, numeric_expr, predict_chunked
from riskpipe.features import FEATURE_COLUMNS

#: boosting settings for shipments: nightly scoring of 4 M rows costs rows x trees x depth, so
#: at most 100 trees of at most 15 leaves (labelled sets are small: a few positives a day).
DEFAULT_TREES = 100
DEFAULT_LEAVES = 15
DEFAULT_LEARNING_RATE = 0.1
#: weight of the linear model's log-odds in the production ensemble (trees get 1 - w). Chosen on
#: the demo world's *calibration* days (trained on the days before; never the evaluation days):
#: trees alone PR-AUC 0.63 / recall at capacity 0.90 against truth, linear alone 0.60 / 1.00,
#: the 50/50 ensemble 0.69 / 0.97. Trees learn from ~100 examined positives chosen by the old
#: targeting; the regularised linear model extrapolates more soberly to the unexamined rest.
DEFAULT_LINEAR_WEIGHT = 0.5
#: below these counts a model is trained or calibrated on too few findings to trust: it still
#: runs, but ``training_warnings`` says so on the CLI, in the model card and in the report
MIN_TRAIN_POSITIVES = 20
MIN_CALIB_POSITIVES = 5
#: per-row training weight (``riskpipe.training.SAMPLE_WEIGHT``): never a model input
SAMPLE_WEIGHT = "sample_weight"
NON_FEATURES = {
    S.SHIPMENT_ID,
    S.NETWORK_ID,
    S.ARRIVAL_DATE,
    S.IS_POSITIVE,
    S.EXAM_REASON,
    S.EXAM_DATE,
    S.OUTCOME,
    SAMPLE_WEIGHT,
    S.SELECTION_PROBABILITY,
}

Scorer = Callable[[pl.DataFrame], np.ndarray]


# ---------------------------------------------------------------------------------------------
# estimators
# ---------------------------------------------------------------------------------------------
def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-12, 1 - 1e-12)
    return np.log(p / (1 - p))


class ProbabilityCalibrator(BaseEstimator):
    """Maps a model's log-odds to a probability fitted on later days (sigmoid or isotonic)."""

    def __init__(self, method: str = "sigmoid") -> None:
        self.method = method

    def fit(self, raw: Any, y: Any) -> ProbabilityCalibrator:
        """Fit ``method``; when it cannot be fitted, fall back to identity (the sigmoid of the
        raw log-odds) and say why in ``fallback_`` (None when ``method`` was fitted)."""
        raw = np.asarray(raw, dtype=float)
        y = np.asarray(y, dtype=int)
        self.a_, self.b_ = 1.0, 0.0
        self.method_ = "identity"
        self.fallback_: str | None = None
        if not raw.size:
            self.fallback_ = "no calibration rows"
        elif not 0 < y.sum() < y.size:
            self.fallback_ = f"{int(y.sum())} positive(s) among {y.size} calibration rows: both classes are needed"
        elif self.method == "isotonic":
            self.iso_ = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
            self.method_ = "isotonic"
        else:
            lr = LogisticRegression(C=1e4, max_iter=1000).fit(raw.reshape(-1, 1), y)
            a, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
            if a > 0:
                self.a_, self.b_, self.method_ = a, b, "sigmoid"
            else:  # a non-increasing map would reverse the ranking: keep identity
                self.fallback_ = f"the fitted sigmoid slope {a:.3g} is not positive (it would reverse the ranking)"
        return self

    def transform(self, raw: Any) -> np.ndarray:
        raw = np.asarray(raw, dtype=float)
        if self.method_ == "isotonic":
            return np.asarray(self.iso_.predict(raw), dtype=float)
        return 1.0 / (1.0 + np.exp(-(self.a_ * raw + self.b_)))


class RiskModel(ClassifierMixin, BaseEstimator):
    """A classifier on the feature columns plus a probability calibrator fitted on later days.

    ``fit(X, y, X_calib=..., y_calib=...)``; ``predict_risk(X)`` is the calibrated probability.
    """

    def __init__(
        self,
        estimator: Any = None,
        feature_columns: list[str] | None = None,
        calibration: str = "sigmoid",
        linear_weight: float = 0.0,
    ) -> None:
        self.estimator = estimator
        self.feature_columns = feature_columns
        self.calibration = calibration
        self.linear_weight = linear_weight

    def _X(self, X: pl.DataFrame) -> pl.DataFrame:
        return X.select(self.feature_columns_)

    def fit(
        self,
        X: pl.DataFrame,
        y: Any,
        X_calib: pl.DataFrame | None = None,
        y_calib: Any = None,
        sample_weight: Any = None,
    ) -> RiskModel:
        """Fit the estimator and its linear partner (both with ``sample_weight`` when given: the
        inverse selection probabilities of ``riskpipe.training``), then calibrate unweighted on
        the later days (the probability stays that of a finding if examined)."""
        self.feature_columns_ = list(self.feature_columns or [c for c in X.columns if c not in NON_FEATURES])
        base = clone(self.estimator) if self.estimator is not None else default_estimator(0)
        weights = {} if sample_weight is None else {"sample_weight": np.asarray(sample_weight, dtype=float)}
        self.estimator_ = base.fit(self._X(X), np.asarray(y), **weights)
        # the ensemble partner: a regularised linear model extrapolates more soberly to the
        # unexamined population than trees grown on ~100 positives (see DEFAULT_LINEAR_WEIGHT)
        self.linear_ = (
            LinearBaseline(self.feature_columns_).fit(X, np.asarray(y), **weights) if self.linear_weight > 0 else None
        )
        self.classes_ = np.array([0, 1])
        self.calibrator_ = ProbabilityCalibrator(self.calibration)
        if X_calib is not None and y_calib is not None and X_calib.height:
            self.calibrator_.fit(self.decision_function(X_calib), y_calib)
        else:
            self.calibrator_.fit(np.zeros(0), np.zeros(0))
        return self

    # -- cascade: a cheap first stage for very large days ---------------------------------------
    def _boosting(self) -> Any:
        """(encoder, HGB) of a ``TabularRiskClassifier`` base, or None for other estimators."""
        est = getattr(self, "estimator_", None)
        pipe = getattr(est, "pipeline_", None)
        if pipe is None or not hasattr(est, "encode"):
            return None
        hgb = pipe.named_steps.get("model")
        return hgb if hasattr(hgb, "staged_decision_function") else None

    def _stage1(self, Z: np.ndarray, trees: int) -> np.ndarray:
        """Log-odds of the first ``trees`` trees. A shallow copy of the fitted model that keeps
        only those trees predicts them in one pass (equal to ``staged_decision_function`` at
        ``trees``, which re-validates the rows and rebuilds the category bitsets per tree)."""
        hgb = self._boosting()
        predictors = getattr(hgb, "_predictors", None)
        if isinstance(predictors, list) and 0 < trees <= len(predictors):
            head = copy.copy(hgb)
            head._predictors = predictors[:trees]
            return np.asarray(head.decision_function(Z), dtype=float).ravel()
        # the last of the first ``trees`` stages
        out = collections.deque(itertools.islice(hgb.staged_decision_function(Z), trees), maxlen=1)
        return np.asarray(out[0], dtype=float).ravel()

    def fit_cascade(self, X_calib: pl.DataFrame, y_calib: Any, trees: int = 15) -> RiskModel:
        """Calibrate the log-odds of the first ``trees`` trees on later days (for ``predict_risk_cascade``)."""
        if self._boosting() is None or X_calib is None or not X_calib.height:
            return self
        self.stage1_trees_ = int(min(trees, self._boosting().n_iter_))
        Z = self.estimator_.encode(self._X(X_calib))
        self.calibrator_stage1_ = ProbabilityCalibrator(self.calibration).fit(
            self._stage1(Z, self.stage1_trees_), y_calib
        )
        return self

    def predict_risk_cascade(
        self, X: pl.DataFrame, candidate_share: float = 0.05, always: np.ndarray | None = None
    ) -> np.ndarray:
        """Calibrated probability with a two-stage cascade: the first trees score every row, the
        whole model re-scores the top ``candidate_share`` of rows (and the rows in ``always``).
        Rows outside get the first stage's own calibrated probability. Falls back to
        ``predict_risk`` when no first stage was fitted."""
        if not hasattr(self, "calibrator_stage1_") or self._boosting() is None:
            return self.predict_risk(X)
        head = self.estimator_.head_trees(self.stage1_trees_) if hasattr(self.estimator_, "head_trees") else None
        if head is not None:  # only the columns the first trees split on (same log-odds)
            used, log_odds = head
            Z = self.estimator_.encode(self._X(X), columns=used)
            s1 = predict_chunked(log_odds, Z) if Z.shape[0] else np.zeros(0)
        else:
            Z = self.estimator_.encode(self._X(X))
            # first stage in cache-sized chunks (about twice as fast at 500 k rows)
            s1 = predict_chunked(lambda z: self._stage1(z, self.stage1_trees_), Z) if Z.shape[0] else np.zeros(0)
        del Z
        p = self.calibrator_stage1_.transform(s1)
        k = int(np.ceil(candidate_share * len(s1)))
        cand = np.zeros(len(s1), dtype=bool)
        if k:
            cand[np.argpartition(-s1, min(k, len(s1) - 1))[:k]] = True
        if always is not None:
            cand |= np.asarray(always, dtype=bool)
        if cand.any():
            p[cand] = self.predict_risk(X.filter(pl.Series(cand)))
        return p

    def decision_function(self, X: pl.DataFrame) -> np.ndarray:
        """Uncalibrated log-odds: the estimator's, averaged with the linear partner's if any."""
        Xf = self._X(X)
        if hasattr(self.estimator_, "decision_function"):
            raw = np.asarray(self.estimator_.decision_function(Xf), dtype=float).ravel()
        else:
            raw = _logit(self.estimator_.predict_proba(Xf)[:, 1])
        linear = getattr(self, "linear_", None)
        if linear is not None:
            w = float(self.linear_weight)
            raw = (1.0 - w) * raw + w * _logit(linear.predict_risk(X))
        return raw

    def predict_risk(self, X: pl.DataFrame) -> np.ndarray:
        return self.calibrator_.transform(self.decision_function(X))

    def predict_proba(self, X: pl.DataFrame) -> np.ndarray:
        p = self.predict_risk(X)
        return np.column_stack([1 - p, p])

    def predict(self, X: pl.DataFrame) -> np.ndarray:
        return (self.predict_risk(X) >= 0.5).astype(int)


def default_estimator(seed: int = 0) -> Any:
    """The shared ``TabularRiskClassifier`` with a tree budget suited to nightly scoring."""
    return TabularRiskClassifier(
        random_state=seed,
        learning_rate=DEFAULT_LEARNING_RATE,
        max_iter=DEFAULT_TREES,
        max_leaf_nodes=DEFAULT_LEAVES,
        n_iter_no_change=20,
    )


def feature_columns_of(frame: pl.DataFrame) -> list[str]:
    """The model inputs of a training frame: ``FEATURE_COLUMNS`` when known, else all but ids."""
    cols = [c for c in FEATURE_COLUMNS if c in frame.columns]
    if cols:
        return cols
    return [c for c in frame.columns if c not in NON_FEATURES]


def _is_categorical(dtype: pl.DataType) -> bool:
    return isinstance(dtype, (pl.Enum, pl.Categorical)) or dtype == pl.String


def _linear_frame(X: pl.DataFrame, features: list[str]) -> pl.DataFrame:
    exprs = []
    for c in features:
        dt = X.schema[c]
        if _is_categorical(dt):
            exprs.append(pl.col(c).cast(pl.String).fill_null("(missing)"))
        else:
            exprs.append(numeric_expr(c, dt))
    return X.select(exprs)


class LinearBaseline(BaseEstimator):
    """Logistic regression on scaled numerics and one-hot categoricals: the simple baseline."""

    def __init__(self, feature_columns: list[str] | None = None, C: float = 0.1) -> None:
        self.feature_columns = feature_columns
        self.C = C

    def fit(self, X: pl.DataFrame, y: Any, sample_weight: Any = None) -> LinearBaseline:
        self.feature_columns_ = list(self.feature_columns or [c for c in X.columns if c not in NON_FEATURES])
        frame = _linear_frame(X, self.feature_columns_)
        cats = [c for c in self.feature_columns_ if frame.schema[c] == pl.String]
        nums = [c for c in self.feature_columns_ if c not in cats]
        parts = []
        if nums:
            parts.append(
                (
                    "num",
                    make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler()),
                    nums,
                )
            )
        if cats:
            parts.append(
                ("cat", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=10, max_categories=30), cats)
            )
        self.pipeline_ = Pipeline(
            [
                ("encode", ColumnTransformer(parts)),
                ("model", LogisticRegression(C=self.C, class_weight="balanced", max_iter=2000)),
            ]
        )
        weights = {} if sample_weight is None else {"model__sample_weight": np.asarray(sample_weight, dtype=float)}
        self.pipeline_.fit(frame, np.asarray(y), **weights)
        return self

    def predict_risk(self, X: pl.DataFrame) -> np.ndarray:
        """The logistic model's probability. The fitted layout built by :meth:`fit` is applied
        with numpy on a matrix made in Polars (:meth:`_dense_plan`): the pipeline's values (the
        same imputation, scaling, one-hot columns and dot product; equal on the benchmark day),
        about five times cheaper (the one-hot encoder checked every code of every row in Python).
        Other layouts use the pipeline."""
        plan = self._dense_plan()
        if plan is None:
            return self.pipeline_.predict_proba(_linear_frame(X, self.feature_columns_))[:, 1]
        nums, stats, mean, scale, cats, coef, intercept, sparse = plan
        frame = _linear_frame(X, self.feature_columns_)
        n = frame.height
        parts = []
        if nums:
            Z = frame.select(nums).to_numpy(order="c").astype(np.float64, copy=False)
            missing = np.isnan(Z)
            if missing.any():
                Z = np.where(missing, stats, Z)  # SimpleImputer: a missing value takes the median
            parts.append((Z - mean) / scale)  # StandardScaler
        if cats:
            width = sum(w for *_, w in cats)
            onehot = np.zeros((n, width), dtype=np.float64)
            offset = 0
            for col, keys, index, unknown, w in cats:
                pos = (
                    frame.get_column(col).replace_strict(keys, index, default=unknown, return_dtype=pl.Int64).to_numpy()
                )
                rows = np.flatnonzero(pos >= 0)
                onehot[rows, offset + pos[rows]] = 1.0
                offset += w
            parts.append(onehot)
        full = parts[0] if len(parts) == 1 else np.hstack(parts)
        if sparse:  # the transformer's sparse output: the product sums the non-zeros in column order
            log_odds = np.asarray(csr_matrix(full) @ coef).ravel()
        else:
            # a row's own sum, not BLAS's matrix-vector product: OpenBLAS's kernel sums a row in an
            # order that depends on its place and on the block's memory alignment, so one shipment
            # scored with other rows (a provisional day, a batch, a piece) got a different last bit
            # (numpy's sum along a contiguous row: the same pairwise order for every row)
            log_odds = (np.ascontiguousarray(full) * np.asarray(coef, dtype=np.float64).ravel()).sum(axis=1)
        return np.asarray(expit(log_odds + intercept), dtype=np.float64)  # as LogisticRegression

    def _dense_plan(self) -> tuple[Any, ...] | None:
        """(numeric columns, medians, means, scales, [(categorical column, codes, one-hot
        position of each code, of an unseen code (-1: none), block width)], coefficients (a
        column), intercept, sparse output) of a fitted pipeline as :meth:`fit` builds it, or
        None for anything else."""
        try:
            encode, lr = self.pipeline_.named_steps["encode"], self.pipeline_.named_steps["model"]
        except (AttributeError, KeyError):
            return None
        if not isinstance(encode, ColumnTransformer) or not hasattr(encode, "sparse_output_"):
            return None
        if not isinstance(lr, LogisticRegression) or lr.coef_.shape[0] != 1 or len(lr.classes_) != 2:
            return None
        nums: list[str] = []
        cats: list[tuple[str, list[str], list[int], int, int]] = []
        stats = mean = scale = np.zeros(0)
        steps = [(name, trans, cols) for name, trans, cols in encode.transformers_ if name != "remainder"]
        if encode.remainder != "drop" or [name for name, _, _ in steps] not in (["num", "cat"], ["num"], ["cat"]):
            return None
        for name, trans, cols in steps:
            if name == "num" and isinstance(trans, Pipeline) and len(trans.steps) == 2:
                imp, sc = trans.steps[0][1], trans.steps[1][1]
                if not (isinstance(imp, SimpleImputer) and isinstance(sc, StandardScaler)):
                    return None
                if imp.add_indicator or not (isinstance(imp.missing_values, float) and np.isnan(imp.missing_values)):
                    return None
                if len(imp.statistics_) != len(cols) or not (sc.with_mean and sc.with_std):
                    return None
                nums, stats, mean, scale = list(cols), imp.statistics_, sc.mean_, sc.scale_
            elif name == "cat" and isinstance(trans, OneHotEncoder) and trans.drop_idx_ is None:
                widths = getattr(trans, "_n_features_outs", None)
                if widths is None or len(widths) != len(cols):
                    return None
                cats = self._onehot_positions(trans, list(cols), list(widths))
            else:
                return None
        if len(nums) + sum(w for *_, w in cats) != lr.coef_.shape[1]:
            return None
        return nums, stats, mean, scale, cats, lr.coef_.T, lr.intercept_, bool(encode.sparse_output_)

    @staticmethod
    def _onehot_positions(
        ohe: OneHotEncoder, cols: list[str], widths: list[int]
    ) -> list[tuple[str, list[str], list[int], int, int]]:
        """Each code's one-hot position within its column's block, read from the encoder's own
        output on every known code and one unseen code (so infrequent and unknown codes go
        where the encoder puts them)."""
        unseen = "\x00unseen"
        length = max(len(c) for c in ohe.categories_) + 1
        probe = pl.DataFrame(
            {
                col: [str(v) for v in cats] + [unseen] * (length - len(cats))
                for col, cats in zip(cols, ohe.categories_, strict=True)
            }
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "unknown categories ... encoded as all zeros": the probe's
            out = ohe.transform(probe)
        out = out.toarray() if hasattr(out, "toarray") else np.asarray(out)
        result = []
        offset = 0
        for col, cats, w in zip(cols, ohe.categories_, widths, strict=True):
            block = out[:, offset : offset + w]
            hit = block.sum(axis=1) > 0
            pos = np.where(hit, block.argmax(axis=1), -1)
            result.append((col, [str(v) for v in cats], [int(p) for p in pos[: len(cats)]], int(pos[len(cats)]), w))
            offset += w
        return result
