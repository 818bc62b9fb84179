"""CSV cells a spreadsheet will not run: the one guard for every CSV riskpipe writes for people.

Manifest text is filed by strangers; a description such as ``=cmd|' /C calc'!A0`` or
``=HYPERLINK(...)`` becomes a live formula when the CSV is opened in a spreadsheet. Text cells
starting with ``=`` ``+`` ``-`` ``@``, a tab or a carriage return get a leading apostrophe (OWASP
"CSV injection"), so they are shown as text. Numbers are not text cells and are left alone. The
Parquet outputs keep the values as filed.
"""

from __future__ import annotations

import polars as pl

from riskpipe import schema as S

#: a text cell starting with one of these is read as a formula by spreadsheets
FORMULA_START = r"^[=+\-@\t\r]"


def formula_safe(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with every String cell that would start a formula prefixed by ``'``."""
    return frame.with_columns(
        [
            pl.when(pl.col(c).str.contains(FORMULA_START)).then(pl.lit("'") + pl.col(c)).otherwise(pl.col(c)).alias(c)
            for c, t in frame.schema.items()
            if t == pl.String()
        ]
    )


# ---------------------------------------------------------------------------------------------
# the types of a published CSV, for the tools that read it
# ---------------------------------------------------------------------------------------------
#: Table Schema type (https://specs.frictionlessdata.io/table-schema/) -> pandas ``dtype``
_PANDAS_DTYPE = {"string": "string", "integer": "Int64", "number": "float64", "boolean": "boolean"}


def _field_type(dtype: pl.DataType) -> str:
    if dtype.is_integer():
        return "integer"
    if dtype.is_float():
        return "number"
    if dtype == pl.Boolean():
        return "boolean"
    if dtype == pl.Date():
        return "date"
    if isinstance(dtype, pl.Datetime):
        return "datetime"
    return "string"  # text, codes, categories, and lists (joined into one cell)


def csv_schema(frame: pl.DataFrame, file_name: str, descriptions: dict[str, str] | None = None) -> dict:
    """What ``frame`` written as CSV by riskpipe holds, as a Table Schema (``fields`` with
    ``name``/``type``, ``missingValues``) plus the keyword arguments of ``pandas.read_csv`` that
    read it without guessing (``pandas``).

    A reader that guesses types turns codes into numbers (``port_of_entry`` "0101" becomes 101,
    ``hts_code`` "0901210000" a float) and, in pandas, the country code "NA" (Namibia) into a
    missing value: the schema says they are text."""
    descriptions = descriptions or {}
    fields = []
    for name, dtype in frame.schema.items():
        field = {"name": name, "type": _field_type(dtype)}
        if field["type"] == "date":
            field["format"] = "%Y-%m-%d"
        if isinstance(dtype, pl.List):
            field["description"] = f"list joined with {S.REASONS_SEPARATOR!r}"
        if name in descriptions:
            field["description"] = descriptions[name]
        fields.append(field)
    dates = [f["name"] for f in fields if f["type"] in ("date", "datetime")]
    return {
        "path": file_name,
        "encoding": "utf-8",
        "dialect": {"delimiter": ",", "header": True, "quoteChar": '"'},
        "missingValues": [""],
        "formulaGuard": "a text cell starting with = + - @, a tab or a carriage return is written with a leading '",
        "fields": fields,
        "pandas": {
            "dtype": {f["name"]: _PANDAS_DTYPE[f["type"]] for f in fields if f["type"] in _PANDAS_DTYPE},
            "parse_dates": dates,
            "keep_default_na": False,
            "na_values": [""],
        },
    }
