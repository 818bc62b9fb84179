"""The labels and users store migrates (issue 15, point 4): a database made by an earlier riskpipe
(``create_all``, no ``alembic_version``) keeps its data and is brought to today's schema when it is
opened; ``riskpipe db upgrade`` does the same and is a no-op on a current database; timestamps come
back timezone-aware. Each test runs on SQLite and on PostgreSQL (``db_url`` in tests/conftest.py)."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    inspect,
    text,
)

from riskpipe.errors import RiskpipeError

OLD_HASH_PASSWORD = "correct-horse-1"
RECORDED = datetime(2026, 1, 7, 9, 30, 15, 123456)  # naive UTC, as the old code stored it
CREATED = datetime(2026, 1, 2, 8, 0, 0)


def release_metadata(with_main_changes: bool) -> MetaData:
    """The tables as ``create_all`` made them: the previous release (912606a: labels, label_audit,
    users) or, ``with_main_changes``, main before migrations (6a2c533: users.session_generation
    added in code, login_throttle). Copied from those commits, not imported: the point is to
    build the OLD schema."""
    md = MetaData()
    Table(
        "labels",
        md,
        Column("shipment_id", String(64), primary_key=True),
        Column("exam_date", Date, nullable=False, index=True),
        Column("outcome", String(32), nullable=False),
        Column("exam_reason", String(16), nullable=False),
        Column("examiner", String(200)),
        Column("notes", Text),
        Column("recorded_at", DateTime, nullable=False),
        Column("recorded_by", String(100), nullable=False),
    )
    Table(
        "label_audit",
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("shipment_id", String(64), nullable=False, index=True),
        Column("changed_at", DateTime, nullable=False),
        Column("actor", String(100), nullable=False),
        Column("action", String(8), nullable=False),
        Column("before", Text),
        Column("after", Text, nullable=False),
    )
    users = [
        Column("username", String(64), primary_key=True),
        Column("password_hash", String(300), nullable=False),
        Column("role", String(16), nullable=False),
        Column("active", Boolean, nullable=False, default=True),
        Column("created_at", DateTime, nullable=False),
    ]
    if with_main_changes:
        users.append(Column("session_generation", String(32), nullable=False, default=""))
        Table(
            "login_throttle",
            md,
            Column("key", String(64), primary_key=True),
            Column("failures", Integer, nullable=False),
            Column("blocked_until", Float, nullable=False),
            Column("last_at", Float, nullable=False, index=True),
        )
    Table("users", md, *users)
    return md


def make_old_database(url: str, with_main_changes: bool) -> None:
    """An old riskpipe's database with one user and one exam outcome (and its audit row)."""
    from riskpipe.users import hash_password

    engine = create_engine(url)
    release_metadata(with_main_changes).create_all(engine)
    user = {"u": "olduser", "h": hash_password(OLD_HASH_PASSWORD), "c": CREATED}
    with engine.begin() as conn:
        if with_main_changes:
            conn.execute(text("INSERT INTO users VALUES (:u, :h, 'supervisor', true, :c, '')"), user)
        else:
            conn.execute(text("INSERT INTO users VALUES (:u, :h, 'supervisor', true, :c)"), user)
        conn.execute(
            text("INSERT INTO labels VALUES ('S-OLD', :d, 'fentanyl', 'targeted', 'E7', 'bag 2', :t, 'import:a.csv')"),
            {"d": date(2026, 1, 6), "t": RECORDED},
        )
        conn.execute(
            text(
                "INSERT INTO label_audit (shipment_id, changed_at, actor, action, before, after) "
                "VALUES ('S-OLD', :t, 'import:a.csv', 'insert', NULL, '{}')"
            ),
            {"t": RECORDED},
        )
    engine.dispose()


def _tables(url: str) -> dict[str, set[str]]:
    engine = create_engine(url)
    try:
        insp = inspect(engine)
        return {t: {c["name"] for c in insp.get_columns(t)} for t in insp.get_table_names()}
    finally:
        engine.dispose()


def _revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    finally:
        engine.dispose()


