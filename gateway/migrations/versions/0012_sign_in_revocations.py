"""sign-in revocations: signed-out tokens and users whose sessions an administrator revoked

Revision ID: 0012
Revises: 0011

Access tokens are verified without calling the identity provider, so a sign-out or an administrator's
cut-off must be remembered by the gateway until the tokens it covers expire (gateway.auth.sessions):

* ``auth_revoked_tokens``: one row per signed-out token, keyed by ``jti:<jti>`` or ``sha256:<digest>``
  (never the token), kept until the token's expiry (indexed for the pruning);
* ``auth_user_revocations``: one row per user, "every token issued before ``revoked_before``", with who
  revoked and why, kept for the longest token lifetime (indexed likewise).

Every process loads both at start and again when the ``sessions`` row of ``policy_versions`` moves. Plain
tables and indexes: the same DDL on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "auth_revoked_tokens",
        sa.Column("token_key", sa.String(length=256), nullable=False),
        sa.Column("user_id", sa.String(length=256), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_by", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("token_key", name=op.f("pk_auth_revoked_tokens")),
    )
    with op.batch_alter_table("auth_revoked_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_auth_revoked_tokens_expires_at"), ["expires_at"], unique=False)
    op.create_table(
        "auth_user_revocations",
        sa.Column("user_id", sa.String(length=256), nullable=False),
        sa.Column("revoked_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_by", sa.String(length=256), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_auth_user_revocations")),
    )
    with op.batch_alter_table("auth_user_revocations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_auth_user_revocations_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("auth_user_revocations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auth_user_revocations_expires_at"))
    op.drop_table("auth_user_revocations")
    with op.batch_alter_table("auth_revoked_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auth_revoked_tokens_expires_at"))
    op.drop_table("auth_revoked_tokens")
