"""External benchmark: train the shared estimator on a foreign labelled dataset via a mapping.

A user's own labelled data (another administration's declarations, a public benchmark) rarely
uses our column names. A TOML mapping says which of its columns play which role, which label
values are positive, and which derived features to add from a small fixed vocabulary. Nothing
in a mapping is evaluated as code.

Mapping format (every key but ``label`` and ``positive`` optional)::

    [dataset]
    id = "Declaration ID"          # never a feature
    date = "Date"                  # parsed as a date; only used through derivations
    date_format = "%Y-%m-%d"       # strftime format; default ISO
    label = "Fraud"
    positive = [1]                 # label values counted as positive (compared as text)

    [columns]
    numeric = ["Net Mass", "Item Price"]
    categorical = ["Office ID"]            # at most 250 levels: native tree categoricals
    high_cardinality = ["Importer ID"]     # target + frequency encoded
    ignore = ["Critical Fraud"]            # everything not named above is ignored too

    [[derive]]                     # vocabulary: see DERIVATIONS
    name = "unit_price"
    op = "ratio"
    columns = ["Item Price", "Net Mass"]

    [[derive]]                     # fitted on the training rows only (see below)
    name = "price_rel_hs6"
    op = "relative_to_group"
    column = "Item Price"
    groups = ["HS6 Code", "hs4"]   # finest first; a group needs min_rows training rows
    min_rows = 20                  # default 20

    [model]                        # TabularRiskClassifier parameters (e.g. learning_rate)
    learning_rate = 0.05

    [evaluation]
    seen_columns = ["Item Price"]  # rows whose values here occur in the training files are "seen"

    [training]
    one_row_per = ["Item Price"]   # train on the first row of each distinct value (near-copies once)

Only named columns are used; a column named in the mapping but absent from a file is an error.

Near-duplicates: a benchmark whose test rows repeat training rows measures memory, not
generalisation. With ``seen_columns`` the report adds an ``unseen`` view beside ``all`` rows: the
test rows whose combination of values in those columns occurs in no training file (as read:
numeric-role columns compared as numbers, others as text; a null matches a null). With
``[training] one_row_per`` the model is trained on the first row (in file order) of each distinct
combination of those columns' values, so a run of near-copies counts once and the trees are not
paid for memorising it.

Fitted derivations: ``relative_to_group`` is ln(1 + a) - ln(1 + median of a over the training
rows of the row's group), the group being the first of ``groups`` (finest first) whose value holds
at least ``min_rows`` training rows with a value, else the median of all training rows. The
medians are learned when the model is fitted (``MappedModel``) and looked up for any later row,
so a test row's own value never moves its feature. Per-file derivations may feed a fitted one,
not the reverse.
"""

from __future__ import annotations

import math
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from riskpipe.errors import RiskpipeError
from riskpipe.metrics import DEFAULT_FRACTIONS, ranking_report

_ROW = "__riskpipe_row"  # row index while matching seen values (not a plausible data column)

#: op -> (number of source columns, role of the result); "date" ops read the dataset's date.
DERIVATIONS: dict[str, tuple[int, str]] = {
    "ratio": (2, "numeric"),  # a / b (null when b is 0 or null)
    "product": (2, "numeric"),  # a * b
    "difference": (2, "numeric"),  # a - b
    "log": (1, "numeric"),  # ln(1 + max(a, 0))
    "equal": (2, "numeric"),  # 1.0 if a == b (as text) else 0.0
    "prefix": (1, "high_cardinality"),  # first `length` characters of a code (HS chapter, heading)
    "concat": (2, "high_cardinality"),  # a|b|...: a combined code (e.g. importer x HS6); 2+ columns
    "code": (1, "high_cardinality"),  # a value as an exact code (e.g. a price repeated verbatim)
    "frequency": (1, "numeric"),  # share of the rows of the same file carrying the same code
    "weekday": (0, "categorical"),  # 1 = Monday .. 7 = Sunday, of the date column
    "month": (0, "categorical"),  # 1..12
    "day": (0, "numeric"),  # day of month 1..31
    "relative_to_group": (1, "numeric"),  # ln(1+a) - ln(1+ training median of a in the row's group)
}
#: derivations learned from the training rows when the model is fitted, not computed per file
FITTED = frozenset({"relative_to_group"})
_MIN_ROWS = 20
ROLES = ("numeric", "categorical", "high_cardinality")
_ROLE_PARAMS = {"categorical", "high_cardinality", "numeric", "ignore"}


