"""CSV cells a spreadsheet will not run: the one guard for every CSV riskpipe writes for people.

Manifest text is filed by strangers; a description such as ``=cmd|' /C calc'!A0`` or
``=HYPERLINK(...)`` becomes a live formula when the CSV is opened in a spreadsheet. Text cells
starting with ``=`` ``+`` ``-`` ``@``, a tab or a carriage return get a leading apostrophe (OWASP
"CSV injection"), so they are shown as text. Numbers are not text cells and are left alone. The
Parquet outputs keep the values as filed.
"""

from __future__ import annotations

import polars as pl

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
