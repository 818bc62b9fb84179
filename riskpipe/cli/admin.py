"""Administration: workbench ``users``, the database (``db upgrade``) and read-only ``sql``."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from riskpipe.cli.base import Role, console, settings, state
from riskpipe.errors import RiskpipeError

if TYPE_CHECKING:  # polars only inside commands: --help stays instant
    import polars as pl

users_app = typer.Typer(help="Workbench users: list, add, remove, set passwords.", no_args_is_help=True)


def _read_password(from_stdin: bool, prompt: str, command: str) -> str:
    """One line of standard input (scripts), or asked twice without echo."""
    import getpass

    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password = getpass.getpass(prompt)
    if getpass.getpass("Again: ") != password:
        raise RiskpipeError(f"{command}: the two passwords differ")
    return password


@users_app.command("add")
def users_add(
    username: Annotated[str, typer.Argument(help="Login name.")],
    role: Annotated[Role, typer.Option(help="analyst or supervisor.")] = Role.ANALYST,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input (scripts).")
    ] = False,
) -> None:
    """Add a workbench user (asks for the password)."""
    from riskpipe.users import UserStore

    db_url = settings().db_url  # a wrong home fails before the password is asked
    password = _read_password(password_stdin, "Password: ", "users add")
    user = UserStore(db_url).add(username, password, str(role))
    console.print(f"added {user.username} ({user.role})")


@users_app.command("passwd")
def users_passwd(
    username: Annotated[str, typer.Argument(help="Login name.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input (scripts).")
    ] = False,
) -> None:
    """Set a user's password (asks for it); the user's open workbench sessions end."""
    from riskpipe.users import UserStore

    db_url = settings().db_url  # a wrong home fails before the password is asked
    password = _read_password(password_stdin, "New password: ", "users passwd")
    UserStore(db_url).set_password(username, password)
    console.print(f"password of {username} changed; their workbench sessions have ended")


@users_app.command("list")
def users_list() -> None:
    """Workbench users: name, role, whether active, when created (never a password hash)."""
    from rich.table import Table

    from riskpipe.users import UserStore

    rows = UserStore(settings().db_url).list()
    if not rows:
        console.print("no users yet: add one with `riskpipe users add NAME --role supervisor`")
        return
    table = Table(title="workbench users")
    for col in ("name", "role", "active", "created (UTC)"):
        table.add_column(col)
    for r in rows:
        created = r["created_at"].strftime("%Y-%m-%d %H:%M:%S") if r["created_at"] is not None else ""
        table.add_row(r["username"], r["role"], "yes" if r["active"] else "no", created)
    console.print(table)


@users_app.command("remove")
def users_remove(
    username: Annotated[str, typer.Argument(help="Login name.")],
) -> None:
    """Remove a workbench user; their sessions end at once. The last active supervisor cannot be
    removed (nobody could manage users any more)."""
    from riskpipe.users import UserStore

    UserStore(settings().db_url).remove(username)
    console.print(f"removed {username}; their workbench sessions have ended", highlight=False)


db_app = typer.Typer(help="The labels and users database: schema migrations.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the labels and users database (database_url) to the newest schema.

    Opening the store does this by itself; run it after installing a new riskpipe to migrate at a
    time of your choosing (back the database up first). A database made before migrations is
    checked, stamped with the baseline and upgraded. A no-op on a current database."""
    from riskpipe.db import get_engine
    from riskpipe.migrate import safe_url, upgrade

    cfg = settings()
    result = upgrade(cfg.db_url)
    where = safe_url(get_engine(cfg.db_url))
    if not result.changed:
        console.print(f"database {where}: already at revision {result.after} (newest)", highlight=False)
        return
    before = result.before or "empty"
    if result.adopted:
        before = "a database from before migrations, stamped 0001"
    console.print(f"database {where}: upgraded from {before} to revision {result.after}", highlight=False)


def sql(
    query: Annotated[str, typer.Argument(help="One SELECT (or WITH ... SELECT, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN).")],
    as_csv: Annotated[bool, typer.Option("--csv", help="Every row as CSV on standard output.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Every row as a JSON array on standard output.")] = False,
    max_rows: Annotated[int, typer.Option("--max-rows", help="Rows shown in the table (not --csv/--json).")] = 100,
) -> None:
    """Ad-hoc, read-only SQL (DuckDB, in-process) over the raw store and the published outputs.

    Views: shipments (raw/shipments, with arrival_date), partner_exports (with declared_date),
    scores (every published day, with arrival_date), targets, labels (current exam outcomes, read
    from the labels store when the query names it). Paths in the query are relative to the home,
    e.g. read_parquet('scores/*/scores.parquet'). `riskpipe sql "SHOW TABLES"` lists the views;
    `riskpipe sql "DESCRIBE scores"` their columns. Statements that write are refused."""
    from riskpipe.sql import for_text, read_only_statement, run_query
    from riskpipe.store import Layout

    if as_csv and as_json:
        raise RiskpipeError("sql: give --csv or --json, not both")
    read_only_statement(query)  # refused before the home or the store is opened
    cfg = settings()

    def labels() -> pl.DataFrame:
        from riskpipe.labels import LabelStore

        return LabelStore(cfg.db_url, timezone=cfg.timezone).current()

    frame = run_query(Layout(state.home), query, labels_loader=labels)
    if as_json:
        sys.stdout.write(frame.write_json() + "\n")
        return
    if as_csv:
        from riskpipe.csvsafe import formula_safe

        sys.stdout.write(formula_safe(for_text(frame)).write_csv())
        return
    _print_sql_table(for_text(frame.head(max(max_rows, 0))), frame.height)


def _print_sql_table(shown: pl.DataFrame, total: int, cell_width: int = 40) -> None:
    """A result as a table in the terminal's width: long cells end in an ellipsis, and columns
    that do not fit are left out (and named in the caption) rather than squeezed to nothing."""
    import polars as pl
    from rich.table import Table

    cells = shown.select(pl.all().cast(pl.String))  # for_text made the lists text
    longest = cells.select(pl.all().fill_null("").str.len_chars().max()).row(0)
    widths = [min(max(len(name), int(n or 0)), cell_width) + 3 for name, n in zip(cells.columns, longest, strict=True)]
    fit: list[str] = []
    used = 1
    for name, width in zip(cells.columns, widths, strict=False):
        if fit and used + width > console.width:
            break
        fit.append(name)
        used += width
    rows = f"{total:,} row{'s' if total != 1 else ''}"
    if shown.height < total:
        rows += f", first {shown.height:,} shown"
    left_out = cells.width - len(fit)
    if left_out:
        rows += f"; {left_out} more column{'s' if left_out != 1 else ''} not shown ({', '.join(cells.columns[len(fit) :][:5])}{', ...' if left_out > 5 else ''})"
    if shown.height < total or left_out:
        rows += " - use --csv or --json for everything"
    table = Table(caption=rows)
    for name in fit:
        table.add_column(name, no_wrap=True, overflow="ellipsis", max_width=cell_width)
    for row in cells.select(fit).iter_rows():
        table.add_row(*["" if v is None else v for v in row])
    console.print(table, highlight=False)
