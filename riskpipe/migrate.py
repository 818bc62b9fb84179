"""Schema migrations of the labels and users store (Alembic; scripts in ``riskpipe/migrations``).

Opening a store (:class:`riskpipe.labels.LabelStore`, :class:`riskpipe.users.UserStore`,
:class:`riskpipe.users.LoginThrottle`) brings its database to the newest revision first, once per
process; ``riskpipe db upgrade`` does the same on request. An empty database is built by the
migrations from the baseline. A database made before migrations existed (``create_all``: no
``alembic_version`` table) is adopted: its tables are checked against what riskpipe created
(columns by name; an unknown shape is refused, nothing touched), any of the baseline's tables it
lacks are created (each store used to create only its own), it is stamped with the baseline and
upgraded. All of it runs in one transaction that holds the database's write lock (SQLite ``BEGIN
IMMEDIATE``, a PostgreSQL advisory lock), so two processes opening an old database at once
migrate it once, and a failed migration leaves it as it was.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from sqlalchemy import Connection, Engine, inspect

from riskpipe.db import get_engine, write_transaction
from riskpipe.errors import RiskpipeError

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
BASELINE = "0001"

#: the tables riskpipe made with ``create_all`` before migrations, with their columns. ``users``
#: may also have ``session_generation`` and ``login_throttle`` may exist (main before migrations);
#: revision 0002 completes what is missing.
LEGACY_TABLES: dict[str, frozenset[str]] = {
    "labels": frozenset(
        {"shipment_id", "exam_date", "outcome", "exam_reason", "examiner", "notes", "recorded_at", "recorded_by"}
    ),
    "label_audit": frozenset({"id", "shipment_id", "changed_at", "actor", "action", "before", "after"}),
    "users": frozenset({"username", "password_hash", "role", "active", "created_at"}),
    "login_throttle": frozenset({"key", "failures", "blocked_until", "last_at"}),
}
LEGACY_OPTIONAL_COLUMNS: dict[str, frozenset[str]] = {"users": frozenset({"session_generation"})}
_PG_LOCK_KEY = 0x7269736B70697065 & 0x7FFFFFFFFFFFFFFF  # "riskpipe": one advisory lock for migrations

_current: weakref.WeakSet[Engine] = weakref.WeakSet()  # engines known to be at head
_lock = threading.Lock()


@dataclass(frozen=True)
class UpgradeResult:
    before: str | None  # revision found (None: an empty database)
    after: str
    adopted: bool  # a database from before migrations, stamped with the baseline first

    @property
    def changed(self) -> bool:
        return self.before != self.after


@cache
def _script():
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS_DIR))


def head_revision() -> str:
    return _script().get_current_head()


def _config(conn: Connection):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = conn
    return cfg


def safe_url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def current_revision(db_url: str) -> str | None:
    """The revision the database is at (None: no ``alembic_version``), read without a lock."""
    from alembic.migration import MigrationContext

    with get_engine(db_url).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def ensure_current(db_url: str) -> Engine:
    """The engine of ``db_url``, its database at head (upgraded now if needed; checked once per
    engine and process)."""
    engine = get_engine(db_url)
    if engine in _current:
        return engine
    with _lock:
        if engine not in _current:
            if current_revision(db_url) != head_revision():
                upgrade(db_url)
            _current.add(engine)
    return engine


def upgrade(db_url: str) -> UpgradeResult:
    """Bring the database to head (see the module docstring); a no-op when it is there."""
    from alembic import command
    from alembic.migration import MigrationContext

    engine = get_engine(db_url)
    head = head_revision()
    with write_transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")
        ctx = MigrationContext.configure(conn)
        before = ctx.get_current_revision()
        adopted = False
        if before is None:
            adopted = _adopt(conn, ctx, safe_url(engine))
            after_stamp = BASELINE if adopted else None
        else:
            after_stamp = before
            known = {s.revision for s in _script().walk_revisions()}
            if before not in known:
                raise RiskpipeError(
                    f"database {safe_url(engine)}: schema revision {before!r} is not one this riskpipe knows "
                    f"(newest here: {head}); it was migrated by a newer riskpipe"
                )
        if after_stamp != head:
            command.upgrade(_config(conn), "head")
    _current.add(engine)
    return UpgradeResult(before, head, adopted)


def _adopt(conn: Connection, ctx, url: str) -> bool:
    """Check and stamp a database made by ``create_all`` (True), or say it is empty of riskpipe
    tables (False: the migrations build it from nothing)."""
    insp = inspect(conn)
    present = set(insp.get_table_names()) & set(LEGACY_TABLES)
    if not present:
        return False
    for table in sorted(present):
        columns = {c["name"] for c in insp.get_columns(table)}
        expected = LEGACY_TABLES[table]
        missing = sorted(expected - columns)
        extra = sorted(columns - expected - LEGACY_OPTIONAL_COLUMNS.get(table, frozenset()))
        if missing or extra:
            detail = "; ".join(
                p
                for p in (
                    f"missing {', '.join(missing)}" if missing else "",
                    f"unexpected {', '.join(extra)}" if extra else "",
                )
                if p
            )
            raise RiskpipeError(
                f"database {url}: table {table} does not have the columns riskpipe created ({detail}); "
                "not migrating it (restore a riskpipe database or point database_url elsewhere)"
            )
    from alembic.operations import Operations

    baseline = _script().get_revision(BASELINE).module
    with Operations.context(ctx):
        for table, create in baseline.CREATE.items():
            if table not in present:
                create()
    ctx.stamp(_script(), BASELINE)
    return True
