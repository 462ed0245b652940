"""Audit tables and the database-side guards that make them append-only.

``audit_events`` holds one row per event: the RFC 8785 body (authoritative), its hash-chain link
(``prev_hash`` → ``entry_hash``) and its RFC 6962 leaf hash. The other columns are copies of body fields
kept for supervisor queries; verification checks them against the body, so editing a copy is detected
like editing the body. ``audit_subject_refs`` indexes resident refs so that answering a complaint
(PIPL Art. 45/50: "who read my data?") is one indexed lookup, not a scan; a refused or failed read of one
record carries no resident ref (nothing was served), only the keyed ref of the record id asked for, so an
expression index over that one body field (:data:`requested_record_ref_index`) finds such attempts at a
person's records, also without a scan; another (:data:`event_source_index`) finds the events a client
address caused. ``audit_head`` is the single row every appender locks to assign the
next gapless sequence number.

PIPL Art. 56 wants processing records kept (3 years) and trustworthy: the database refuses UPDATE,
DELETE and TRUNCATE on the event tables (:func:`install_immutability_sql`) and, on PostgreSQL, the
application may run as a role that can only INSERT and SELECT them (:func:`postgres_writer_role_sql`).
These guards stop mistakes and casual edits; the hash chain, Merkle tree and signed checkpoints catch
whoever gets past them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    and_,
    literal_column,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

WRITER_ROLE: Final = "grassroots_audit_writer"
HEAD_ID: Final = 1


class AuditBase(DeclarativeBase):
    pass


class AuditEventRow(AuditBase):
    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    kind: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(256))
    actor_org: Mapped[str | None] = mapped_column(String(128))
    scenario: Mapped[str | None] = mapped_column(String(128))
    dataset: Mapped[str | None] = mapped_column(String(128))
    body: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    entry_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))

    __table_args__ = (
        # Supervisor queries filter by one of these and then by time; seq keeps results in log order.
        Index("ix_audit_events_actor_org_time", "actor_org", "occurred_at"),
        Index("ix_audit_events_actor_time", "actor", "occurred_at"),
        Index("ix_audit_events_scenario_time", "scenario", "occurred_at"),
        Index("ix_audit_events_dataset_time", "dataset", "occurred_at"),
        Index("ix_audit_events_occurred_at", "occurred_at"),
        Index("ix_audit_events_outcome_time", "outcome", "occurred_at"),
    )


class requested_record_ref(FunctionElement[str]):  # noqa: N801 -- an SQL function, named like one
    """``details.requested_record_ref`` of a stored body: the keyed ref of the record id a refused (or
    failed) single-record read asked for, NULL when the body has none.

    Rendered per dialect, and identically in :data:`requested_record_ref_index` and in the queries that use
    it, as an expression index is used only for the very expression it was built on. It never raises, so
    it can never fail an append: on SQLite a body that is not JSON gives NULL (``json_valid``), and on
    PostgreSQL the ref is matched in the text rather than cast to ``jsonb`` (which refuses a body holding
    ``\\u0000``, and would refuse a whole group-committed batch with it). In an RFC 8785 body the key
    appears only in ``details`` and a quote inside a string value is always escaped, so the first
    ``"requested_record_ref":"…"`` in the text is that field.
    """

    type = String()
    inherit_cache = True
    name = "requested_record_ref"


def _sqlite_body_member(element: FunctionElement[str], path: str, compiler: SQLCompiler, **kw: Any) -> str:
    """``path`` of the body ``element`` is applied to, NULL for a body that is not JSON (never an error)."""
    body = compiler.process(element.clauses, **kw)
    return f"CASE WHEN json_valid({body}) THEN json_extract({body}, '{path}') END"


@compiles(requested_record_ref, "sqlite")
def _requested_record_ref_sqlite(element: requested_record_ref, compiler: SQLCompiler, **kw: Any) -> str:
    return _sqlite_body_member(element, "$.details.requested_record_ref", compiler, **kw)


@compiles(requested_record_ref, "postgresql")
def _requested_record_ref_postgresql(element: requested_record_ref, compiler: SQLCompiler, **kw: Any) -> str:
    body = compiler.process(element.clauses, **kw)
    return f'substring({body}, \'"requested_record_ref":"([^"]*)"\')'


class event_source(FunctionElement[str]):  # noqa: N801 -- an SQL function, named like one
    """The top-level ``source`` of a stored body (where the request came from, see
    :class:`audit.events.AuditEvent`), NULL when the body has none (events no request caused, and those
    written before sources were recorded).

    Read from the body, not from a column: the event table is append-only, so a column could not be filled
    in for the events already written; :data:`event_source_index` is built on this very expression (an
    expression index is used only for the expression it was built on). Never raises, as
    :class:`requested_record_ref`: on SQLite a body that is not JSON gives NULL; on PostgreSQL the text is
    taken apart, since a ``jsonb`` cast refuses a body holding ``\\u0000``.

    On PostgreSQL without a regular expression, which cost 40 us an event on insert into the index (13
    times the text functions below, on the append bench's bodies). In RFC 8785 text a quote inside a string
    is escaped, so ``"source":"`` occurs only as a key whose value is a string; a body's ``details`` may
    hold a ``source`` of its own (a complaint's channel), but ``details`` comes first in key order, so when
    the event has a ``source`` its key is the last one in the text. ``subject_refs`` always follows it
    directly, and is itself the last ``"subject_refs":[`` (refs, a trace token and ``v`` come after it).
    So the text after the last ``"source":"`` is the event's source exactly when it reads
    ``<value>","subject_refs":[`` and then the text after the last ``"subject_refs":[``; any other
    ``source`` is followed by other members.
    """

    type = String()
    inherit_cache = True
    name = "event_source"


@compiles(event_source, "sqlite")
def _event_source_sqlite(element: event_source, compiler: SQLCompiler, **kw: Any) -> str:
    return _sqlite_body_member(element, "$.source", compiler, **kw)


@compiles(event_source, "postgresql")
def _event_source_postgresql(element: event_source, compiler: SQLCompiler, **kw: Any) -> str:
    body = compiler.process(element.clauses, **kw)
    after = f"""split_part({body}, '"source":"', -1)"""
    value = f"""split_part({after}, '"', 1)"""
    tail = f"""split_part({body}, '"subject_refs":[', -1)"""
    # Parenthesised: PostgreSQL's CREATE INDEX takes an expression that is not a function call only so.
    return f"""(CASE WHEN {after} = {value} || '","subject_refs":[' || {tail} THEN {value} END)"""


#: Every event by where its request came from, in log order within one source: ``--source`` (alone or with
#: other filters) newest first, ``LIMIT n`` and ``seq < before`` for the next page, is one range of this
#: index read backwards, not a scan of the log. ``seq`` is in the key because it is not SQLite's rowid (a
#: ``BIGINT`` primary key is a separate index there) and a PostgreSQL index orders only by its keys. A full
#: index, not a partial one: the supervisor asking about an address wants what it was served as much as
#: what it was refused, and measured on the durable append bench it costs little (README, "Where a
#: request came from"). Events without a source index as NULL, which ``source = X`` never matches.
event_source_index: Final = Index(
    "ix_audit_events_source_seq",
    event_source(AuditEventRow.__table__.c.body),
    AuditEventRow.__table__.c.seq,
)


#: The events that can carry a ``requested_record_ref``: single-record reads that were not served. Literal
#: values, not bind parameters, so that a query repeating this condition is seen (by SQLite and PostgreSQL
#: alike) to fall within the partial index; only these rows pay for the index's JSON extraction on insert.
UNSERVED_RECORD_READ: Final = and_(
    AuditEventRow.__table__.c.kind == literal_column("'data.read'"),
    AuditEventRow.__table__.c.outcome != literal_column("'allowed'"),
)

requested_record_ref_index: Final = Index(
    "ix_audit_events_requested_record_ref",
    requested_record_ref(AuditEventRow.__table__.c.body),
    sqlite_where=UNSERVED_RECORD_READ,
    postgresql_where=UNSERVED_RECORD_READ,
)


class AuditSubjectRefRow(AuditBase):
    __tablename__ = "audit_subject_refs"

    # The primary key (subject_ref, seq) is the complaint-lookup index: all events touching one resident.
    subject_ref: Mapped[str] = mapped_column(String(96), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, ForeignKey("audit_events.seq"), primary_key=True)

    __table_args__ = (Index("ix_audit_subject_refs_seq", "seq"),)


class AuditHeadRow(AuditBase):
    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    entry_hash: Mapped[bytes] = mapped_column(LargeBinary(32))

    __table_args__ = (CheckConstraint(f"id = {HEAD_ID}", name="ck_audit_head_single_row"),)


# -- supervision: complaints, incidents, archives -----------------------------------------------------
# Ordinary (mutable) case-management tables: an incident moves through its states, and every move is
# also an audit event, so the history is in the append-only log even though these rows change. No
# column holds plain personal data: the complainant is present only as a keyed ref (``subject_ref``), and
# free text is refused when it looks like an ID or mobile number (PIPL Art. 51; see audit.complaints).


class ComplaintRow(AuditBase):
    __tablename__ = "audit_complaints"

    complaint_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    subject_ref: Mapped[str] = mapped_column(String(96), index=True)
    ticket: Mapped[str | None] = mapped_column(String(64))
    summary: Mapped[str] = mapped_column(Text)
    received_by: Mapped[str] = mapped_column(String(256))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    incident_id: Mapped[str | None] = mapped_column(String(40))
    # The jurisdiction the case belongs to: the division code of the office that registered it. Only
    # supervisors whose organisation covers it (a prefix) see or handle the case; NULL (a case from before
    # migration 0013 whose registering office is no longer known): the national level only.
    org: Mapped[str | None] = mapped_column(String(12), index=True)
    # The answer deadline runs into a year whose holiday schedule was not known when it was set: a
    # conservative estimate (audit.complaints.period_end; migration 0014; NULL: set before it).
    due_estimated: Mapped[bool | None] = mapped_column(Boolean)


class IncidentRow(AuditBase):
    __tablename__ = "audit_incidents"

    incident_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    complaint_id: Mapped[str | None] = mapped_column(String(40), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    opened_by: Mapped[str] = mapped_column(String(256))
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    assignee: Mapped[str | None] = mapped_column(String(256))
    disposition: Mapped[str | None] = mapped_column(String(32))
    closed_by: Mapped[str | None] = mapped_column(String(256))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The Merkle tree the attached inclusion proofs are against (RFC 9162 §2.1.3).
    tree_size: Mapped[int] = mapped_column(BigInteger)
    root_hash: Mapped[str] = mapped_column(String(64))
    # JSON list of the datasets whose departmental system did not answer the record-id lookup when the
    # incident was opened ({dataset, system, reason, message, message_en}); NULL: none (migration 0011).
    evidence_incomplete: Mapped[str | None] = mapped_column(Text)
    # The complaint's jurisdiction, kept with the incident so incident lists filter without a join
    # (migration 0013; NULL: the national level only).
    org: Mapped[str | None] = mapped_column(String(12), index=True)
    # As the complaint's, for the closing deadline (migration 0014).
    due_estimated: Mapped[bool | None] = mapped_column(Boolean)
    # 督办: the office one level above the holder that the overdue case was escalated to, and when
    # (migration 0014; NULL: not escalated). Cleared when the case is reopened (its clocks start afresh).
    escalated_to: Mapped[str | None] = mapped_column(String(12), index=True)
    escalated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # 督办 climbs one level at a time: how many levels above the holder ``escalated_to`` is (1: the office
    # just above), and by when that office must see the case closed before it goes one level further
    # (migration 0016; both NULL: not escalated; the period NULL too at the national level: none is above).
    escalation_level: Mapped[int | None] = mapped_column(Integer)
    escalation_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class IncidentEvidenceRow(AuditBase):
    __tablename__ = "audit_incident_evidence"

    incident_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("audit_incidents.incident_id"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    leaf_hash: Mapped[str] = mapped_column(String(64))
    proof: Mapped[str] = mapped_column(Text)  # JSON list of hex sibling hashes, bottom-up


class IncidentStepRow(AuditBase):
    __tablename__ = "audit_incident_steps"

    step_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("audit_incidents.incident_id"), index=True
    )
    action: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(256))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    note: Mapped[str | None] = mapped_column(Text)


class ArchiveRow(AuditBase):
    __tablename__ = "audit_archives"

    archive_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    month: Mapped[str] = mapped_column(String(7), index=True)
    first_seq: Mapped[int] = mapped_column(BigInteger)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    range_root: Mapped[str] = mapped_column(String(64))
    file_name: Mapped[str] = mapped_column(String(256))
    file_sha256: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PruneAnchorRow(AuditBase):
    """Signed prefix anchors (see :mod:`audit.anchor`); insert-only like the events they stand for."""

    __tablename__ = "audit_prune_anchors"

    pruned_through: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    document: Mapped[str] = mapped_column(Text)  # the signed RFC 8785 anchor document
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


metadata = AuditBase.metadata
audit_events = cast(Table, AuditEventRow.__table__)
audit_subject_refs = cast(Table, AuditSubjectRefRow.__table__)
audit_head = cast(Table, AuditHeadRow.__table__)
audit_complaints = cast(Table, ComplaintRow.__table__)
audit_incidents = cast(Table, IncidentRow.__table__)
audit_incident_evidence = cast(Table, IncidentEvidenceRow.__table__)
audit_incident_steps = cast(Table, IncidentStepRow.__table__)
audit_archives = cast(Table, ArchiveRow.__table__)
audit_prune_anchors = cast(Table, PruneAnchorRow.__table__)

_PROTECTED: Final = ("audit_events", "audit_subject_refs")
_ANCHORS: Final = "audit_prune_anchors"
_REFUSAL: Final = "is append-only (PIPL Art. 56 processing record)"
# The one way rows leave the event tables: seqs at or below an anchored prefix (audit.prune). Anchors are
# insert-only, and inserting one needs the database owner (the writer role may only read them).
_ANCHORED: Final = f"(SELECT COALESCE(MAX(pruned_through), 0) FROM {_ANCHORS})"  # noqa: S608 -- constants


def install_immutability_sql(dialect_name: str) -> list[str]:
    """DDL making the event tables refuse UPDATE, DELETE (and TRUNCATE on PostgreSQL) except pruning.

    DELETE is allowed only for rows whose ``seq`` is at or below the largest ``pruned_through`` in
    ``audit_prune_anchors``, which itself refuses UPDATE and DELETE: pruning needs a signed anchor row first
    (:mod:`audit.prune`), and verification needs that anchor to match the remaining log.

    Safe to run on a fresh database after the tables exist, and safe to run again (``IF NOT EXISTS`` /
    ``CREATE OR REPLACE`` / ``DROP ... IF EXISTS``). Returns one statement per list item, for Alembic's
    ``op.execute`` or ``Connection.exec_driver_sql`` (no ``%`` or ``:name`` that either would rewrite).
    """
    if dialect_name == "sqlite":
        statements = []
        for table in _PROTECTED:
            statements += [
                f"DROP TRIGGER IF EXISTS {table}_no_update",
                f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} {_REFUSAL}'); END",
                f"DROP TRIGGER IF EXISTS {table}_no_delete",
                f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
                f"WHEN OLD.seq > {_ANCHORED} "
                f"BEGIN SELECT RAISE(ABORT, '{table} {_REFUSAL}; only an anchored prefix may be pruned'); "
                "END",
            ]
        for action in ("update", "delete"):
            statements.append(
                f"CREATE TRIGGER IF NOT EXISTS {_ANCHORS}_no_{action} BEFORE {action.upper()} ON {_ANCHORS} "
                f"BEGIN SELECT RAISE(ABORT, '{_ANCHORS} {_REFUSAL}'); END"
            )
        return statements
    if dialect_name == "postgresql":
        statements = [
            "CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ "
            # No '%' placeholders: the statement must pass unchanged through exec_driver_sql and text().
            "BEGIN RAISE EXCEPTION USING MESSAGE = TG_TABLE_NAME || "
            "' is append-only (PIPL Art. 56 processing record)', ERRCODE = 'insufficient_privilege'; END $$",
            "CREATE OR REPLACE FUNCTION audit_refuse_unanchored_delete() RETURNS trigger LANGUAGE plpgsql "
            f"AS $$ BEGIN IF OLD.seq <= {_ANCHORED} THEN RETURN OLD; END IF; "
            "RAISE EXCEPTION USING MESSAGE = TG_TABLE_NAME || "
            "' is append-only (PIPL Art. 56 processing record); only an anchored prefix may be pruned', "
            "ERRCODE = 'insufficient_privilege'; END $$",
        ]
        for table in _PROTECTED:
            statements += [
                f"DROP TRIGGER IF EXISTS {table}_no_update_delete ON {table}",
                f"DROP TRIGGER IF EXISTS {table}_no_update ON {table}",
                f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()",
                f"DROP TRIGGER IF EXISTS {table}_no_delete ON {table}",
                f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION audit_refuse_unanchored_delete()",
            ]
        for table in (*_PROTECTED, _ANCHORS):
            statements += [
                f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}",
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()",
            ]
        statements += [
            f"DROP TRIGGER IF EXISTS {_ANCHORS}_no_update_delete ON {_ANCHORS}",
            f"CREATE TRIGGER {_ANCHORS}_no_update_delete BEFORE UPDATE OR DELETE ON {_ANCHORS} "
            "FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()",
        ]
        return statements
    raise ValueError(f"no immutability triggers for dialect {dialect_name!r}")


def drop_immutability_sql(dialect_name: str) -> list[str]:
    """The inverse of :func:`install_immutability_sql`, for an Alembic downgrade."""
    if dialect_name == "sqlite":
        return [
            f"DROP TRIGGER IF EXISTS {table}_no_{action}"
            for table in (*_PROTECTED, _ANCHORS)
            for action in ("update", "delete")
        ]
    if dialect_name == "postgresql":
        statements = [
            f"DROP TRIGGER IF EXISTS {table}_{name} ON {table}"
            for table in _PROTECTED
            for name in ("no_update", "no_delete", "no_truncate")
        ]
        statements += [
            f"DROP TRIGGER IF EXISTS {_ANCHORS}_{name} ON {_ANCHORS}"
            for name in ("no_update_delete", "no_truncate")
        ]
        return [
            *statements,
            "DROP FUNCTION IF EXISTS audit_refuse_unanchored_delete()",
            "DROP FUNCTION IF EXISTS audit_refuse_change()",
        ]
    raise ValueError(f"no immutability triggers for dialect {dialect_name!r}")


def postgres_writer_role_sql(role: str = WRITER_ROLE) -> list[str]:
    """A PostgreSQL role that may only INSERT and SELECT audit events (and move the head row).

    The gateway connects as (or ``SET ROLE``s to) this role for appending, so even a bug or an injected
    statement in the application cannot rewrite history. Roles are cluster-wide: creation tolerates a
    concurrent creator. ``NOLOGIN``: grant it to the login role the gateway uses.
    """
    if not role.replace("_", "").isalnum():
        raise ValueError("role name must be alphanumeric with underscores")
    return [
        "DO $$ BEGIN "  # noqa: S608 -- role is validated above; DDL cannot take bind parameters
        f"IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN CREATE ROLE {role} NOLOGIN; "
        "END IF; "
        "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$",
        f"REVOKE ALL ON audit_events, audit_subject_refs, audit_head FROM {role}",
        f"GRANT SELECT, INSERT ON audit_events, audit_subject_refs TO {role}",
        # Anchors are read (verification, proofs) but only the owner writes one (audit.prune): a writer
        # that could insert an anchor could make the delete triggers let it prune.
        f"DO $$ BEGIN IF to_regclass('{_ANCHORS}') IS NOT NULL THEN "
        f"REVOKE ALL ON {_ANCHORS} FROM {role}; GRANT SELECT ON {_ANCHORS} TO {role}; END IF; END $$",
        # The head row is a lock and a counter, not a record: the writer moves it forward.
        f"GRANT SELECT, INSERT, UPDATE ON audit_head TO {role}",
    ]
