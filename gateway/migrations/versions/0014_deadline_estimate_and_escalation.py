"""a case says when its deadline is an estimate, and when it was escalated (督办) to the office above

Revision ID: 0014
Revises: 0013

Deadlines are counted on the State Council's holiday schedule (audit.workdays). A deadline that runs into
a year the schedule does not know yet is a conservative estimate (audit.complaints.period_end):
``due_estimated`` on ``audit_complaints`` and ``audit_incidents`` says so, as it was when the deadline was
set (NULL for cases from before this revision: their deadlines were counted in plain calendar days and
are not recomputed; the date told to the complainant stands).

An overdue incident is escalated to the office one level above the one holding it (the periodic
supervision task): ``escalated_to`` (that office's division code, indexed: the office's 督办 list
filters on it) and ``escalated_at``; NULL: not escalated.

Plain nullable columns: the same ALTER TABLE on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("audit_complaints", sa.Column("due_estimated", sa.Boolean(), nullable=True))
    op.add_column("audit_incidents", sa.Column("due_estimated", sa.Boolean(), nullable=True))
    op.add_column("audit_incidents", sa.Column("escalated_to", sa.String(length=12), nullable=True))
    op.add_column("audit_incidents", sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(op.f("ix_audit_incidents_escalated_to"), "audit_incidents", ["escalated_to"])


def downgrade() -> None:
    op.drop_index(op.f("ix_audit_incidents_escalated_to"), table_name="audit_incidents")
    with op.batch_alter_table("audit_incidents") as batch:
        batch.drop_column("escalated_at")
        batch.drop_column("escalated_to")
        batch.drop_column("due_estimated")
    with op.batch_alter_table("audit_complaints") as batch:
        batch.drop_column("due_estimated")
