"""an incident says when its evidence is incomplete (a departmental system did not answer the lookup)

Revision ID: 0011
Revises: 0010

A complaint's evidence includes the refused attempts at the person's records, found through the
departmental systems' record-id lookup (gateway.evidence). When a system does not answer, the incident is
still opened with what the log holds, and says which dataset and system did not answer and why:
``evidence_incomplete``, a JSON list of ``{dataset, system, reason, message, message_en}`` (codes and
fixed sentences, never personal data). NULL: no dataset was reported missing (incidents opened before
this revision never asked the departmental systems at all).

A plain nullable column: the same ALTER TABLE on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("audit_incidents", sa.Column("evidence_incomplete", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_incidents") as batch:
        batch.drop_column("evidence_incomplete")
