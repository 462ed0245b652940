"""supervision complaints incidents retention

Revision ID: 0003
Revises: 0002

Complaint and incident case files, their evidence (events + RFC 9162 inclusion proofs) and steps, and
the index of monthly archives. Ordinary mutable tables: every change to them is also an audit event.
No column holds plain personal data (complainants only as keyed refs).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_complaints",
        sa.Column("complaint_id", sa.String(length=40), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("subject_ref", sa.String(length=96), nullable=False),
        sa.Column("ticket", sa.String(length=64), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("received_by", sa.String(length=256), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("incident_id", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("complaint_id"),
    )
    op.create_index("ix_audit_complaints_subject_ref", "audit_complaints", ["subject_ref"], unique=False)
    op.create_table(
        "audit_incidents",
        sa.Column("incident_id", sa.String(length=40), nullable=False),
        sa.Column("complaint_id", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("opened_by", sa.String(length=256), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("assignee", sa.String(length=256), nullable=True),
        sa.Column("disposition", sa.String(length=32), nullable=True),
        sa.Column("closed_by", sa.String(length=256), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("incident_id"),
    )
    op.create_index("ix_audit_incidents_complaint_id", "audit_incidents", ["complaint_id"], unique=False)
    op.create_index("ix_audit_incidents_status", "audit_incidents", ["status"], unique=False)
    op.create_index("ix_audit_incidents_due_at", "audit_incidents", ["due_at"], unique=False)
    op.create_table(
        "audit_incident_evidence",
        sa.Column("incident_id", sa.String(length=40), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("leaf_hash", sa.String(length=64), nullable=False),
        sa.Column("proof", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["incident_id"], ["audit_incidents.incident_id"]),
        sa.PrimaryKeyConstraint("incident_id", "seq"),
    )
    op.create_table(
        "audit_incident_steps",
        sa.Column("step_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.String(length=40), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["incident_id"], ["audit_incidents.incident_id"]),
        sa.PrimaryKeyConstraint("step_id"),
    )
    op.create_index(
        "ix_audit_incident_steps_incident_id", "audit_incident_steps", ["incident_id"], unique=False
    )
    op.create_table(
        "audit_archives",
        sa.Column("archive_id", sa.String(length=64), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("range_root", sa.String(length=64), nullable=False),
        sa.Column("file_name", sa.String(length=256), nullable=False),
        sa.Column("file_sha256", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("archive_id"),
    )
    op.create_index("ix_audit_archives_month", "audit_archives", ["month"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_audit_archives_month", table_name="audit_archives")
    op.drop_table("audit_archives")
    op.drop_index("ix_audit_incident_steps_incident_id", table_name="audit_incident_steps")
    op.drop_table("audit_incident_steps")
    op.drop_table("audit_incident_evidence")
    op.drop_index("ix_audit_incidents_due_at", table_name="audit_incidents")
    op.drop_index("ix_audit_incidents_status", table_name="audit_incidents")
    op.drop_index("ix_audit_incidents_complaint_id", table_name="audit_incidents")
    op.drop_table("audit_incidents")
    op.drop_index("ix_audit_complaints_subject_ref", table_name="audit_complaints")
    op.drop_table("audit_complaints")
