"""grants keep why they were requested apart from why they were rejected or revoked

Revision ID: 0008
Revises: 0007

``policy_grants.reason`` was overwritten by a rejection's or a revocation's reason, so a grant's record lost
why it had been asked for. ``decision_reason`` now holds the closing reason. Rows closed before this revision
keep their closing reason in ``reason`` (the request's reason is in the audit log's ``grant.requested``
event); they are not rewritten.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("policy_grants") as batch:
        batch.add_column(sa.Column("decision_reason", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("policy_grants") as batch:
        batch.drop_column("decision_reason")
