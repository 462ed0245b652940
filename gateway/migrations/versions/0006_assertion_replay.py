"""admission client-assertion replay store

Revision ID: 0006
Revises: 0005

The ``jti`` of every accepted ``private_key_jwt`` client assertion (RFC 7523 §3 item 7), keyed by client id
and jti so a second use conflicts in the database whichever gateway process it reaches; rows are kept until
the assertion expires (indexed for the purge).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "admission_assertion_jtis",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("jti", sa.String(length=256), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "jti", name=op.f("pk_admission_assertion_jtis")),
    )
    with op.batch_alter_table("admission_assertion_jtis", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_admission_assertion_jtis_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("admission_assertion_jtis", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_admission_assertion_jtis_expires_at"))
    op.drop_table("admission_assertion_jtis")
