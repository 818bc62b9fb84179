"""Session generations, login throttle, timezone-aware timestamps.

- ``users.session_generation``: the generation a session cookie must carry (logout, password
  change and deactivation end sessions). Before migrations the code added it with an ``ALTER
  TABLE`` when it opened an older table, so a database of that time may have it already; every
  user without one gets a fresh one.
- ``login_throttle``: failed-login counters per keyed hash (created by ``create_all`` before
  migrations, so it may exist already).
- ``recorded_at``, ``changed_at``, ``created_at`` become timezone-aware: ``timestamp with time
  zone`` on PostgreSQL (the stored naive values were UTC); on SQLite the ISO text gets its
  ``+00:00`` offset (:class:`riskpipe.db.UTCDateTime` writes and reads it so).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TIMESTAMPS = [("labels", "recorded_at"), ("label_audit", "changed_at"), ("users", "created_at")]


def upgrade() -> None:
    bind = op.get_bind()
    insp = sa.inspect(bind)
    if "session_generation" not in {c["name"] for c in insp.get_columns("users")}:
        op.add_column("users", sa.Column("session_generation", sa.String(32), nullable=False, server_default=""))
    users = sa.table("users", sa.column("username", sa.String), sa.column("session_generation", sa.String))
    blank = sa.select(users.c.username).where(users.c.session_generation == "")
    for name in bind.execute(blank).scalars().all():  # a few rows: the workbench's users
        bind.execute(sa.update(users).where(users.c.username == name).values(session_generation=secrets.token_hex(8)))

    if not insp.has_table("login_throttle"):
        op.create_table(
            "login_throttle",
            sa.Column("key", sa.String(64), primary_key=True),
            sa.Column("failures", sa.Integer(), nullable=False),
            sa.Column("blocked_until", sa.Float(), nullable=False),
            sa.Column("last_at", sa.Float(), nullable=False),
        )
        op.create_index("ix_login_throttle_last_at", "login_throttle", ["last_at"])

    for table, column in TIMESTAMPS:
        if bind.dialect.name == "sqlite":
            # the type stays DATETIME; the text gets the offset it always meant
            op.execute(f"UPDATE {table} SET {column} = {column} || '+00:00' WHERE {column} NOT LIKE '%+00:00'")
        else:
            using = f"{column} AT TIME ZONE 'UTC'" if bind.dialect.name == "postgresql" else None
            op.alter_column(table, column, type_=sa.DateTime(timezone=True), existing_type=sa.DateTime(),
                            existing_nullable=False, postgresql_using=using)


def downgrade() -> None:
    raise NotImplementedError("riskpipe store migrations go forward only: restore a backup to go back")
