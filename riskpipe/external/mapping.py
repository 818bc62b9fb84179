"""The mapping of a foreign labelled dataset (external benchmark), parsed and validated.

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

    [[derive]]                     # fitted: the row's percentile among its group's training values
    name = "price_rank"
    op = "rank_in_group"
    column = "Item Price"
    groups = [["hs4", "Country of Origin"], "hs4"]  # a list of columns is one combined group

    [model]                        # TabularRiskClassifier parameters (e.g. learning_rate)
    learning_rate = 0.05

    [evaluation]
    seen_columns = ["Item Price"]  # rows whose values here occur in the training files are "seen"

    [training]
    one_row_per = ["Item Price"]   # train on the first row of each distinct value (near-copies once)
    group_folds_by = ["Item Price"]  # cross-fitting folds and early-stopping holdout of whole groups
    weight_per = ["Item Price"]    # each distinct value weighs one row in total (near-copies share it)
    novel_rows_by = ["Item Price"] # train on the rows that were new when they arrived (needs a date)
    novel_period = "quarter"       # ... new since the start of their day, month or quarter

Only named columns are used; a column named in the mapping but absent from a file is an error.

Near-duplicates: a benchmark whose test rows repeat training rows measures memory, not
generalisation. With ``seen_columns`` the report adds an ``unseen`` view beside ``all`` rows: the
test rows whose combination of values in those columns occurs in no training file (as read:
numeric-role columns compared as numbers, others as text; a null matches a null). With
``[training] one_row_per`` the model is trained on the first row (in file order) of each distinct
combination of those columns' values, so a run of near-copies counts once and the trees are not
paid for memorising it. With ``[training] group_folds_by`` the rows sharing those columns' values
are kept together when the estimator cross-fits its target encoding and holds out rows for early
stopping (``TabularRiskClassifier.fit(groups=...)``), so a row's encoding never sees the labels of
its own near-copies. With ``[training] weight_per`` each training row weighs 1 / (the number of
training rows sharing its values of those columns) in the trees: a distinct value combination
counts once, as with ``one_row_per``, but through the mean label of all its copies rather than
the label of the first one. With ``[training] novel_rows_by`` the model is trained only on the rows
that were new when they arrived: those whose values of the columns occur in no training row
dated before the start of their own ``novel_period`` (``day``: an earlier day, ``month``,
``quarter``; default ``quarter``). The unseen view scores rows of this kind (values the training
files lack), so training on them fits the population the view measures; every training row still
counts for seen-ness, and ``group_folds_by`` and ``weight_per`` act on the rows kept.

Fitted derivations: ``relative_to_group`` is ln(1 + a) - ln(1 + median of a over the training
rows of the row's group), the group being the first of ``groups`` (finest first) whose value holds
at least ``min_rows`` training rows with a value, else the median of all training rows.
``rank_in_group`` is the row's percentile among the training values of a in the same group
(mid-rank: (number of training values below a + number at most a) / 2 / the group's training
rows, in [0, 1]), so a price is read against its own kind of goods (a cheap car, an expensive
shirt) rather than on one scale; the same fallback applies. An entry of ``groups`` is a column or
a list of columns, whose values together form one group (e.g. heading x country of origin). The
medians and sorted values are learned when the model is fitted (``MappedModel``) and looked up
for any later row, so a test row's own value never moves its feature (a training row is read
against the training values, its own included). Per-file derivations may feed a fitted one, not
the reverse.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from riskpipe.errors import RiskpipeError

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
    "rank_in_group": (1, "numeric"),  # percentile of a among the training values of the row's group
}
#: derivations learned from the training rows when the model is fitted, not computed per file
FITTED = frozenset({"relative_to_group", "rank_in_group"})
_MIN_ROWS = 20
ROLES = ("numeric", "categorical", "high_cardinality")
#: ``[training] novel_period``: a row is new when its values occur in no row dated before the
#: start of its own period
NOVEL_PERIODS = ("day", "month", "quarter")
_ROLE_PARAMS = {"categorical", "high_cardinality", "numeric", "ignore"}


@dataclass(frozen=True)
class Derivation:
    """One derived feature: ``op`` applied to ``columns``, named ``name``, used as ``role``."""

    name: str
    op: str
    columns: tuple[str, ...]
    role: str
    length: int | None = None
    groups: tuple[tuple[str, ...], ...] = ()  # fitted ops: group keys, finest first (columns of each)
    min_rows: int = _MIN_ROWS

    @property
    def fitted(self) -> bool:
        return self.op in FITTED

    def inputs(self) -> tuple[str, ...]:
        """Every column this derivation reads (its source columns and its groups)."""
        return tuple(dict.fromkeys((*self.columns, *(c for key in self.groups for c in key))))

    def expr(self, date_col: str | None) -> pl.Expr:
        """The Polars expression computing this feature (dates already parsed)."""
        c = [pl.col(x) for x in self.columns]
        num = [x.cast(pl.Float64) for x in c]
        text = [x.cast(pl.String) for x in c]
        op = self.op
        e: pl.Expr
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
        elif op in ("weekday", "month", "day"):
            if date_col is None:  # pragma: no cover - parse_mapping requires [dataset].date
                raise RiskpipeError(f"derive {self.name!r}: op {op} needs [dataset].date")
            day = pl.col(date_col).dt
            if op == "weekday":
                e = day.weekday().cast(pl.String)
            elif op == "month":
                e = day.month().cast(pl.String)
            else:
                e = day.day().cast(pl.Float64)
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
    group_folds_by: tuple[str, ...] = ()
    weight_per: tuple[str, ...] = ()
    novel_rows_by: tuple[str, ...] = ()
    novel_period: str = "quarter"
    source: str = "<mapping>"

    def source_columns(self) -> list[str]:
        """Every column of the data files the mapping names (checked against each file)."""
        cols = [self.label, *self.numeric, *self.categorical, *self.high_cardinality]
        cols += [c for c in (self.id, self.date) if c]
        cols += [*self.seen_columns, *self.one_row_per, *self.group_folds_by, *self.weight_per, *self.novel_rows_by]
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


def _str_list(value: object, where: str) -> tuple[str, ...]:
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
        read = (*src, *(c for key in groups for c in key))
        fitted_inputs = [c for c in read if c in {x.name for x in derivations if x.fitted}]
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
    training = doc.get("training", {})
    keys = {"one_row_per", "group_folds_by", "weight_per", "novel_rows_by", "novel_period"}
    one_row_per = _file_columns(training, "one_row_per", "distinct", label, derived, f"{source} [training]", keys)
    group_folds_by = _file_columns(training, "group_folds_by", "grouped", label, derived, f"{source} [training]", keys)
    weight_per = _file_columns(training, "weight_per", "weighted", label, derived, f"{source} [training]", keys)
    novel_rows_by = _file_columns(training, "novel_rows_by", "novel", label, derived, f"{source} [training]", keys)
    novel_period = training.get("novel_period", "quarter")
    if novel_period not in NOVEL_PERIODS:
        raise RiskpipeError(
            f"{source} [training].novel_period: one of {', '.join(NOVEL_PERIODS)}, got {novel_period!r}"
        )
    if "novel_period" in training and not novel_rows_by:
        raise RiskpipeError(f"{source} [training].novel_period: only applies with novel_rows_by")
    if novel_rows_by and not ds.get("date"):
        raise RiskpipeError(f"{source} [training].novel_rows_by: needs [dataset].date (new since when?)")
    if novel_rows_by and one_row_per:
        raise RiskpipeError(f"{source} [training]: novel_rows_by and one_row_per both choose training rows; give one")
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
        group_folds_by=group_folds_by,
        weight_per=weight_per,
        novel_rows_by=novel_rows_by,
        novel_period=novel_period,
        source=source,
    )


def _group_options(d: dict[str, Any], op: str, where: str) -> tuple[tuple[tuple[str, ...], ...], int]:
    """``groups`` and ``min_rows`` of a fitted derivation (and of no other op); each group is a
    column or a list of columns (one combined key)."""
    if op not in FITTED:
        extra = [k for k in ("groups", "min_rows") if k in d]
        if extra:
            raise RiskpipeError(
                f"{where}: {', '.join(extra)} only apply to op {' or '.join(sorted(FITTED, reverse=True))}"
            )
        return (), _MIN_ROWS
    raw = d.get("groups", [])
    entries = raw if isinstance(raw, list) else [raw]
    groups = tuple(_str_list(g, f"{where}: groups") for g in entries)
    if not groups or not all(groups):
        raise RiskpipeError(f"{where}: {op} needs 'groups' (group columns, finest first)")
    min_rows = d.get("min_rows", _MIN_ROWS)
    if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 1:
        raise RiskpipeError(f"{where}: min_rows must be a positive integer, got {min_rows!r}")
    return groups, min_rows


def _file_columns(
    table: object, key: str, purpose: str, label: str, derived: set[str], where: str, allowed: set[str] | None = None
) -> tuple[str, ...]:
    """``[...].<key>``: a list of columns of the data files (not the label, not derived), used to
    define ``purpose`` rows (``[evaluation].seen_columns``, ``[training].one_row_per`` and
    ``group_folds_by``); ``allowed``: the table's keys (default: ``key`` only)."""
    if not isinstance(table, dict):
        raise RiskpipeError(f"{where}: must be a table")
    _check_keys(table, allowed or {key}, where)
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


def _as_text(value: object) -> str:
    """Label values compared as text: 1 -> "1", 1.0 -> "1", True -> "true"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
