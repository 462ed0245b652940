"""Migration 0017: the expression index that finds events by where their request came from (``source``).

A log written before it (events with an IPv4 or IPv6 source, and without one) is indexed as it stands, its
bodies untouched (the table is append-only): after the upgrade the filter still finds the old events, now
from the index, newest first; down again, the index is gone and the filter finds the same events by
reading the bodies. On PostgreSQL the index is built ``CONCURRENTLY``, and an invalid one left by an
interrupted build is replaced. On SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from alembic import command

from audit import AuditLog, EventQuery, query_events
from audit.tables import event_source_index
from gateway.db import alembic_config, make_engine, upgrade
from tests.audit.helpers import T0, make_event, query_plan, statements_run

SOURCES = [None, "203.0.113.7", "2001:db8:1:2::/64"]


def _index_sql(engine: sa.Engine) -> str | None:
    """The definition of the source index as the database holds it, None when there is none."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            found = conn.execute(
                sa.text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"),
                {"n": event_source_index.name},
            )
        else:
            found = conn.execute(
                sa.text("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :n"),
                {"n": event_source_index.name},
            )
        return found.scalar_one_or_none()


def _found(engine: sa.Engine, source: str) -> tuple[list[int], str]:
    """The seqs the events query finds for ``source``, and how the database ran it."""
    with statements_run(engine) as sent:
        page = query_events(engine, EventQuery(source=source, limit=100))
    ((statement, parameters),) = sent
    return [e.seq for e in page.items], query_plan(engine, statement, parameters)


def test_migration_0017_indexes_the_sources_of_events_already_written_and_goes_down(database: str) -> None:
    command.downgrade(alembic_config(database), "0016")
    engine = make_engine(database, pool_size=1)
    assert _index_sql(engine) is None
    events = [make_event(i, source=SOURCES[i % 3], occurred_at=T0 + timedelta(minutes=i)) for i in range(30)]
    AuditLog(engine).append_many(events)
    expected = {
        source: [seq for seq, e in reversed(list(enumerate(events, start=1))) if e.source == source]
        for source in SOURCES[1:]
    }
    before = {source: _found(engine, source)[0] for source in expected}
    assert before == expected
    engine.dispose()

    upgrade(database)
    engine = make_engine(database, pool_size=1)
    assert _index_sql(engine) is not None
    for source, seqs in expected.items():
        found, plan = _found(engine, source)
        assert found == seqs
        assert event_source_index.name in plan, plan
    engine.dispose()

    command.downgrade(alembic_config(database), "0016")
    engine = make_engine(database, pool_size=1)
    assert _index_sql(engine) is None
    for source, seqs in expected.items():
        found, plan = _found(engine, source)
        assert found == seqs and event_source_index.name not in plan
    engine.dispose()
    upgrade(database)


@pytest.mark.parametrize("database", ["postgres"], indirect=True)
def test_an_invalid_index_left_by_an_interrupted_build_is_built_anew(database: str) -> None:
    """CREATE INDEX CONCURRENTLY that fails (a cancelled upgrade, a lost connection) leaves an invalid
    index of that name behind, and the revision unchanged: the upgrade run again replaces it rather than
    stopping at "already exists". (SQLite builds it in the migration's transaction: nothing is left.)"""
    command.downgrade(alembic_config(database), "0016")
    engine = make_engine(database, pool_size=1)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE INDEX {event_source_index.name} ON audit_events (seq)"))
        conn.execute(
            sa.text("UPDATE pg_index SET indisvalid = false WHERE indexrelid = CAST(:n AS regclass)"),
            {"n": event_source_index.name},
        )
    engine.dispose()
    upgrade(database)
    engine = make_engine(database, pool_size=1)
    definition = _index_sql(engine)
    with engine.connect() as conn:
        valid = conn.execute(
            sa.text("SELECT indisvalid FROM pg_index WHERE indexrelid = CAST(:n AS regclass)"),
            {"n": event_source_index.name},
        ).scalar_one()
    engine.dispose()
    assert definition is not None and "split_part" in definition and valid, definition
