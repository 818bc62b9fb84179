"""Alembic environment of the labels and users store.

riskpipe runs the migrations itself (:func:`riskpipe.migrate.upgrade`, on first use of a store
and by ``riskpipe db upgrade``) and hands its open connection in ``config.attributes
["connection"]``, inside a transaction that holds the database's write lock. Run by hand
(``alembic -x url=postgresql+psycopg://... upgrade head`` with a config whose
``script_location`` is this folder), it connects to ``-x url=`` or ``sqlalchemy.url`` itself.
Offline SQL scripts (``--sql``) are not supported: a migration looks at the database it runs on.
"""

from __future__ import annotations

from alembic import context

from riskpipe.tables import store_metadata

config = context.config
target_metadata = store_metadata()


def _run(connection) -> None:  # noqa: ANN001 - a SQLAlchemy Connection
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from riskpipe.db import get_engine

    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("riskpipe migrations: give the database with -x url=... (or sqlalchemy.url)")
    with get_engine(url).connect() as conn:
        _run(conn)
        conn.commit()


if context.is_offline_mode():
    raise SystemExit("riskpipe migrations: offline (--sql) mode is not supported; run them on the database")
run_migrations_online()
