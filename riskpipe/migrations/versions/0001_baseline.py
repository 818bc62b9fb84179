"""Baseline: the store as the previous release created it (``create_all``, commit 912606a).

Exam outcomes with their audit trail, and workbench users. Timestamps were naive UTC. A database
made by that release (or by a later one before migrations) has no ``alembic_version`` table: it
is checked against these tables and stamped with this revision (:mod:`riskpipe.migrate`).

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def create_labels() -> None:
    op.create_table(
        "labels",
        sa.Column("shipment_id", sa.String(64), primary_key=True),
        sa.Column("exam_date", sa.Date(), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("exam_reason", sa.String(16), nullable=False),
        sa.Column("examiner", sa.String(200)),
        sa.Column("notes", sa.Text()),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.Column("recorded_by", sa.String(100), nullable=False),
    )
    op.create_index("ix_labels_exam_date", "labels", ["exam_date"])


def create_label_audit() -> None:
    op.create_table(
        "label_audit",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("shipment_id", sa.String(64), nullable=False),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("before", sa.Text()),
        sa.Column("after", sa.Text(), nullable=False),
    )
    op.create_index("ix_label_audit_shipment_id", "label_audit", ["shipment_id"])


def create_users() -> None:
    op.create_table(
        "users",
        sa.Column("username", sa.String(64), primary_key=True),
        sa.Column("password_hash", sa.String(300), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )


#: table -> the function creating it as the release did (also used to complete a release's
#: database that has only some of them: each store created only its own tables)
CREATE = {"labels": create_labels, "label_audit": create_label_audit, "users": create_users}


def upgrade() -> None:
    for create in CREATE.values():
        create()


def downgrade() -> None:
    raise NotImplementedError("riskpipe store migrations go forward only: restore a backup to go back")
