"""Case work: cases (assignment, status), case notes and their audit, watchlists, saved views,
the audit of views and exports of personal data, and the history of rule edits made in the
workbench (issue 17). New tables only: nothing existing changes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("shipment_id", sa.String(64), primary_key=True),
        sa.Column("assignee", sa.String(64)),
        sa.Column("status", sa.String(16), nullable=False),
        _ts("updated_at"),
        sa.Column("updated_by", sa.String(100), nullable=False),
    )
    op.create_index("ix_cases_assignee", "cases", ["assignee"])
    op.create_table(
        "case_notes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("shipment_id", sa.String(64), nullable=False),
        _ts("created_at"),
        sa.Column("author", sa.String(100), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
    )
    op.create_index("ix_case_notes_shipment_id", "case_notes", ["shipment_id"])
    op.create_table(
        "case_audit",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("shipment_id", sa.String(64), nullable=False),
        _ts("changed_at"),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("before", sa.Text()),
        sa.Column("after", sa.Text(), nullable=False),
    )
    op.create_index("ix_case_audit_shipment_id", "case_audit", ["shipment_id"])
    op.create_table(
        "watchlist",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("value", sa.String(300), nullable=False),
        sa.Column("note", sa.String(500)),
        sa.Column("added_by", sa.String(100), nullable=False),
        _ts("added_at"),
        sa.Column("removed_by", sa.String(100)),
        _ts("removed_at", nullable=True),
    )
    op.create_index("ix_watchlist_kind_value", "watchlist", ["kind", "value"])
    op.create_table(
        "saved_views",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        _ts("created_at"),
        sa.UniqueConstraint("username", "name", name="uq_saved_views_user_name"),
    )
    op.create_table(
        "access_audit",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _ts("at"),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("target", sa.String(300), nullable=False),
        sa.Column("detail", sa.String(300)),
    )
    op.create_index("ix_access_audit_at", "access_audit", ["at"])
    op.create_table(
        "rule_edits",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _ts("at"),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("path", sa.String(1000), nullable=False),
        sa.Column("before_sha", sa.String(64)),
        sa.Column("after_sha", sa.String(64), nullable=False),
        sa.Column("diff", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    raise NotImplementedError("riskpipe store migrations go forward only: restore a backup to go back")
