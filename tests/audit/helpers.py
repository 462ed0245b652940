"""Shared builders for the audit tests (plain functions; fixtures live in conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from audit import AuditEvent, Outcome, Pseudonymizer
from audit.log import chain_hash
from audit.merkle import leaf_hash
from audit.tables import audit_events, audit_head, audit_subject_refs, drop_immutability_sql

PSEUDONYMIZER = Pseudonymizer(b"test-key-for-audit-refs-0123456789", "k1")
T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


def make_event(i: int = 0, **overrides: Any) -> AuditEvent:
    """A realistic data-read event; every indexed column non-null so byte flips always land somewhere."""
    fields: dict[str, Any] = {
        "kind": "data.read",
        "outcome": Outcome.ALLOWED if i % 3 else Outcome.REFUSED,
        "actor": f"user-{i % 5}",
        "actor_org": f"3301020010{i % 7:02d}",
        "actor_roles": ("village_cadre",),
        "scenario": "subsistence-review",
        "dataset": "residents",
        "fields": ("name", "id_number", "mobile"),
        "record_count": i % 4,
        "subject_refs": tuple(PSEUDONYMIZER.ref(f"resident-{i + j}") for j in range(i % 3)),
        "record_refs": (PSEUDONYMIZER.ref(f"record-{i}"),),
        "reason": "granted" if i % 3 else "outside_jurisdiction",
        "trace_id": f"{i:032x}",
        "request_id": f"req-{i}",
        "details": {"page": i, "grant": "g-1"},
        "occurred_at": T0 + timedelta(seconds=i, microseconds=i),
    }
    fields.update(overrides)
    return AuditEvent(**fields)


def drop_triggers(engine: sa.Engine) -> None:
    """Play the attacker with database access: remove the append-only guards first."""
    with engine.begin() as conn:
        for statement in drop_immutability_sql(engine.dialect.name):
            conn.exec_driver_sql(statement)


def snapshot(engine: sa.Engine) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """All stored rows (events, subject refs, head) as plain dicts, like a backup would hold them."""
    with engine.connect() as conn:
        events = [
            dict(r._mapping) for r in conn.execute(sa.select(audit_events).order_by(audit_events.c.seq))
        ]
        refs = [dict(r._mapping) for r in conn.execute(sa.select(audit_subject_refs))]
        head = dict(conn.execute(sa.select(audit_head)).one()._mapping)
    return events, refs, head


def restore(
    engine: sa.Engine,
    events: list[dict[str, Any]],
    refs: list[dict[str, Any]],
    head: dict[str, Any] | None,
) -> None:
    """Replace the whole log with the given rows (triggers must already be dropped)."""
    with engine.begin() as conn:
        conn.execute(audit_subject_refs.delete())
        conn.execute(audit_events.delete())
        conn.execute(audit_head.delete())
        if events:
            conn.execute(audit_events.insert(), events)
        if refs:
            conn.execute(audit_subject_refs.insert(), refs)
        if head is not None:
            conn.execute(audit_head.insert(), head)


def rechain(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Renumber and recompute every hash, as a careful attacker would; returns the matching head row."""
    prev = bytes(32)
    for seq, row in enumerate(events, start=1):
        body = row["body"].encode()
        row["seq"] = seq
        row["prev_hash"] = prev
        row["entry_hash"] = chain_hash(prev, body)
        row["leaf_hash"] = leaf_hash(body)
        prev = row["entry_hash"]
    return {"id": 1, "seq": len(events), "entry_hash": prev}


def refs_for(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import json

    return [
        {"subject_ref": ref, "seq": row["seq"]}
        for row in events
        for ref in dict.fromkeys(json.loads(row["body"])["subject_refs"])
    ]


@contextmanager
def statements_run(engine: sa.Engine | type[sa.Engine]) -> Iterator[list[tuple[str, Any]]]:
    """Every statement ``engine`` sends to the database while in the block, with its parameters, as the
    driver received them: the queries a function really builds, to ask the database how it runs them.
    ``sa.Engine`` itself: every engine's, such as those of an app served in this process."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        seen.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def query_plan(engine: sa.Engine, statement: str, parameters: Any) -> str:
    """How the database runs ``statement`` with ``parameters``: SQLite's EXPLAIN QUERY PLAN, or
    PostgreSQL's EXPLAIN with sequential scans priced out (a test's table is small enough that a scan
    would be cheapest: the question is whether an index *can* answer it)."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SET enable_seqscan = off")
            rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters).all()
            return "\n".join(str(row[0]) for row in rows)
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
        return "\n".join(str(row[-1]) for row in rows)