@dataclass(frozen=True)
class Derivation:
    """One derived feature: ``op`` applied to ``columns``, named ``name``, used as ``role``."""

    name: str
    op: str
    columns: tuple[str, ...]
    role: str
    length: int | None = None
    groups: tuple[str, ...] = ()
    min_rows: int = _MIN_ROWS

    @property
    def fitted(self) -> bool:
        return self.op in FITTED

    def inputs(self) -> tuple[str, ...]:
        """Every column this derivation reads (its source columns and its groups)."""
        return (*self.columns, *self.groups)

    def expr(self, date_col: str | None) -> pl.Expr:
        """The Polars expression computing this feature (dates already parsed)."""
        c = [pl.col(x) for x in self.columns]
        num = [x.cast(pl.Float64) for x in c]
        text = [x.cast(pl.String) for x in c]
        op = self.op
        if op == "ratio":
            e = pl.when(num[1] != 0).then(num[0] / num[1])
        elif op == "product":
            e = num[0] * num[1]
        elif op == "difference":
            e = num[0] - num[1]
        elif op == "log":
            e = num[0].clip(lower_bound=0.0).log1p()
        elif op == "equal":
            e = (text[0] == text[1]).cast(pl.Float64)
        elif op == "prefix":
            e = text[0].str.slice(0, self.length)
        elif op == "code":
            e = text[0]
        elif op == "concat":
            e = pl.concat_str(text, separator="|")
        elif op == "frequency":
            e = pl.len().over(c[0]).cast(pl.Float64) / pl.len()
        elif op == "weekday":
            e = pl.col(date_col).dt.weekday().cast(pl.String)
        elif op == "month":
            e = pl.col(date_col).dt.month().cast(pl.String)
        elif op == "day":
            e = pl.col(date_col).dt.day().cast(pl.Float64)
        else:  # pragma: no cover - validated at load
            raise RiskpipeError(f"derive {self.name!r}: unknown op {op!r}")
        return e.alias(self.name)


@dataclass(frozen=True)
class Mapping:
    """A validated column mapping of a foreign labelled dataset."""

    label: str
    positive: tuple[str, ...]
    id: str | None = None
    date: str | None = None
    date_format: str | None = None
    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    high_cardinality: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    derive: tuple[Derivation, ...] = ()
    model: dict[str, Any] = field(default_factory=dict)
    seen_columns: tuple[str, ...] = ()
    one_row_per: tuple[str, ...] = ()
    source: str = "<mapping>"

    def source_columns(self) -> list[str]:
        """Every column of the data files the mapping names (checked against each file)."""
        cols = [self.label, *self.numeric, *self.categorical, *self.high_cardinality]
        cols += [c for c in (self.id, self.date) if c]
        cols += [*self.seen_columns, *self.one_row_per]
        for d in self.derive:
            cols += [c for c in d.inputs() if c not in self._derived_names()]
        return list(dict.fromkeys(cols))

    def fitted(self) -> tuple[Derivation, ...]:
        return tuple(d for d in self.derive if d.fitted)

    def model_input_columns(self) -> list[str]:
        """The columns ``load_labelled`` returns: the features, except fitted derivations,
        which the model adds, plus the columns those read (identical to the features when the
        mapping has no fitted derivation)."""
        roles = self.features_by_role()
        fitted = {d.name for d in self.fitted()}
        cols = [c for r in ROLES for c in roles[r] if c not in fitted]
        cols += [c for d in self.fitted() for c in d.inputs() if c not in fitted]
        return list(dict.fromkeys(cols))

    def _derived_names(self) -> set[str]:
        return {d.name for d in self.derive}

    def features_by_role(self) -> dict[str, list[str]]:
        roles = {
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
            "high_cardinality": list(self.high_cardinality),
        }
        for d in self.derive:
            roles[d.role].append(d.name)
        return roles


