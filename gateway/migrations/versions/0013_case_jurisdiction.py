"""complaints and incidents belong to a jurisdiction: the registering office's organisation

Revision ID: 0013
Revises: 0012

Least privilege (GB/T 35273-2020 §7.1): a supervisor sees and handles the complaints and incidents of
their own organisation subtree only (audit.complaints). Each case gets ``org``, the division code of the
office that registered the complaint, on ``audit_complaints`` and ``audit_incidents`` (indexed: the case
lists filter on it by prefix).

Cases from before this revision: ``org`` is taken from the log, where the complaint's registration was
recorded with the registering supervisor's organisation (the ``supervision.complaint_registered`` event's
``actor_org``; its body names the complaint). A case whose event is gone (pruned and archived) or names no
valid division code keeps NULL, which only the national level (scope ``""``) sees: never guessed wider.
The incident takes its complaint's. Plain nullable columns and Python-side reads: the same on SQLite and
PostgreSQL; the audit-event tables are only read (they refuse UPDATE).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from grassroots_common.divisions import parse_division_code

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _registering_orgs(conn: sa.Connection) -> dict[str, str]:
    """complaint id -> the registering office's 12-digit division code, from the log."""
    rows = conn.execute(
        sa.text("SELECT actor_org, body FROM audit_events WHERE kind = :kind ORDER BY seq"),
        {"kind": "supervision.complaint_registered"},
    )
    orgs: dict[str, str] = {}
    for actor_org, body in rows:
        try:
            complaint_id = json.loads(body)["details"]["complaint_id"]
            orgs[str(complaint_id)] = parse_division_code(str(actor_org))[0]
        except (ValueError, KeyError, TypeError):
            continue  # no valid code recorded: the case stays national-only
    return orgs


def upgrade() -> None:
    op.add_column("audit_complaints", sa.Column("org", sa.String(length=12), nullable=True))
    op.add_column("audit_incidents", sa.Column("org", sa.String(length=12), nullable=True))
    op.create_index(op.f("ix_audit_complaints_org"), "audit_complaints", ["org"])
    op.create_index(op.f("ix_audit_incidents_org"), "audit_incidents", ["org"])
    conn = op.get_bind()
    orgs = _registering_orgs(conn)
    cases = conn.execute(sa.text("SELECT complaint_id, incident_id FROM audit_complaints")).all()
    for complaint_id, incident_id in cases:
        org = orgs.get(str(complaint_id))
        if org is None:
            continue
        conn.execute(
            sa.text("UPDATE audit_complaints SET org = :org WHERE complaint_id = :id"),
            {"org": org, "id": complaint_id},
        )
        if incident_id is not None:
            conn.execute(
                sa.text("UPDATE audit_incidents SET org = :org WHERE incident_id = :id"),
                {"org": org, "id": incident_id},
            )


def downgrade() -> None:
    op.drop_index(op.f("ix_audit_incidents_org"), table_name="audit_incidents")
    op.drop_index(op.f("ix_audit_complaints_org"), table_name="audit_complaints")
    with op.batch_alter_table("audit_incidents") as batch:
        batch.drop_column("org")
    with op.batch_alter_table("audit_complaints") as batch:
        batch.drop_column("org")
