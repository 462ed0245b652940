"""the gateway appends audit events as the insert/select-only writer role (PostgreSQL)

Revision ID: 0010
Revises: 0009

Issue: "the database itself refuses UPDATE and DELETE on events (... on PostgreSQL also a role that can
only insert and select)". 0001 created ``grassroots_audit_writer`` but nothing used it: the gateway
appended as its login role. It now runs every append transaction's audit statements after
``SET LOCAL ROLE grassroots_audit_writer`` (audit.use_writer_role), which needs, here:

* the role that migrates (usually the owner, which the demo and tests also serve as) to be a member of
  the writer role; a separate gateway login role is granted it by the owner (README: PostgreSQL
  deployment);
* the writer role to reach the schema: ``USAGE`` on it unless PUBLIC (or the role) already has it, as on
  ``public``;
* its table privileges as 0001/0007 left them, restated so the role's whole reach is read in one place:
  SELECT and INSERT on events and refs, SELECT, INSERT and UPDATE on the head row (a lock and a counter,
  not a record; ``SELECT ... FOR UPDATE`` needs UPDATE), SELECT on prune anchors, nothing else. No
  sequences: seqs are computed under the head lock.

SQLite has no roles: nothing to do there (its triggers stay the guard).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ROLE = "grassroots_audit_writer"
# Frozen at this revision (a later change gets a new revision). Role memberships are cluster-wide: two
# databases of one cluster migrated at once (several deployments, or the test suite's workers) may grant
# the same membership together, and the second insert into pg_auth_members fails with unique_violation
# although the membership it asked for now exists; that is taken as done, as 0001 takes CREATE ROLE.
_POSTGRES_UP = [
    f"DO $$ BEGIN GRANT {_ROLE} TO CURRENT_USER; EXCEPTION WHEN unique_violation THEN NULL; END $$",
    "DO $$ BEGIN "
    f"IF NOT has_schema_privilege('{_ROLE}', current_schema(), 'USAGE') THEN "
    f"EXECUTE format('GRANT USAGE ON SCHEMA %I TO {_ROLE}', current_schema()); END IF; END $$",
    f"REVOKE ALL ON audit_events, audit_subject_refs, audit_head, audit_prune_anchors FROM {_ROLE}",
    f"GRANT SELECT, INSERT ON audit_events, audit_subject_refs TO {_ROLE}",
    f"GRANT SELECT, INSERT, UPDATE ON audit_head TO {_ROLE}",
    f"GRANT SELECT ON audit_prune_anchors TO {_ROLE}",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in _POSTGRES_UP:
            op.execute(statement)


def downgrade() -> None:
    # The code before 0010 never SETs ROLE: only the membership this revision gave is taken back. The
    # table privileges are 0001/0007's; a schema USAGE grant is left (it lets the role reach, not write).
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"REVOKE {_ROLE} FROM CURRENT_USER")