def _str_list(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RiskpipeError(f"{where}: expected a list of column names")
    return tuple(value)


def _check_keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise RiskpipeError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")


def _model_params(table: dict[str, Any], where: str) -> dict[str, Any]:
    from riskpipe.estimator import TabularRiskClassifier

    allowed = set(TabularRiskClassifier().get_params()) - _ROLE_PARAMS
    _check_keys(table, allowed, where)
    for key, value in table.items():
        if not isinstance(value, (int, float, str, bool)):
            raise RiskpipeError(f"{where}: {key} must be a number, string or boolean")
    return dict(table)


def parse_mapping(doc: dict[str, Any], source: str = "<mapping>") -> Mapping:
    """Validate a parsed TOML mapping; every error names the key and the mapping file."""
    _check_keys(doc, {"dataset", "columns", "derive", "model", "evaluation", "training"}, source)
    ds = doc.get("dataset", {})
    cols = doc.get("columns", {})
    if not isinstance(ds, dict) or not isinstance(cols, dict):
        raise RiskpipeError(f"{source}: [dataset] and [columns] must be tables")
    _check_keys(ds, {"id", "date", "date_format", "label", "positive", "name", "description"}, f"{source} [dataset]")
    _check_keys(cols, {"numeric", "categorical", "high_cardinality", "ignore"}, f"{source} [columns]")
    label = ds.get("label")
    if not isinstance(label, str) or not label:
        raise RiskpipeError(f"{source} [dataset]: 'label' (the label column) is required")
    positive = ds.get("positive")
    if isinstance(positive, (str, int, float, bool)):
        positive = [positive]
    if not isinstance(positive, list) or not positive:
        raise RiskpipeError(f"{source} [dataset]: 'positive' must list the label values that are positive")
    positive_text = tuple(_as_text(v) for v in positive)
    for key in ("id", "date", "date_format"):
        if key in ds and not isinstance(ds[key], str):
            raise RiskpipeError(f"{source} [dataset]: {key} must be a string")
    roles = {k: _str_list(cols.get(k, []), f"{source} [columns].{k}") for k in (*ROLES, "ignore")}

    derivations: list[Derivation] = []
    raw = doc.get("derive", [])
    if not isinstance(raw, list):
        raise RiskpipeError(f"{source}: derive must be an array of tables ([[derive]])")
    for i, d in enumerate(raw):
        where = f"{source} derive #{i + 1}"
        if not isinstance(d, dict):
            raise RiskpipeError(f"{where}: expected a table")
        _check_keys(d, {"name", "op", "columns", "column", "length", "role", "groups", "min_rows"}, where)
        name, op = d.get("name"), d.get("op")
        if not isinstance(name, str) or not name:
            raise RiskpipeError(f"{where}: 'name' is required")
        where = f"{source} derive {name!r}"
        if op not in DERIVATIONS:
            raise RiskpipeError(f"{where}: op {op!r} is not one of {', '.join(DERIVATIONS)}")
        arity, role = DERIVATIONS[op]
        src = _str_list(d.get("columns", d.get("column", [])), where)
        if op == "concat" and len(src) < 2 or op != "concat" and len(src) != arity:
            raise RiskpipeError(
                f"{where}: op {op} takes {arity if op != 'concat' else '2 or more'} column(s), got {len(src)}"
            )
        if arity == 0 and not ds.get("date"):
            raise RiskpipeError(f"{where}: op {op} needs [dataset].date")
        length = d.get("length")
        if op == "prefix" and (not isinstance(length, int) or length < 1):
            raise RiskpipeError(f"{where}: prefix needs a positive integer 'length'")
        role = d.get("role", role)
        if role not in ROLES:
            raise RiskpipeError(f"{where}: role must be one of {', '.join(ROLES)}")
        groups, min_rows = _group_options(d, op, where)
        fitted_inputs = [c for c in (*src, *groups) if c in {x.name for x in derivations if x.fitted}]
        if fitted_inputs and op not in FITTED:
            raise RiskpipeError(
                f"{where}: reads {', '.join(map(repr, fitted_inputs))}, which is fitted with the model; "
                "only another fitted derivation can use it"
            )
        derivations.append(
            Derivation(name=name, op=op, columns=src, role=role, length=length, groups=groups, min_rows=min_rows)
        )

    names = [*roles["numeric"], *roles["categorical"], *roles["high_cardinality"], *(d.name for d in derivations)]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise RiskpipeError(f"{source}: column(s) given more than one role: {', '.join(dupes)}")
    if label in names:
        raise RiskpipeError(f"{source}: the label column {label!r} cannot also be a feature")
    if not names:
        raise RiskpipeError(f"{source}: no feature columns (give [columns] numeric/categorical/high_cardinality)")
    derived = {d.name for d in derivations}
    seen = _file_columns(doc.get("evaluation", {}), "seen_columns", "seen", label, derived, f"{source} [evaluation]")
    one_row_per = _file_columns(
        doc.get("training", {}), "one_row_per", "distinct", label, derived, f"{source} [training]"
    )
    return Mapping(
        label=label,
        positive=positive_text,
        id=ds.get("id"),
        date=ds.get("date"),
        date_format=ds.get("date_format"),
        numeric=roles["numeric"],
        categorical=roles["categorical"],
        high_cardinality=roles["high_cardinality"],
        ignore=roles["ignore"],
        derive=tuple(derivations),
        model=_model_params(doc.get("model", {}), f"{source} [model]"),
        seen_columns=seen,
        one_row_per=one_row_per,
        source=source,
    )


def _group_options(d: dict[str, Any], op: str, where: str) -> tuple[tuple[str, ...], int]:
    """``groups`` and ``min_rows`` of a ``relative_to_group`` derivation (and of no other op)."""
    if op not in FITTED:
        extra = [k for k in ("groups", "min_rows") if k in d]
        if extra:
            raise RiskpipeError(f"{where}: {', '.join(extra)} only apply to op relative_to_group")
        return (), _MIN_ROWS
    groups = _str_list(d.get("groups", []), f"{where}: groups")
    if not groups:
        raise RiskpipeError(f"{where}: relative_to_group needs 'groups' (group columns, finest first)")
    min_rows = d.get("min_rows", _MIN_ROWS)
    if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 1:
        raise RiskpipeError(f"{where}: min_rows must be a positive integer, got {min_rows!r}")
    return groups, min_rows


def _file_columns(table: Any, key: str, purpose: str, label: str, derived: set[str], where: str) -> tuple[str, ...]:
    """``[...].<key>``: a list of columns of the data files (not the label, not derived), used to
    define ``purpose`` rows (``[evaluation].seen_columns``, ``[training].one_row_per``)."""
    if not isinstance(table, dict):
        raise RiskpipeError(f"{where}: must be a table")
    _check_keys(table, {key}, where)
    if key not in table:
        return ()
    cols = _str_list(table[key], f"{where}.{key}")
    if not cols:
        raise RiskpipeError(f"{where}.{key}: name at least one column (or leave the key out)")
    if label in cols:
        raise RiskpipeError(f"{where}.{key}: the label column {label!r} cannot define {purpose} rows")
    bad = [c for c in cols if c in derived]
    if bad:
        raise RiskpipeError(f"{where}.{key}: {', '.join(map(repr, bad))} is derived; name columns of the data files")
    return tuple(dict.fromkeys(cols))


def load_mapping(path: Path) -> Mapping:
    """Read and validate a TOML mapping file."""
    path = Path(path)
    if not path.is_file():
        raise RiskpipeError(f"mapping file not found: {path}")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RiskpipeError(f"{path}: not a valid TOML file: {exc}") from None
    return parse_mapping(doc, source=str(path))


def _as_text(value: Any) -> str:
    """Label values compared as text: 1 -> "1", 1.0 -> "1", True -> "true"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def read_table(path: Path, mapping: Mapping) -> pl.DataFrame:
    """Read the mapped columns of one CSV / Parquet / NDJSON file (gzip ok), codes as text."""
    path = Path(path)
    if not path.is_file():
        raise RiskpipeError(f"data file not found: {path}")
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            frame = pl.read_parquet(path)
        elif name.endswith((".ndjson", ".jsonl", ".ndjson.gz", ".jsonl.gz")):
            frame = pl.read_ndjson(path)
        else:  # CSV: everything as text first, so codes keep leading zeros
            frame = pl.read_csv(path, infer_schema=False)
    except Exception as exc:  # noqa: BLE001 - any reader failure is bad input
        raise RiskpipeError(f"{path}: cannot be read: {' '.join(str(exc).split())[:200]}") from None
    wanted = mapping.source_columns()
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise RiskpipeError(f"{path}: column(s) named in {mapping.source} not found: {', '.join(map(repr, missing))}")
    frame = frame.select(wanted)
    checks = [
        (pl.col(c).is_not_null() & pl.col(c).cast(pl.Float64, strict=False).is_null()).alias(c)
        for c in mapping.numeric
        if frame.schema[c] == pl.String
    ]
    if checks:  # a non-numeric value in a numeric column is bad input, not a silent null
        bad = frame.select(checks)
        for col in bad.columns:
            if bad[col].any():
                row = int(bad[col].arg_max())
                raise RiskpipeError(f"{path}: column {col!r} row {row + 1}: {frame[col][row]!r} is not a number")
    casts: list[pl.Expr] = [pl.col(c).cast(pl.Float64, strict=False) for c in mapping.numeric]
    casts += [pl.col(c).cast(pl.String) for c in (*mapping.categorical, *mapping.high_cardinality)]
    if mapping.date:
        d = pl.col(mapping.date)
        if frame.schema[mapping.date] == pl.String:
            d = d.str.to_date(mapping.date_format, strict=False)
        casts.append(d.cast(pl.Date))
    frame = frame.with_columns(casts)
    if mapping.date and frame.height and frame[mapping.date].null_count() == frame.height:
        raise RiskpipeError(f"{path}: no value of date column {mapping.date!r} parses as a date")
    return frame


def _label_text(col: str, dtype: pl.DataType) -> pl.Expr:
    """The label as text, as positive values are written: 1.0 -> "1", True -> "true"."""
    e = pl.col(col)
    if dtype.is_float():
        return pl.when(e == e.round()).then(e.cast(pl.Int64).cast(pl.String)).otherwise(e.cast(pl.String))
    return e.cast(pl.String).str.to_lowercase() if dtype == pl.Boolean else e.cast(pl.String)


def load_labelled(paths: list[Path], mapping: Mapping) -> tuple[pl.DataFrame, np.ndarray]:
    """Features (mapped and derived) and 0/1 labels of one or more files, in file order.

    A ``frequency`` derivation is computed per file (a file is one batch of declarations)."""
    X, y, _ = load_labelled_keys(paths, mapping)
    return X, y


def load_labelled_keys(
    paths: list[Path], mapping: Mapping, key_columns: tuple[str, ...] | None = None
) -> tuple[pl.DataFrame, np.ndarray, pl.DataFrame]:
    """``load_labelled`` plus the rows' values of ``key_columns`` (default: ``seen_columns``) as
    text.

    With fitted derivations the frame holds their input columns instead (``MappedModel`` adds
    them): see ``Mapping.model_input_columns``."""
    feature_cols = mapping.model_input_columns()
    key_cols = mapping.seen_columns if key_columns is None else key_columns
    frames, labels, keys = [], [], []
    for path in paths:
        frame = read_table(path, mapping)
        label = frame.get_column(mapping.label)
        if label.null_count():
            row = int(label.is_null().arg_max())
            raise RiskpipeError(f"{path}: label column {mapping.label!r} is empty on row {row + 1}")
        y = frame.select(_label_text(mapping.label, label.dtype).is_in(list(mapping.positive))).to_series()
        feats = frame
        for d in mapping.derive:  # in order: a derivation may use an earlier one
            if not d.fitted:
                feats = feats.with_columns(d.expr(mapping.date))
        frames.append(feats.select(feature_cols))
        labels.append(y.to_numpy().astype(np.int64))
        keys.append(frame.select(pl.col(c).cast(pl.String) for c in key_cols))
    return pl.concat(frames, how="vertical_relaxed"), np.concatenate(labels), pl.concat(keys)


def unseen_rows(reference: pl.DataFrame, rows: pl.DataFrame) -> np.ndarray:
    """True for each row of ``rows`` whose combination of values occurs in no row of
    ``reference`` (same columns; a null equals a null)."""
    mask = np.ones(rows.height, dtype=bool)
    if rows.height and reference.height:
        seen = rows.with_row_index(_ROW).join(reference.unique(), on=rows.columns, how="semi", nulls_equal=True)
        mask[seen[_ROW].to_numpy()] = False
    return mask


def first_rows(keys: pl.DataFrame) -> np.ndarray:
    """Indices of the first row (in order) of each distinct combination of ``keys``' values
    (a null equals a null), ascending."""
    return keys.with_row_index(_ROW).unique(subset=keys.columns, keep="first", maintain_order=True)[_ROW].to_numpy()


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
        overall = rows["v"].median() if rows.height else None
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
        ln = lambda e: e.clip(lower_bound=0.0).log1p()  # noqa: E731 - as op "log"
        return (ln(pl.col(self.column).cast(pl.Float64)) - ln(median)).alias(self.name)


class MappedModel:
    """The shared estimator behind a mapping's fitted derivations: ``fit`` learns them from the
    training rows (then the estimator on the completed features), ``predict_proba`` looks them
    up, so no statistic of the rows being scored reaches their features."""

    def __init__(self, mapping: Mapping, classifier: Any) -> None:
        self.mapping = mapping
        self.classifier = classifier

    def _select(self, X: pl.DataFrame) -> pl.DataFrame:
        roles = self.mapping.features_by_role()
        return X.select(c for r in ROLES for c in roles[r])

    def fit(self, X: pl.DataFrame, y: np.ndarray) -> MappedModel:
        self.medians_: list[GroupMedians] = []
        for d in self.mapping.fitted():  # in order: a fitted derivation may use an earlier one
            self.medians_.append(GroupMedians.fit(d, X))
            X = X.with_columns(self.medians_[-1].expr())
        self.classifier.fit(self._select(X), y)
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


def build_model(mapping: Mapping, random_state: int = 0):
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


def _roc_auc(y: np.ndarray, score: np.ndarray) -> float | None:
    """ROC-AUC (ties count half); None when the rows hold one class only."""
    if y.size == 0 or y.min() == y.max():
        return None
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score))


def view_report(y: np.ndarray, score: np.ndarray, fractions: tuple[float, ...] = DEFAULT_FRACTIONS) -> dict[str, Any]:
    """``ranking_report`` of some rows plus ``roc_auc`` (None with one class)."""
    report = ranking_report(y, score, fractions=fractions)
    report["roc_auc"] = _roc_auc(np.asarray(y), np.asarray(score, dtype=float))
    return report


def views_report(
    y: np.ndarray, score: np.ndarray, unseen: np.ndarray | None, fractions: tuple[float, ...] = DEFAULT_FRACTIONS
) -> dict[str, dict[str, Any]]:
    """``{"all": ..., "unseen": ...}`` (``unseen`` only when a mask is given): the same scores
    read on every test row and on the rows whose seen-column values the training files lack."""
    views = {"all": view_report(y, score, fractions)}
    if unseen is not None:
        views["unseen"] = view_report(y[unseen], score[unseen], fractions)
    return views


def _mean(values: list[Any]) -> Any:
    """Leaf-wise mean of equally shaped reports (equal leaves, e.g. row counts, kept as they are)."""
    first = values[0]
    if isinstance(first, dict):
        return {k: _mean([v[k] for v in values]) for k in first}
    if all(v == first for v in values):
        return first
    if any(v is None for v in values):  # e.g. ROC-AUC undefined in one fit only: not averaged
        return None
    return float(np.mean(values))


def _sd(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Standard deviation across seeds of the precision, recall and AUC figures of one view."""
    out: dict[str, Any] = {}
    for key in ("precision_at", "recall_at"):
        out[key] = {k: float(np.std([r[key][k] for r in reports])) for k in reports[0][key]}
    for key in ("pr_auc", "roc_auc"):
        vals = [r[key] for r in reports]
        out[key] = None if any(v is None for v in vals) else float(np.std(vals))
    return out


def evaluate(
    mapping: Mapping,
    train_paths: list[Path],
    test_path: Path,
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS,
    random_state: int = 0,
    seeds: int = 1,
) -> dict[str, Any]:
    """Train on the training file(s), score the test file, report ranking metrics.

    Returns ``ranking_report`` of all test rows plus ``roc_auc``, ``views`` (``all`` and, with
    ``seen_columns``, ``unseen``: the test rows whose seen values occur in no training file),
    ``train_rows``, ``train_positives``, ``seconds`` (wall time of fit and predict) and
    ``n_iter``. With ``seeds`` > 1 the model is fitted with random states ``random_state`` ..
    ``random_state + seeds - 1`` and every figure is the mean over the fits (each view gets an
    ``sd`` entry): on a thousand rows one fit's precision at 5 % varies by several points."""
    if not train_paths:
        raise RiskpipeError("evaluate: give at least one --train file")
    if seeds < 1:
        raise RiskpipeError(f"evaluate: seeds must be at least 1, got {seeds}")
    key_columns = tuple(dict.fromkeys((*mapping.seen_columns, *mapping.one_row_per)))
    X_train, y_train, keys_train = load_labelled_keys(list(train_paths), mapping, key_columns)
    seen_train = keys_train.select(mapping.seen_columns)
    rows_read = int(y_train.shape[0])
    if mapping.one_row_per:  # near-copies once; seen-ness still reads every training row
        keep = first_rows(keys_train.select(mapping.one_row_per))
        X_train, y_train = X_train[keep], y_train[keep]
    if y_train.sum() == 0:
        raise RiskpipeError(
            f"label values {list(mapping.positive)} not found in column {mapping.label!r} of the training data"
        )
    if y_train.sum() == y_train.shape[0]:
        raise RiskpipeError(f"every training row is positive: check 'positive' in {mapping.source}")
    X_test, y_test, seen_test = load_labelled_keys([test_path], mapping)
    unseen = unseen_rows(seen_train, seen_test) if mapping.seen_columns else None
    runs, seconds, n_iter = [], 0.0, []
    for seed in range(random_state, random_state + seeds):
        model = build_model(mapping, random_state=seed)
        t0 = time.perf_counter()
        model.fit(X_train, y_train)
        score = model.predict_proba(X_test)[:, 1]
        seconds += time.perf_counter() - t0
        runs.append(views_report(y_test, score, unseen, fractions))
        n_iter.append(int(model.n_iter_))
    views = {name: _mean([r[name] for r in runs]) for name in runs[0]}
    if seeds > 1:
        for name in views:
            views[name]["sd"] = _sd([r[name] for r in runs])
    if unseen is not None:
        views["unseen"]["seen_columns"] = list(mapping.seen_columns)
    report = {k: v for k, v in views["all"].items() if k != "sd"}
    report.update(
        views=views,
        seeds=seeds,
        train_rows=int(y_train.shape[0]),
        train_rows_read=rows_read,
        train_positives=int(y_train.sum()),
        seconds=round(seconds, 2),
        n_iter=int(round(float(np.mean(n_iter)))),
    )
    if not math.isfinite(report["pr_auc"]):  # pragma: no cover - defensive
        report["pr_auc"] = 0.0
    return report


def contract_json(report: dict[str, Any]) -> dict[str, Any]:
    """The ``--json`` shape: contract section 5's precision and recall at 1/2/5/10 % of all test
    rows, widened with ``views`` (each: rows, positives, prevalence, precision and recall at
    1/2/5/10 %, PR-AUC, ROC-AUC; ``unseen`` also names its seen columns)."""
    keys = ("1", "2", "5", "10")
    out: dict[str, Any] = {
        "precision_at": {k: report["precision_at"][k] for k in keys},
        "recall_at": {k: report["recall_at"][k] for k in keys},
    }
    views = report.get("views")
    if views:
        out["views"] = {}
        for name, v in views.items():
            view = {
                "rows": v["n"],
                "positives": v["positives"],
                "prevalence": v["base_rate"],
                "precision_at": {k: v["precision_at"][k] for k in keys},
                "recall_at": {k: v["recall_at"][k] for k in keys},
                "pr_auc": v["pr_auc"],
                "roc_auc": v["roc_auc"],
            }
            if "seen_columns" in v:
                view["seen_columns"] = v["seen_columns"]
            if "sd" in v:
                view["sd"] = {
                    key: ({k: v["sd"][key][k] for k in keys} if isinstance(v["sd"][key], dict) else v["sd"][key])
                    for key in v["sd"]
                }
            out["views"][name] = view
    return out
