"""masking catalog, tags and rules management

Revision ID: 0002
Revises: 0001

Stewards' change proposals to the field catalog, the dynamic tags and the masking rules (the packaged
TOML files stay the baseline; approved proposals apply on top in ``applied_seq`` order), and the version
row every gateway process polls to swap in the effective catalog and rules.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "masking_proposals",
        sa.Column("proposal_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("proposed_by", sa.String(length=128), nullable=False),
        sa.Column("proposer_department", sa.String(length=64), nullable=True),
        sa.Column("proposed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(length=128), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision_note", sa.Text(), nullable=True),
        sa.Column("applied_seq", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("proposal_id"),
    )
    with op.batch_alter_table("masking_proposals", schema=None) as batch_op:
        batch_op.create_index("ix_masking_proposals_status", ["status", "proposed_at"], unique=False)
        batch_op.create_index("ix_masking_proposals_applied_seq", ["applied_seq"], unique=False)
    op.create_table(
        "masking_versions",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("masking_versions")
    with op.batch_alter_table("masking_proposals", schema=None) as batch_op:
        batch_op.drop_index("ix_masking_proposals_applied_seq")
        batch_op.drop_index("ix_masking_proposals_status")
    op.drop_table("masking_proposals")
