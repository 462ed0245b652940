"""Migration 0013: complaints and incidents get their jurisdiction (``org``), taken for earlier cases from
the log's record of who registered them; a case whose registration is no longer in the log stays visible
to the national level only. Up and down, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import command
from sqlalchemy.orm import Session

from audit import AuditEvent, AuditLog, Outcome, get_complaint, list_complaints, list_incidents
from gateway.db import alembic_config, make_engine, upgrade

NOW = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
REF = "k1:" + "ab" * 32


def _columns(engine: sa.Engine, table: str) -> set[str]:
    with contextlib.closing(engine.connect()) as conn:
        return {c["name"] for c in sa.inspect(conn).get_columns(table)}


def _case_before_0013(conn: sa.Connection, n: int) -> None:
    """A complaint and its incident as the schema of 0012 held them (no ``org``)."""
    conn.execute(
        sa.text(
            "INSERT INTO audit_complaints (complaint_id, source, subject_ref, ticket, summary, received_by,"
            " received_at, due_at, incident_id) VALUES (:c, 'walk_in', :ref, NULL, '', 'u-s', :at, :due, :i)"
        ),
        {"c": f"C-{n}", "i": f"I-{n}", "ref": REF, "at": NOW, "due": NOW + timedelta(days=15)},
    )
    conn.execute(
        sa.text(
            "INSERT INTO audit_incidents (incident_id, complaint_id, status, opened_by, opened_at, due_at,"
            " tree_size, root_hash) VALUES (:i, :c, 'open', 'u-s', :at, :due, 0, :root)"
        ),
        {"c": f"C-{n}", "i": f"I-{n}", "at": NOW, "due": NOW + timedelta(days=30), "root": "00" * 32},
    )


def test_migration_0013_gives_earlier_cases_the_registering_office_and_goes_down(database: str) -> None:
    command.downgrade(alembic_config(database), "0012")
    engine = make_engine(database, pool_size=1)
    assert "org" not in _columns(engine, "audit_complaints") | _columns(engine, "audit_incidents")
    log = AuditLog(engine)
    # C-1 was registered by 城桥镇's office, C-2 by one whose event names no valid code; C-3's event is gone.
    for complaint_id, org in (("C-1", "310151101000"), ("C-2", "not-a-code")):
        log.append(
            AuditEvent(
                kind="supervision.complaint_registered",
                outcome=Outcome.OK,
                actor="u-s",
                actor_org=org,
                details={"complaint_id": complaint_id},
            )
        )
    with engine.begin() as conn:
        for n in (1, 2, 3):
            _case_before_0013(conn, n)
    engine.dispose()

    upgrade(database)
    engine = make_engine(database, pool_size=1)
    with contextlib.closing(engine.connect()) as conn:
        complaints = dict(conn.execute(sa.text("SELECT complaint_id, org FROM audit_complaints")).all())
        incidents = dict(conn.execute(sa.text("SELECT incident_id, org FROM audit_incidents")).all())
    assert complaints == {"C-1": "310151101000", "C-2": None, "C-3": None}
    assert incidents == {"I-1": "310151101000", "I-2": None, "I-3": None}
    with Session(engine) as session:
        # The township and the county above it see C-1; the cases of no known office, the national level only.
        for scope, seen in (("310151101", {"C-1"}), ("310151", {"C-1"}), ("", {"C-1", "C-2", "C-3"})):
            assert {c["complaint_id"] for c in list_complaints(session, scope=scope)} == seen
        assert {i["incident_id"] for i in list_incidents(session, NOW, scope="310151")} == {"I-1"}
        assert get_complaint(session, "C-1", scope="310151101")["org"] == "310151101000"
    engine.dispose()

    command.downgrade(alembic_config(database), "0012")
    engine = make_engine(database, pool_size=1)
    assert "org" not in _columns(engine, "audit_complaints") | _columns(engine, "audit_incidents")
    engine.dispose()
    upgrade(database)
