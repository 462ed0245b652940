"""Migration 0016: incidents get the level they are escalated to and the period of the office they are
with (``escalation_level``, ``escalation_due_at``). Cases escalated before it were escalated one level and
get 15 calendar days from their escalation, so the periodic task takes them one level further once that
office lets it run out (before, they stayed with it for ever); a case escalated to the national level gets
no period. Up and down, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import command
from sqlalchemy.orm import Session

from audit import Deadlines, escalate_incident, get_incident, incidents_to_escalate
from gateway.db import alembic_config, make_engine, upgrade

OPENED = datetime(2026, 10, 20, 2, 0, tzinfo=UTC)
#: 10:00 Beijing time on Tuesday 24 November 2026: 15 days on is Wednesday 9 December.
ESCALATED = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)


def _case_before_0016(conn: sa.Connection, n: int, org: str, escalated_to: str | None) -> str:
    """An overdue case as the schema of 0015 held it: escalated once (or not at all)."""
    conn.execute(
        sa.text(
            "INSERT INTO audit_incidents (incident_id, complaint_id, status, opened_by, opened_at, due_at,"
            " tree_size, root_hash, org, escalated_to, escalated_at)"
            " VALUES (:i, NULL, 'open', 'u-s', :at, :due, 0, :root, :org, :to, :when)"
        ),
        {
            "i": f"I-{n}",
            "at": OPENED,
            "due": OPENED + timedelta(days=30),
            "root": "00" * 32,
            "org": org,
            "to": escalated_to,
            "when": ESCALATED if escalated_to else None,
        },
    )
    return f"I-{n}"


def test_migration_0016_gives_earlier_escalations_a_period_so_they_climb_on_and_goes_down(
    database: str,
) -> None:
    command.downgrade(alembic_config(database), "0015")
    engine = make_engine(database, pool_size=1)
    with engine.begin() as conn:
        at_district = _case_before_0016(conn, 1, "310151101000", "310151000000")
        at_national = _case_before_0016(conn, 2, "310000000000", "000000000000")
        not_escalated = _case_before_0016(conn, 3, "310151102000", None)
    engine.dispose()

    upgrade(database)
    engine = make_engine(database, pool_size=1)
    with Session(engine) as session:
        district = get_incident(session, at_district, ESCALATED, scope="")
        assert (district["escalation_level"], district["escalation_due_at"]) == (
            1,
            "2026-12-09T15:59:59.000000Z",
        )
        national = get_incident(session, at_national, ESCALATED, scope="")
        assert (national["escalation_level"], national["escalation_due_at"]) == (1, None)
        assert get_incident(session, not_escalated, ESCALATED, scope="")["escalation_level"] == 0
        # The district's period over, the case goes on up to the city; the national level stays.
        after = datetime(2026, 12, 10, 2, 0, tzinfo=UTC)
        assert sorted(incidents_to_escalate(session, after)) == [at_district, not_escalated]
        done = escalate_incident(session, incident_id=at_district, now=after, deadlines=Deadlines())
        assert done is not None
        assert (done[1]["from_org"], done[1]["org"], done[1]["escalation_level"]) == (
            "310151000000",
            "310100000000",
            2,
        )
        session.commit()
    engine.dispose()

    command.downgrade(alembic_config(database), "0015")
    engine = make_engine(database, pool_size=1)
    with contextlib.closing(engine.connect()) as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("audit_incidents")}
    assert not {"escalation_level", "escalation_due_at"} & columns
    engine.dispose()
    upgrade(database)
