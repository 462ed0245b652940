"""complaints find refused attempts at a person's records: index the record ref a refused read asked for

Revision ID: 0009
Revises: 0008

A single-record read that is refused (or fails) serves nothing, so its event names no resident: only
``details.requested_record_ref``, the keyed HMAC of the record id asked for. A complaint learns which
record refs are the complainant's from the reads that served them, then needs every unserved read that
asked for one of them; this partial expression index answers that without a scan. Only unserved
single-record reads are in it (the partial condition), so the rest of the log pays nothing on insert.
The index holds refs only, never a record id.

Frozen copies of what ``audit.tables.requested_record_ref_index`` renders at this revision.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NAME = "ix_audit_events_requested_record_ref"
_WHERE = "WHERE kind = 'data.read' AND outcome != 'allowed'"
# Neither expression can raise (a body that is not JSON, or holds \u0000, gives NULL or its ref): an
# index that could refuse an insert would make the audit log, and so the data path, fail closed.
_EXPRESSION = {
    "sqlite": "CASE WHEN json_valid(body) THEN json_extract(body, '$.details.requested_record_ref') END",
    "postgresql": """substring(body, '"requested_record_ref":"([^"]*)"')""",
}


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect not in _EXPRESSION:
        raise RuntimeError(f"unsupported database dialect {dialect!r}")
    op.execute(f"CREATE INDEX {_NAME} ON audit_events ({_EXPRESSION[dialect]}) {_WHERE}")


def downgrade() -> None:
    op.execute(f"DROP INDEX IF EXISTS {_NAME}")
