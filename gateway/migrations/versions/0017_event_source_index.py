"""supervisors find events by where their request came from: index the source every event's body records

Revision ID: 0017
Revises: 0016

``grassroots supervise events --source ADDR`` read the top-level ``source`` of every event's body in its
time range: without ``--since``/``--until``, a scan of the whole log, hundreds of millions of events at
national scale. This expression index over that one body member, with ``seq`` after it, answers a source
newest first (and each next page, ``seq < before``) as one range of the index read backwards. A full index
(every event, not only refused ones): measured on the durable append bench it costs no throughput that
shows on SQLite and a few per cent on PostgreSQL, whose expression takes the body apart with
``split_part`` (``audit.tables.event_source``), not with the regular expression the queries used before,
which cost 40 us an event.

The events table is append-only (its triggers refuse UPDATE), so no column could be filled in for the
events already written: the index reads them from their bodies, old and new alike. On PostgreSQL it is
built ``CONCURRENTLY``, so a gateway still writing to the log while this runs is not held up for the
length of the build (a plain CREATE INDEX would block every append, and so every data request, until the
whole log has been read); a build that was interrupted leaves an invalid index behind, which running the
upgrade again drops and builds anew. On SQLite the build holds the write lock throughout, as every
migration does there.

Frozen copies of what ``audit.tables.event_source_index`` renders at this revision.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NAME = "ix_audit_events_source_seq"
# Neither expression can raise (a body that is not JSON, or holds \u0000, gives NULL or its source): an
# index that could refuse an insert would make the audit log, and so the data path, fail closed.
_EXPRESSION = {
    "sqlite": "CASE WHEN json_valid(body) THEN json_extract(body, '$.source') END",
    "postgresql": (
        """(CASE WHEN split_part(body, '"source":"', -1) = """
        """split_part(split_part(body, '"source":"', -1), '"', 1) || '","subject_refs":[' || """
        """split_part(body, '"subject_refs":[', -1) """
        """THEN split_part(split_part(body, '"source":"', -1), '"', 1) END)"""
    ),
}


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect not in _EXPRESSION:
        raise RuntimeError(f"unsupported database dialect {dialect!r}")
    if dialect == "postgresql":
        # CONCURRENTLY cannot run inside a transaction: Alembic commits what came before and runs these
        # on their own. An invalid index left by an interrupted build is dropped first.
        with op.get_context().autocommit_block():
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {_NAME}")
            op.execute(f"CREATE INDEX CONCURRENTLY {_NAME} ON audit_events ({_EXPRESSION[dialect]}, seq)")
    else:
        op.execute(f"CREATE INDEX {_NAME} ON audit_events ({_EXPRESSION[dialect]}, seq)")


def downgrade() -> None:
    op.execute(f"DROP INDEX IF EXISTS {_NAME}")
