"""Reading a foreign labelled dataset through its mapping: the mapped columns of each file (any
format of the one format registry, :mod:`riskpipe.ingest.readers`), features and 0/1 labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from riskpipe.errors import RiskpipeError
from riskpipe.external.mapping import Mapping
from riskpipe.ingest.readers import format_of, get_format

_ROW = "__riskpipe_row"  # row index while matching seen values (not a plausible data column)


def read_table(path: Path, mapping: Mapping) -> pl.DataFrame:
    """Read the mapped columns of one file of a registered format (CSV, Parquet, NDJSON, gzip ok;
    any other name is read as CSV), CSV codes as text."""
    path = Path(path)
    if not path.is_file():
        raise RiskpipeError(f"data file not found: {path}")
    fmt = format_of(path) or get_format("csv")  # a name of no registered format is read as CSV
    try:
        frame = fmt.read(path)
    except Exception as exc:  # any reader failure is bad input
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
                row = int(bad[col].arg_true()[0])
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
            row = int(label.is_null().arg_true()[0])
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


def group_keys(keys: pl.DataFrame) -> np.ndarray:
    """One integer per row naming its combination of ``keys``' values (a null equals a null): the
    groups of ``[training] group_folds_by``."""
    first = keys.with_row_index(_ROW).unique(subset=keys.columns, keep="first", maintain_order=True)
    ids = first.with_row_index("_group").select([*keys.columns, "_group"])
    joined = keys.with_row_index(_ROW).join(ids, on=keys.columns, how="left", nulls_equal=True).sort(_ROW)
    return joined["_group"].to_numpy().astype(np.int64)


def novel_rows(keys: pl.DataFrame, day: pl.Series, period: str) -> np.ndarray:
    """True for each row whose combination of ``keys``' values (a null equals a null) occurs in no
    row dated before the start of the row's own ``period`` (``day``, ``month`` or ``quarter``):
    the rows that were new when they arrived. A row without a date is not new."""
    every = {"day": "1d", "month": "1mo", "quarter": "3mo"}[period]
    frame = keys.with_columns(day.alias(_ROW))
    first = pl.col(_ROW).min().over(pl.struct(keys.columns))
    novel = frame.select((first >= pl.col(_ROW).dt.truncate(every)).fill_null(False)).to_series()
    return novel.to_numpy()


def inverse_group_sizes(keys: pl.DataFrame) -> np.ndarray:
    """1 / (number of rows sharing the row's combination of ``keys``' values) for each row (a null
    equals a null): the weights of ``[training] weight_per``, under which each distinct
    combination weighs one row in total."""
    sizes = keys.select(pl.len().over(pl.struct(keys.columns)).alias("n"))["n"].to_numpy()
    return 1.0 / sizes.astype(np.float64)
