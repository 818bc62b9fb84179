"""Analyst rules: a declarative TOML file of red flags -> a rule score and reason codes.

A rule file holds ``[[rule]]`` tables::

    [[rule]]
    code = "PRECURSOR_NAME"
    text = "The description names a fentanyl precursor chemical"
    weight = 0.6
    all = [ { field = "description", op = "contains_any", value = "@precursors" } ]

A rule has ``all`` (every condition holds) or ``any`` (at least one holds), or both (both
must hold). Operators: eq, ne, in, not_in, gt, ge, lt, le, contains_any (case-insensitive terms,
or a shipped lexicon named ``@precursors``, ``@presses``, ``@misdescriptions``, ...), matches (a
regular expression), is_null, is_not_null, is_true, is_false. Fields are raw manifest columns or
feature columns. Nothing in a rule file is executed: conditions become Polars expressions. A null
field makes a condition false (except ``is_null``).

``rule_score = 1 - prod(1 - weight)`` over the rules that hit; ``rule_reasons`` lists the codes
that hit, strongest weight first (ties by code).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path
from typing import Any

import polars as pl

from riskpipe import schema as S
from riskpipe.config import Settings
from riskpipe.errors import RiskpipeError

DEFAULT_RULES_PATH = Path(__file__).resolve().parent / "reference" / "rules.toml"

_COMPARE = {"eq", "ne", "gt", "ge", "lt", "le"}
_LISTS = {"in", "not_in"}
_UNARY = {"is_null", "is_not_null", "is_true", "is_false"}
OPS = _COMPARE | _LISTS | _UNARY | {"contains_any", "matches"}
#: rules packed into one ``UInt64`` hit mask (``RuleSet.hit_mask``)
MASK_RULES = 64
MASK = "_rule_mask"
_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9_:.\-]{0,63}$")


def known_fields() -> set[str]:
    """Fields a rule may test: raw manifest columns, feature columns and ``network_id``."""
    from riskpipe.features import FEATURE_COLUMNS

    return set(S.RAW_SHIPMENT_SCHEMA) | set(FEATURE_COLUMNS) | {S.NETWORK_ID}


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: Any = None


@dataclass(frozen=True)
class Rule:
    code: str
    text: str
    weight: float
    all: tuple[Condition, ...] = ()
    any: tuple[Condition, ...] = ()
    floor: bool = False  # a hit sets a floor under the risk score that the model cannot lower

    @property
    def fields(self) -> set[str]:
        return {c.field for c in (*self.all, *self.any)}


@dataclass(frozen=True)
class RuleSet:
    """Validated rules, strongest first; ``apply`` turns a frame into rule scores and reasons."""

    rules: tuple[Rule, ...]
    source: str = "<defaults>"
    texts: dict[str, str] = field(default_factory=dict)

    @property
    def fields(self) -> set[str]:
        return {f for r in self.rules for f in r.fields}

    def _checked(self, frame: pl.DataFrame | pl.LazyFrame) -> tuple[pl.LazyFrame, pl.Schema]:
        lazy = frame.lazy()
        schema = lazy.collect_schema()
        missing = sorted(self.fields - set(schema))
        if missing:
            users = [r.code for r in self.rules if r.fields & set(missing)]
            raise RiskpipeError(
                f"rules {self.source}: field(s) {', '.join(missing)} not in the scored frame (used by {', '.join(users)})"
            )
        return lazy, schema

    def _collect(self, lazy: pl.LazyFrame, *exprs: pl.Expr) -> pl.DataFrame:
        try:
            return lazy.select(*exprs).collect()
        except (pl.exceptions.PolarsError, TypeError, ValueError) as exc:
            raise RiskpipeError(f"rules {self.source}: cannot apply a rule ({exc})".splitlines()[0]) from exc

    def hits(self, frame: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
        """``shipment_id`` and one boolean column per rule code."""
        lazy, schema = self._checked(frame)
        return self._collect(lazy, pl.col(S.SHIPMENT_ID), *[_rule_expr(r, schema).alias(r.code) for r in self.rules])

    def hit_mask(self, frame: pl.DataFrame | pl.LazyFrame) -> pl.Series:
        """One ``UInt64`` per row, bit ``i`` set when ``rules[i]`` hits (at most 64 rules).

        All conditions go into one select, so Polars evaluates a shared sub-expression (the
        normalised description of several lexicon rules) once."""
        if len(self.rules) > MASK_RULES:
            raise ValueError(f"hit_mask packs at most {MASK_RULES} rules, this set has {len(self.rules)}")
        lazy, schema = self._checked(frame)
        return self._collect(lazy, self._mask_expr(schema))[MASK]

    def _mask_expr(self, schema: pl.Schema) -> pl.Expr:
        bits = [
            pl.when(_rule_expr(r, schema).fill_null(False))
            .then(pl.lit(1 << i, pl.UInt64))
            .otherwise(pl.lit(0, pl.UInt64))
            for i, r in enumerate(self.rules)
        ]
        mask = pl.sum_horizontal(bits) if bits else pl.repeat(0, pl.len(), dtype=pl.UInt64)
        return mask.cast(pl.UInt64).alias(MASK)

    def mask_table(self, masks: pl.Series) -> pl.DataFrame:
        """``mask`` (the distinct values of ``masks``), ``rule_score`` and ``rule_reasons`` of
        each: a day has few distinct combinations of hits, so the arithmetic runs per
        combination, not per row."""
        values = masks.unique().sort().to_list()
        scores, floors, reasons = [], [], []
        for m in values:
            codes = [r.code for i, r in enumerate(self.rules) if m >> i & 1]
            scores.append(self.score_of(codes))
            floors.append(self.floor_of(codes))
            reasons.append(codes)
        return pl.DataFrame(
            {MASK: values, S.RULE_SCORE: scores, S.RULE_FLOOR_SCORE: floors, S.RULE_REASONS: reasons},
            schema={
                MASK: pl.UInt64,
                S.RULE_SCORE: pl.Float64,
                S.RULE_FLOOR_SCORE: pl.Float64,
                S.RULE_REASONS: pl.List(pl.String),
            },
        )

    def score_of(self, codes: list[str]) -> float:
        """``1 - prod(1 - weight)`` over the rules named by ``codes``."""
        return self._combine(codes, floor_only=False)

    def floor_of(self, codes: list[str]) -> float:
        """The same over the ``floor = true`` rules only: what the model may not score below."""
        return self._combine(codes, floor_only=True)

    def _combine(self, codes: list[str], floor_only: bool) -> float:
        wanted = set(codes)
        keep = 1.0
        for r in self.rules:
            if r.code in wanted and (r.floor or not floor_only):
                keep *= 1.0 - r.weight
        return min(max(1.0 - keep, 0.0), 1.0)

    def apply(self, frame: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
        """``shipment_id``, ``rule_score`` (0..1) and ``rule_reasons`` (codes, strongest first)."""
        if len(self.rules) > MASK_RULES:
            return self._apply_rows(self.hits(frame))
        lazy, schema = self._checked(frame)
        hits = self._collect(lazy, pl.col(S.SHIPMENT_ID), self._mask_expr(schema))
        return hits.join(self.mask_table(hits[MASK]), on=MASK, how="left", maintain_order="left").select(
            S.SHIPMENT_ID, S.RULE_SCORE, S.RULE_REASONS, S.RULE_FLOOR_SCORE
        )

    def _apply_rows(self, hits: pl.DataFrame) -> pl.DataFrame:
        """``apply`` row by row in Polars (rule sets too large for a 64-bit mask)."""
        keep = pl.lit(1.0)
        floor_keep = pl.lit(1.0)
        for r in self.rules:
            keep = keep * pl.when(pl.col(r.code)).then(1.0 - r.weight).otherwise(1.0)
            if r.floor:
                floor_keep = floor_keep * pl.when(pl.col(r.code)).then(1.0 - r.weight).otherwise(1.0)
        reasons = pl.concat_list(
            [pl.when(pl.col(r.code)).then(pl.lit(r.code)).otherwise(pl.lit(None, pl.String)) for r in self.rules]
        ).list.drop_nulls()
        return hits.select(
            S.SHIPMENT_ID,
            (1.0 - keep).clip(0.0, 1.0).cast(pl.Float64).alias(S.RULE_SCORE),
            reasons.alias(S.RULE_REASONS),
            (1.0 - floor_keep).clip(0.0, 1.0).cast(pl.Float64).alias(S.RULE_FLOOR_SCORE),
        )


# ---------------------------------------------------------------------------------------------
# expressions
# ---------------------------------------------------------------------------------------------
def _terms(value: str | Iterable[object]) -> list[str]:
    if isinstance(value, str) and value.startswith("@"):
        from riskpipe.features.lexicon import load_lexicon

        return [t.strip() for t in load_lexicon().lists[value[1:]] if t.strip()]
    return [str(v).lower() for v in value]


def _is_text(dtype: pl.DataType) -> bool:
    return isinstance(dtype, (pl.String, pl.Enum, pl.Categorical))


def _cond_expr(c: Condition, schema: pl.Schema) -> pl.Expr:
    col = pl.col(c.field)
    dtype = schema[c.field]
    if _is_text(dtype):
        col = col.cast(pl.String)
    v = c.value
    if c.op == "is_null":
        return col.is_null()
    if c.op == "is_not_null":
        return col.is_not_null()
    if c.op in ("is_true", "is_false"):
        b = col.cast(pl.Boolean)
        return (b if c.op == "is_true" else ~b).fill_null(False)
    if c.op == "contains_any":
        from riskpipe.features.lexicon import normalise_text

        if isinstance(v, str) and v.startswith("@"):
            # lexicons are normalised: match on the normalised text (whole words for short terms)
            from riskpipe.features.lexicon import load_lexicon

            lex = load_lexicon()
            if v[1:] == "vague":
                return normalise_text(col).str.strip_chars().is_in(list(lex.lists["vague"])).fill_null(False)
            return (
                normalise_text(col)
                .str.contains_any(list(lex.lists[v[1:]]), ascii_case_insensitive=True)
                .fill_null(False)
                & col.is_not_null()
            )
        return col.str.contains_any(_terms(v), ascii_case_insensitive=True).fill_null(False)
    if c.op == "matches":
        return col.str.contains(v).fill_null(False)
    if c.op in _LISTS:
        inside = col.is_in(list(v))
        return (inside if c.op == "in" else ~inside).fill_null(False)
    lit = pl.lit(v)
    out = {
        "eq": col == lit,
        "ne": col != lit,
        "gt": col > lit,
        "ge": col >= lit,
        "lt": col < lit,
        "le": col <= lit,
    }[c.op]
    return out.fill_null(False)


def _rule_expr(r: Rule, schema: pl.Schema) -> pl.Expr:
    parts = []
    if r.all:
        parts.append(pl.all_horizontal([_cond_expr(c, schema) for c in r.all]))
    if r.any:
        parts.append(pl.any_horizontal([_cond_expr(c, schema) for c in r.any]))
    return pl.all_horizontal(parts) if len(parts) > 1 else parts[0]


# ---------------------------------------------------------------------------------------------
# loading and validation
# ---------------------------------------------------------------------------------------------
def _fail(source: str, where: str, msg: str) -> RiskpipeError:
    return RiskpipeError(f"rules {source}: {where}: {msg}")


def _scalar(x: object) -> bool:
    """A TOML scalar: text, number, boolean, or a date, date-time or time of day."""
    return isinstance(x, (str, int, float, bool, date, time))


def _number(x: object) -> bool:
    """Comparable by order: a number (not a boolean), or a date, date-time or time of day."""
    return (isinstance(x, (int, float)) and not isinstance(x, bool)) or isinstance(x, (date, time))


def _validate_condition(raw: object, source: str, where: str, fields: set[str]) -> Condition:
    from riskpipe.features.lexicon import LEXICON_NAMES

    if not isinstance(raw, dict):
        raise _fail(source, where, "a condition must be a table {field, op, value}")
    extra = set(raw) - {"field", "op", "value"}
    if extra:
        raise _fail(source, where, f"unknown key(s) {', '.join(sorted(extra))} (use field, op, value)")
    f, op = raw.get("field"), raw.get("op")
    if not isinstance(f, str) or not f:
        raise _fail(source, where, "condition without a field")
    where = f"{where}, field {f!r}"
    if f not in fields:
        raise _fail(source, where, "unknown field (not a manifest or feature column)")
    if op not in OPS:
        raise _fail(source, where, f"unknown op {op!r} (use one of {', '.join(sorted(OPS))})")
    has_value = "value" in raw
    v = raw.get("value")
    if op in _UNARY:
        if has_value:
            raise _fail(source, where, f"op {op} takes no value")
    elif not has_value:
        raise _fail(source, where, f"op {op} needs a value")
    elif op in _COMPARE and op in {"gt", "ge", "lt", "le"} and not _number(v):
        raise _fail(source, where, f"op {op} needs a number or a date, got {v!r}")
    elif op in {"eq", "ne"} and not _scalar(v):
        raise _fail(source, where, f"op {op} needs a single value, got {v!r}")
    elif op in _LISTS and not (isinstance(v, list) and v and all(_scalar(x) for x in v)):
        raise _fail(source, where, f"op {op} needs a non-empty list of values")
    elif op == "contains_any":
        if isinstance(v, str) and v.startswith("@"):
            if v[1:] not in LEXICON_NAMES:
                raise _fail(source, where, f"unknown lexicon {v} (use @{', @'.join(LEXICON_NAMES)})")
        elif not (isinstance(v, list) and v and all(isinstance(x, str) and x for x in v)):
            raise _fail(source, where, "contains_any needs a non-empty list of words or a lexicon like @precursors")
    elif op == "matches":
        if not isinstance(v, str) or not v:
            raise _fail(source, where, "matches needs a regular expression")
        try:
            pl.select(pl.lit("").str.contains(v))
        except pl.exceptions.PolarsError as exc:
            raise _fail(source, where, f"invalid regular expression {v!r} ({str(exc).splitlines()[0]})") from None
    return Condition(field=f, op=op, value=tuple(v) if isinstance(v, list) else v)


def _validate_rule(raw: object, i: int, source: str, fields: set[str]) -> Rule:
    if not isinstance(raw, dict):
        raise _fail(source, f"rule #{i + 1}", "must be a [[rule]] table")
    code = raw.get("code")
    if not isinstance(code, str) or not _CODE.match(code):
        raise _fail(source, f"rule #{i + 1}", f"code {code!r} must be a short identifier (letters, digits, _ - : .)")
    where = f"rule {code}"
    extra = set(raw) - {"code", "text", "weight", "all", "any", "floor"}
    if extra:
        raise _fail(source, where, f"unknown key(s) {', '.join(sorted(extra))}")
    text = raw.get("text")
    if not isinstance(text, str) or not text.strip():
        raise _fail(source, where, "needs a plain-language text")
    w = raw.get("weight")
    if not isinstance(w, (int, float)) or isinstance(w, bool) or not 0.0 <= float(w) <= 1.0:
        raise _fail(source, where, f"weight {w!r} must be a number between 0 and 1")
    floor = raw.get("floor", False)
    if not isinstance(floor, bool):
        raise _fail(source, where, f"floor {floor!r} must be true or false")
    conds: dict[str, tuple[Condition, ...]] = {}
    for key in ("all", "any"):
        items = raw.get(key, [])
        if not isinstance(items, list):
            raise _fail(source, where, f"{key} must be a list of conditions")
        conds[key] = tuple(_validate_condition(c, source, f"{where}, {key}[{j}]", fields) for j, c in enumerate(items))
    if not conds["all"] and not conds["any"]:
        raise _fail(source, where, "needs conditions under all = [...] or any = [...]")
    return Rule(code=code, text=text.strip(), weight=float(w), all=conds["all"], any=conds["any"], floor=floor)


def parse_rules(text: str, source: str = "<text>") -> RuleSet:
    """Validate the TOML text of a rules file."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RiskpipeError(f"rules {source}: not valid TOML ({exc})") from None
    extra = set(data) - {"rule"}
    if extra:
        raise RiskpipeError(f"rules {source}: unknown top-level key(s) {', '.join(sorted(extra))} (use [[rule]])")
    items = data.get("rule", [])
    if not isinstance(items, list):
        raise RiskpipeError(f"rules {source}: 'rule' must be an array of tables ([[rule]])")
    fields = known_fields()
    rules = [_validate_rule(r, i, source, fields) for i, r in enumerate(items)]
    seen: set[str] = set()
    for r in rules:
        if r.code in seen:
            raise _fail(source, f"rule {r.code}", "duplicate code")
        seen.add(r.code)
    rules.sort(key=lambda r: (-r.weight, r.code))
    return RuleSet(rules=tuple(rules), source=source, texts={r.code: r.text for r in rules})


#: the rules file the workbench writes under a home whose settings name no ``rules_path``
HOME_RULES_FILE = "rules.toml"


def rules_file(settings: Settings) -> Path | None:
    """The rules file a night uses: ``settings.rules_path``, else ``<home>/rules.toml`` when one
    was saved there (the workbench's rule editor writes it), else None (the shipped rules)."""
    if settings.rules_path is not None:
        return Path(settings.rules_path)
    home_file = Path(settings.home) / HOME_RULES_FILE
    return home_file if home_file.is_file() else None


def load_rules(path: Path | None = None) -> RuleSet:
    """The rules of ``path`` (None: the shipped defaults), validated."""
    path = path or DEFAULT_RULES_PATH
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RiskpipeError(f"rules {path}: cannot read ({exc.strerror or exc})") from None
    return parse_rules(text, str(path))
