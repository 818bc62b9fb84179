"""Revision 0003 (issue 17: case work) upgrades a database at 0002 and keeps its data; the new
tables work at once. Runs on SQLite and PostgreSQL (``db_url`` in tests/conftest.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import create_engine, inspect, text

NEW_TABLES = {"cases", "case_notes", "case_audit", "watchlist", "saved_views", "access_audit", "rule_edits"}


def _at_0002(url: str) -> None:
    """A database migrated to 0002 only (what the release before case work left), with data."""
    from alembic import command

    from riskpipe.db import get_engine, write_transaction
    from riskpipe.migrate import _config

    with write_transaction(get_engine(url)) as conn:
        command.upgrade(_config(conn), "0002")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO labels VALUES ('S-1', :d, 'no_finding', 'random', NULL, NULL, :t, 'ana')"),
            {"d": date(2026, 1, 6), "t": datetime(2026, 1, 7, 9, tzinfo=UTC)},
        )
    engine.dispose()


def test_0002_database_upgrades_to_0003_and_keeps_its_data(db_url: str) -> None:
    from riskpipe.cases import CaseStore
    from riskpipe.db import dispose_engine
    from riskpipe.labels import LabelStore
    from riskpipe.migrate import current_revision, head_revision

    _at_0002(db_url)
    assert current_revision(db_url) == "0002"
    dispose_engine(db_url)
    engine = create_engine(db_url)
    assert not NEW_TABLES & set(inspect(engine).get_table_names())
    engine.dispose()

    store = CaseStore(db_url)  # first use: upgraded to head
    assert head_revision() == "0003" and current_revision(db_url) == "0003"
    engine = create_engine(db_url)
    assert NEW_TABLES <= set(inspect(engine).get_table_names())
    engine.dispose()
    assert LabelStore(db_url).get("S-1")["outcome"] == "no_finding"
    assert store.assign("S-1", "ana", "sue") is True
    assert store.case("S-1").assignee == "ana"
    assert store.case_audit("S-1")[0]["actor"] == "sue"
