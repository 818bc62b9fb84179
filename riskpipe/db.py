"""SQLAlchemy engine factory for the small transactional stores (exam outcomes, users).

SQLite by default (a file under the data home), any SQLAlchemy URL (e.g. PostgreSQL) by config.
SQLite needs care to serialise writers: pysqlite's own transaction handling is switched off and
every transaction starts with an explicit ``BEGIN``; a connection run with the execution option
``write=True`` starts with ``BEGIN IMMEDIATE`` so two writers queue on the database lock instead
of both reading a stale row and one failing at commit.

The schema is made and changed by migrations (:mod:`riskpipe.migrate`, scripts in
``riskpipe/migrations``); timestamps are :class:`UTCDateTime` (aware UTC on every database).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Connection, DateTime, Engine, create_engine, event
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator, TypeEngine

from riskpipe.errors import RiskpipeError
from riskpipe.store import PRIVATE_FILE, set_mode

T = TypeVar("T")

_ENGINES: dict[str, Engine] = {}
_LOCK = threading.Lock()

#: seconds a SQLite writer waits for another writer's lock before giving up.
SQLITE_BUSY_TIMEOUT_S = 30.0


#: how :class:`UTCDateTime` writes a timestamp in SQLite: ISO 8601 text in UTC with its offset
SQLITE_UTC_FORMAT = "%(year)04d-%(month)02d-%(day)02d %(hour)02d:%(minute)02d:%(second)02d.%(microsecond)06d+00:00"


class UTCDateTime(TypeDecorator):
    """A timezone-aware timestamp on every database: ``timestamp with time zone`` on PostgreSQL;
    on SQLite (no timestamp type) ISO text in UTC with an explicit ``+00:00``, so the file says
    what it means. Takes aware datetimes only (a naive one is a bug: which zone?); gives aware UTC
    datetimes back, reading a value without offset (written before migration 0002) as UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[datetime]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sqlite.DATETIME(storage_format=SQLITE_UTC_FORMAT))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("a timestamp for the store must be timezone-aware (UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_text(value: datetime) -> str:
    """``value`` as :class:`UTCDateTime` stores it in SQLite (for the bulk insert path, which
    bypasses SQLAlchemy's types)."""
    v = value.astimezone(UTC)
    return SQLITE_UTC_FORMAT % {
        "year": v.year,
        "month": v.month,
        "day": v.day,
        "hour": v.hour,
        "minute": v.minute,
        "second": v.second,
        "microsecond": v.microsecond,
    }


def is_sqlite(engine_or_url: Engine | str) -> bool:
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else make_url(engine_or_url)
    return url.get_backend_name() == "sqlite"


def get_engine(db_url: str) -> Engine:
    """One shared engine per URL (engines are thread-safe and hold the connection pool)."""
    with _LOCK:
        engine = _ENGINES.get(db_url)
        if engine is None:
            engine = _make_engine(db_url)
            _ENGINES[db_url] = engine
        return engine


def dispose_engine(db_url: str) -> None:
    """Close the pooled connections of ``db_url`` (tests, forked processes)."""
    with _LOCK:
        engine = _ENGINES.pop(db_url, None)
    if engine is not None:
        engine.dispose()


def _private_sqlite_file(path: Path) -> None:
    """The database holds password hashes and exam outcomes: create it 0600 before SQLite opens
    it, whatever the umask (SQLite gives its -wal and -shm files the database file's mode), and
    tighten one made by an older version."""
    if str(path).startswith("file:"):  # a URI filename: SQLite's to open
        return
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE))
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if p.exists():
            set_mode(p, PRIVATE_FILE)


def _make_engine(db_url: str) -> Engine:
    try:
        url = make_url(db_url)
    except Exception as exc:  # sqlalchemy raises several kinds
        raise RiskpipeError(f"database_url: {db_url!r} is not a database URL ({exc})") from None
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)

    database = url.database or ""
    memory = database in ("", ":memory:") or database.startswith("file::memory:")
    kwargs: dict = {"connect_args": {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S}}
    if memory:
        kwargs["poolclass"] = StaticPool
    else:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        _private_sqlite_file(Path(database))
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        if not memory:
            cur.execute("PRAGMA journal_mode = WAL")  # readers never block the writer
            cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that holds the write lock from its first statement (SQLite) and commits on
    success. On other databases: an ordinary transaction (use ``SELECT ... FOR UPDATE``)."""
    with engine.connect().execution_options(write=True) as conn:
        with conn.begin():
            yield conn


def with_retry(fn: Callable[[], T], attempts: int = 8) -> T:
    """Run a whole transaction again when it lost a race (lock timeout, duplicate insert,
    serialisation failure): the retry reads the winner's committed state."""
    delay = 0.05
    for attempt in range(attempts):
        try:
            return fn()
        except (OperationalError, IntegrityError, DBAPIError) as exc:
            if attempt == attempts - 1 or not _retryable(exc):
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
    raise AssertionError("unreachable")


def _retryable(exc: DBAPIError) -> bool:
    if isinstance(exc, IntegrityError):
        return True
    text = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
    return any(k in text for k in ("locked", "busy", "serializ", "deadlock", "could not obtain lock"))
