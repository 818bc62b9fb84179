"""``riskpipe sql``: an analyst's ad-hoc SQL over the raw store and the published outputs.

DuckDB in-process, on an in-memory database that holds only views over the home's Parquet files
(and, when the query names it, the exam outcomes read from the labels store). Nothing is written:
the query must be one read-only statement (``SELECT``, ``WITH ... SELECT``, ``DESCRIBE``,
``SHOW``, ``SUMMARIZE``, ``EXPLAIN``), checked by DuckDB's own parser before anything is opened,
and the configuration is locked before it runs. Relative paths in the query are relative to the
home (``read_parquet('scores/*/scores.parquet')``).
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from riskpipe import schema as S
from riskpipe.errors import RiskpipeError
from riskpipe.store import Layout

#: view -> what it is (the README and contract list the same)
VIEWS: dict[str, str] = {
    "shipments": "raw/shipments/arrival_date=*/*.parquet: one row per shipment (its latest filing), "
    "with arrival_date from the partition",
    "partner_exports": "raw/partner_exports/declared_date=*/*.parquet: partner export declarations, "
    "with declared_date from the partition",
    "scores": "scores/D/scores.parquet: every scored shipment of every published day, with arrival_date",
    "targets": "targets/D/targets.parquet: the published targeting lists (reasons as a list)",
    "labels": "the labels store: current exam outcome per shipment (read when the query names it)",
}
_ALLOWED = {"SELECT", "EXPLAIN"}  # DESCRIBE, SHOW, SUMMARIZE and WITH parse as SELECT
_DAY_GLOB = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]"  # a published day's folder, never a staging one


def read_only_statement(query: str) -> str:
    """The one statement of ``query`` if it only reads, else a one-line error."""
    import duckdb

    try:
        statements = duckdb.connect(":memory:").extract_statements(query)
    except duckdb.Error as exc:
        raise RiskpipeError(f"sql: {_first_line(exc)}") from None
    kinds = [s.type.name for s in statements]
    if len(statements) != 1 or kinds[0] not in _ALLOWED:
        got = ", ".join(kinds) if kinds else "nothing"
        raise RiskpipeError(
            "sql: the database is read-only here: give one SELECT (or WITH ... SELECT, DESCRIBE, SHOW, "
            f"SUMMARIZE, EXPLAIN) statement; got {got}"
        )
    return statements[0].query


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return " ".join(lines[:2]) if lines else type(exc).__name__


def _quote(path: Path | str) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _has_files(base: Path, pattern: str) -> bool:
    return base.exists() and next(base.glob(pattern), None) is not None


def view_sql(layout: Layout) -> dict[str, str]:
    """``CREATE VIEW`` statements of the file views whose files exist."""
    views: dict[str, str] = {}
    if _has_files(layout.raw_shipments, "arrival_date=*/*.parquet"):
        src = _quote(layout.raw_shipments / "arrival_date=*" / "*.parquet")
        views["shipments"] = f"SELECT * FROM read_parquet({src}, hive_partitioning = true, union_by_name = true)"
    if _has_files(layout.raw_partner, "declared_date=*/*.parquet"):
        src = _quote(layout.raw_partner / "declared_date=*" / "*.parquet")
        views["partner_exports"] = f"SELECT * FROM read_parquet({src}, hive_partitioning = true, union_by_name = true)"
    if _has_files(layout.scores, f"{_DAY_GLOB}/scores.parquet"):
        # the folder is the arrival date: files published before scores.parquet had the column
        # read the same way
        src = _quote(layout.scores / _DAY_GLOB / "scores.parquet")
        views["scores"] = (
            f"SELECT {S.SHIPMENT_ID}, CAST(regexp_extract(filename, '([0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}})[/\\\\]scores[.]parquet$', 1)"
            f" AS DATE) AS {S.ARRIVAL_DATE}, COLUMNS(lambda c: c NOT IN ('{S.SHIPMENT_ID}', '{S.ARRIVAL_DATE}', 'filename')) "
            f"FROM read_parquet({src}, hive_partitioning = false, union_by_name = true, filename = true)"
        )
    if _has_files(layout.targets, f"{_DAY_GLOB}/targets.parquet"):
        src = _quote(layout.targets / _DAY_GLOB / "targets.parquet")
        views["targets"] = f"SELECT * FROM read_parquet({src}, hive_partitioning = false, union_by_name = true)"
    return views


def run_query(layout: Layout, query: str, labels_loader=None) -> pl.DataFrame:  # noqa: ANN001 - () -> pl.DataFrame
    """The result of ``query`` (checked by :func:`read_only_statement`) over the home's views.
    ``labels_loader`` gives the labels frame; it is called only when the query names ``labels``."""
    import duckdb

    from riskpipe import publish

    statement = read_only_statement(query)
    publish.ensure_all_complete(layout)  # a killed publication is finished first, as every reader does
    layout.raw_days()  # ... and a killed ingest run
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET python_enable_replacements = false")  # no Python variables as tables
        con.execute("SET autoinstall_known_extensions = false")  # nothing downloads
        con.execute(f"SET file_search_path = {_quote(layout.home.resolve())}")
        for name, body in view_sql(layout).items():
            con.execute(f"CREATE VIEW {name} AS {body}")
        if labels_loader is not None and re.search(r"\blabels\b", statement, re.IGNORECASE):
            labels = labels_loader().with_columns(pl.col(pl.Enum, pl.Categorical).cast(pl.String))
            con.register("labels", labels.to_arrow())
        con.execute("SET lock_configuration = true")
        return con.sql(statement).pl()
    except duckdb.CatalogException as exc:
        missing = re.search(r"Table with name (\w+) does not exist", str(exc))
        if missing and missing.group(1).lower() in VIEWS:
            name = missing.group(1).lower()
            raise RiskpipeError(
                f"sql: no published {name} yet under {layout.home} (view {name} has no files)"
            ) from None
        raise RiskpipeError(f"sql: {_first_line(exc)}") from None
    except duckdb.Error as exc:
        raise RiskpipeError(f"sql: {_first_line(exc)}") from None
    finally:
        con.close()


def for_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Cells as text can hold them: lists of values joined as in ``targets.csv``, structs as JSON;
    other nested columns are refused (``--json`` keeps them)."""
    out = []
    for name, dtype in frame.schema.items():
        if isinstance(dtype, pl.List) and not dtype.inner.is_nested():
            out.append(pl.col(name).cast(pl.List(pl.String)).list.join(S.REASONS_SEPARATOR))
        elif isinstance(dtype, pl.Struct):
            out.append(pl.col(name).struct.json_encode())
        elif dtype.is_nested():
            raise RiskpipeError(f"sql: column {name} is {dtype}: a table or CSV cell holds text; use --json")
    return frame.with_columns(out) if out else frame
