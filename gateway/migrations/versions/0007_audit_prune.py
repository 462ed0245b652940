"""audit retention pruning behind a signed prefix anchor

Revision ID: 0007
Revises: 0006

``audit_prune_anchors`` holds the signed prefix anchors (audit.anchor) and is insert-only. The delete
triggers on ``audit_events`` and ``audit_subject_refs`` now let a row go only when its seq is at or below
the largest anchored ``pruned_through`` (PIPL Art. 19 / GB/T 35273-2020 §6.1: records are not kept past
their retention period, PIPL Art. 56's three years); UPDATE and TRUNCATE stay refused. On PostgreSQL the
insert/select writer role may read anchors but never write one, and still has no DELETE.

Frozen copies of audit.tables.install_immutability_sql at this revision (a later change gets a new
revision). Downgrade refuses once anything was pruned: the old triggers cannot describe a pruned log.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ANCHORED = "(SELECT COALESCE(MAX(pruned_through), 0) FROM audit_prune_anchors)"
_REFUSAL = "is append-only (PIPL Art. 56 processing record)"
_TABLES = ("audit_events", "audit_subject_refs")

_SQLITE_UP = [
    statement
    for table in _TABLES
    for statement in (
        f"DROP TRIGGER IF EXISTS {table}_no_delete",
        f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} WHEN OLD.seq > {_ANCHORED} "
        f"BEGIN SELECT RAISE(ABORT, '{table} {_REFUSAL}; only an anchored prefix may be pruned'); END",
    )
] + [
    f"CREATE TRIGGER IF NOT EXISTS audit_prune_anchors_no_{action} BEFORE {action.upper()} "
    f"ON audit_prune_anchors BEGIN SELECT RAISE(ABORT, 'audit_prune_anchors {_REFUSAL}'); END"
    for action in ("update", "delete")
]
_SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS audit_prune_anchors_no_update",
    "DROP TRIGGER IF EXISTS audit_prune_anchors_no_delete",
] + [
    statement
    for table in _TABLES
    for statement in (
        f"DROP TRIGGER IF EXISTS {table}_no_delete",
        f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
        f"BEGIN SELECT RAISE(ABORT, '{table} {_REFUSAL}'); END",
    )
]

_POSTGRES_UP = [
    "CREATE OR REPLACE FUNCTION audit_refuse_unanchored_delete() RETURNS trigger LANGUAGE plpgsql AS $$ "
    f"BEGIN IF OLD.seq <= {_ANCHORED} THEN RETURN OLD; END IF; "
    f"RAISE EXCEPTION USING MESSAGE = TG_TABLE_NAME || ' {_REFUSAL}; only an anchored prefix may be pruned', "
    "ERRCODE = 'insufficient_privilege'; END $$",
    *[
        statement
        for table in _TABLES
        for statement in (
            f"DROP TRIGGER IF EXISTS {table}_no_update_delete ON {table}",
            f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()",
            f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION audit_refuse_unanchored_delete()",
        )
    ],
    "CREATE TRIGGER audit_prune_anchors_no_update_delete BEFORE UPDATE OR DELETE ON audit_prune_anchors "
    "FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()",
    "CREATE TRIGGER audit_prune_anchors_no_truncate BEFORE TRUNCATE ON audit_prune_anchors "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()",
    "REVOKE ALL ON audit_prune_anchors FROM grassroots_audit_writer",
    "GRANT SELECT ON audit_prune_anchors TO grassroots_audit_writer",
]
_POSTGRES_DOWN = [
    *[
        statement
        for table in _TABLES
        for statement in (
            f"DROP TRIGGER IF EXISTS {table}_no_update ON {table}",
            f"DROP TRIGGER IF EXISTS {table}_no_delete ON {table}",
            f"CREATE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()",
        )
    ],
    "DROP FUNCTION IF EXISTS audit_refuse_unanchored_delete()",
]


def _run(sqlite: list[str], postgres: list[str]) -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        statements = sqlite
    elif dialect == "postgresql":
        statements = postgres
    else:
        raise RuntimeError(f"unsupported database dialect {dialect!r}")
    for statement in statements:
        op.execute(statement)


def upgrade() -> None:
    op.create_table(
        "audit_prune_anchors",
        sa.Column("pruned_through", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pruned_through"),
    )
    _run(_SQLITE_UP, _POSTGRES_UP)


def downgrade() -> None:
    pruned = op.get_bind().execute(sa.text("SELECT COUNT(*) FROM audit_prune_anchors")).scalar_one()
    if pruned:
        raise RuntimeError(
            "audit events were pruned behind a signed anchor; downgrading below 0007 would make the log "
            "unverifiable. Restore from a backup taken before pruning instead."
        )
    _run(_SQLITE_DOWN, _POSTGRES_DOWN)
    op.drop_table("audit_prune_anchors")