@pytest.mark.parametrize("old", ["release", "main"])
def test_an_old_database_is_migrated_on_first_use_and_keeps_its_data(db_url: str, old: str) -> None:
    from riskpipe.labels import RECORDED_AT, LabelStore
    from riskpipe.migrate import head_revision
    from riskpipe.users import LoginThrottle, UserStore

    make_old_database(db_url, with_main_changes=old == "main")
    assert "alembic_version" not in _tables(db_url)

    labels = LabelStore(db_url)  # first use: adopted (stamped baseline) and upgraded to head
    tables = _tables(db_url)
    assert _revision(db_url) == head_revision()
    assert "session_generation" in tables["users"] and "login_throttle" in tables

    # the data is kept; the old naive timestamps are read as the UTC instants they were
    row = labels.get("S-OLD")
    assert row is not None and row["outcome"] == "fentanyl" and row["examiner"] == "E7"
    assert row[RECORDED_AT] == RECORDED.replace(tzinfo=UTC)
    assert labels.history("S-OLD")[0]["changed_at"] == RECORDED.replace(tzinfo=UTC)
    assert labels.current()[RECORDED_AT].to_list() == [RECORDED.replace(tzinfo=UTC)]

    users = UserStore(db_url)
    user = users.authenticate("olduser", OLD_HASH_PASSWORD)
    assert user is not None and user.role == "supervisor"
    assert user.generation  # every existing user got a session generation
    created = users.list()[0]["created_at"]
    assert created == CREATED.replace(tzinfo=UTC) and created.tzinfo is not None

    # the new table works, and new writes go on next to the old rows
    assert not LoginThrottle(db_url, b"k").attempt("olduser", "127.0.0.1").refused
    labels.record_one("S-OLD", date(2026, 1, 6), "precursor", "targeted", actor="bob")
    assert [h["action"] for h in labels.history("S-OLD")] == ["insert", "update"]


def test_a_fresh_database_gets_the_schema_the_code_uses(db_url: str) -> None:
    """Migrations from nothing give exactly the tables, columns and types of the code's table
    definitions (alembic's own comparison finds nothing to change)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from riskpipe import cases, labels, users
    from riskpipe.db import get_engine
    from riskpipe.migrate import upgrade
    from riskpipe.tables import store_metadata

    upgrade(db_url)
    engine = get_engine(db_url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, store_metadata())
    assert diff == []
    assert set(store_metadata().tables) == {*labels.metadata.tables, *users.metadata.tables, *cases.metadata.tables}
    if engine.dialect.name == "postgresql":
        insp = inspect(engine)
        kinds = {c["name"]: c["type"] for c in insp.get_columns("labels")}
        assert getattr(kinds["recorded_at"], "timezone", False) is True  # timestamptz


def test_timestamps_are_timezone_aware_and_stored_as_utc(db_url: str) -> None:
    from riskpipe.labels import RECORDED_AT, LabelStore
    from riskpipe.users import UserStore

    store = LabelStore(db_url)
    store.record_one("A", date(2026, 1, 5), "fentanyl", "targeted", actor="a")
    got = store.get("A")[RECORDED_AT]
    assert got.tzinfo is not None and got.utcoffset().total_seconds() == 0
    assert abs((datetime.now(UTC) - got).total_seconds()) < 120
    UserStore(db_url).add("ana", "long-enough-1")
    created = UserStore(db_url).list()[0]["created_at"]
    assert created.tzinfo is not None and abs((datetime.now(UTC) - created).total_seconds()) < 120
    engine = create_engine(db_url)
    with engine.connect() as conn:
        raw = conn.execute(text("SELECT recorded_at FROM labels")).scalar_one()
    engine.dispose()
    if db_url.startswith("sqlite"):
        assert isinstance(raw, str) and raw.endswith("+00:00")  # ISO text with its offset
    else:
        assert raw.tzinfo is not None


def test_an_unknown_table_shape_is_refused_and_left_alone(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'odd.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE users (username VARCHAR(64) PRIMARY KEY, email VARCHAR(100))"))
    engine.dispose()
    from riskpipe.users import UserStore

    with pytest.raises(RiskpipeError, match=r"table users .*email"):
        UserStore(url)
    assert set(_tables(url)) == {"users"}  # nothing created, nothing stamped


def test_db_upgrade_command_upgrades_then_is_a_no_op(tmp_path, monkeypatch, capsys) -> None:
    from riskpipe import cli
    from riskpipe.cli import admin, base
    from riskpipe.config import load_settings
    from riskpipe.migrate import head_revision

    home = tmp_path / "home"
    home.mkdir()
    url = f"sqlite:///{(home / 'riskpipe.db').resolve()}"
    make_old_database(url, with_main_changes=False)
    monkeypatch.setattr(admin, "settings", lambda **o: load_settings(base.state.home, o))  # no Prefect env

    def run(*args: str) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", ["riskpipe", "--home", str(home), *args])
        with pytest.raises(SystemExit) as done:
            cli.main()
        out = capsys.readouterr()
        return done.value.code or 0, out.out + out.err

    code, out = run("db", "upgrade")
    assert code == 0 and "upgraded" in out and head_revision() in out
    assert _revision(url) == head_revision()
    before = _tables(url)
    code, out = run("db", "upgrade")
    assert code == 0 and "already at" in out
    assert _tables(url) == before and _revision(url) == head_revision()
