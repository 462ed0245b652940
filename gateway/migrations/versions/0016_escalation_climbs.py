"""督办 climbs one level at a time: ``audit_incidents.escalation_level`` and ``escalation_due_at``

Revision ID: 0016
Revises: 0015

An overdue case was escalated once, to the office above the one holding it, and if that office let it run
overdue too it sat there for ever. Now the office it is escalated to has a period of its own
(``GRASSROOTS_ESCALATION_DUE_DAYS``, audit.complaints.Deadlines.escalation_due), and a case still open and
overdue after it goes one level further up, to the national level at most: ``escalation_level`` is how
many levels above the holder ``escalated_to`` is (1: the office just above), ``escalation_due_at`` the end
of that office's period (NULL at the national level: nothing is above it).

Cases escalated before this revision were all escalated one level: they get level 1 and a period of 15
calendar days from their escalation, ending at 24:00 Beijing time (the setting's default; a last day that
is a rest day is not moved to the next working day, so the period is never longer than the setting's
default would make it, counted either way). Frozen here as it is at this revision.

Plain nullable columns: the same ALTER TABLE on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta, timezone

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BEIJING = timezone(timedelta(hours=8))
_DAYS = 15
_NATIONAL = "000000000000"

_incidents = sa.table(
    "audit_incidents",
    sa.column("incident_id", sa.String()),
    sa.column("escalated_to", sa.String()),
    sa.column("escalated_at", sa.DateTime(timezone=True)),
    sa.column("escalation_level", sa.Integer()),
    sa.column("escalation_due_at", sa.DateTime(timezone=True)),
)


def _period_end(escalated: datetime) -> datetime:
    aware = escalated if escalated.tzinfo is not None else escalated.replace(tzinfo=UTC)
    last = aware.astimezone(_BEIJING).date() + timedelta(days=_DAYS)
    return (datetime.combine(last + timedelta(days=1), time(), _BEIJING) - timedelta(seconds=1)).astimezone(
        UTC
    )


def upgrade() -> None:
    op.add_column("audit_incidents", sa.Column("escalation_level", sa.Integer(), nullable=True))
    op.add_column(
        "audit_incidents", sa.Column("escalation_due_at", sa.DateTime(timezone=True), nullable=True)
    )
    bind = op.get_bind()
    c = _incidents.c
    escalated = bind.execute(
        sa.select(c.incident_id, c.escalated_to, c.escalated_at).where(c.escalated_to.is_not(None))
    ).all()
    for incident_id, to, at in escalated:
        due = None if to == _NATIONAL or at is None else _period_end(at)
        bind.execute(
            sa.update(_incidents)
            .where(c.incident_id == incident_id)
            .values(escalation_level=1, escalation_due_at=due)
        )


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite 3.35 and later too): a batch operation would copy the table and drop the
    # old one, which the incident steps' and evidence's foreign keys refuse once a case has any.
    op.drop_column("audit_incidents", "escalation_due_at")
    op.drop_column("audit_incidents", "escalation_level")
