"""AuditLog: durable, gapless, chained appends; the database refuses to rewrite history."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from audit import AuditLog, AuditUnavailable, install_immutability_sql, merkle, verify_inclusion
from audit.log import GENESIS_HASH, chain_hash
from audit.tables import audit_events, audit_head, audit_subject_refs
from tests.audit.conftest import Store
from tests.audit.helpers import PSEUDONYMIZER, make_event


def rows(store: Store) -> list[sa.Row[tuple[int, bytes, bytes, str, bytes]]]:
    query = sa.select(
        audit_events.c.seq,
        audit_events.c.prev_hash,
        audit_events.c.entry_hash,
        audit_events.c.body,
        audit_events.c.leaf_hash,
    ).order_by(audit_events.c.seq)
    with store.engine.connect() as conn:
        return list(conn.execute(query).all())  # type: ignore[arg-type]


def test_appends_are_gapless_and_chained(store: Store) -> None:
    log = AuditLog(store.engine)
    receipts = [log.append(make_event(0))]
    receipts += log.append_many([make_event(i) for i in range(1, 6)])
    receipts += log.append_many([])
    assert [r.seq for r in receipts] == [1, 2, 3, 4, 5, 6]
    prev = GENESIS_HASH
    for receipt, row in zip(receipts, rows(store), strict=True):
        assert row.prev_hash == prev
        assert row.entry_hash == receipt.entry_hash == chain_hash(prev, row.body.encode())
        assert row.leaf_hash == merkle.leaf_hash(row.body.encode())
        prev = row.entry_hash
    with store.engine.connect() as conn:
        assert tuple(conn.execute(sa.select(audit_head.c.seq, audit_head.c.entry_hash)).one()) == (6, prev)
    assert log.size() == 6


def test_append_many_is_one_transaction(store: Store) -> None:
    """A failure inside a batch leaves nothing of it behind, and the head where it was."""
    log = AuditLog(store.engine)
    log.append(make_event(0))
    with store.engine.begin() as conn:
        if store.dialect == "sqlite":
            conn.exec_driver_sql(
                "CREATE TRIGGER fail_on_kind BEFORE INSERT ON audit_events WHEN NEW.kind = 'test.fail' "
                "BEGIN SELECT RAISE(ABORT, 'injected'); END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE FUNCTION fail_on_kind() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF NEW.kind = 'test.fail' THEN RAISE EXCEPTION 'injected'; END IF; RETURN NEW; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER fail_on_kind BEFORE INSERT ON audit_events FOR EACH ROW "
                "EXECUTE FUNCTION fail_on_kind()"
            )
    batch = [make_event(1), make_event(2), make_event(3, kind="test.fail"), make_event(4)]
    with pytest.raises(AuditUnavailable):
        log.append_many(batch)
    assert [r.seq for r in rows(store)] == [1]
    assert log.append(make_event(5)).seq == 2


def test_unwritable_store_raises_audit_unavailable_without_content(store: Store) -> None:
    log = AuditLog(store.engine)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE audit_subject_refs")
        conn.exec_driver_sql("DROP TABLE audit_events")
    event = make_event(2, actor="user-secret-marker")
    with pytest.raises(AuditUnavailable) as caught:
        log.append(event)
    error = caught.value
    assert "user-secret-marker" not in str(error) and event.subject_refs[0] not in str(error)
    assert error.__cause__ is None and error.__suppress_context__
    assert error.code == "audit_unavailable"
    assert "审计" in error.message_zh and "audit" in error.message_en


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET actor = 'someone-else' WHERE seq = 1",
        "DELETE FROM audit_events WHERE seq = 2",
        "UPDATE audit_subject_refs SET subject_ref = 'k1:00' WHERE seq = 2",
        "DELETE FROM audit_subject_refs",
    ],
)
def test_database_refuses_update_and_delete(store: Store, statement: str) -> None:
    AuditLog(store.engine).append_many([make_event(i) for i in range(3)])
    before = rows(store)
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), store.engine.begin() as conn:
        conn.exec_driver_sql(statement)
    assert rows(store) == before


@pytest.mark.postgres
def test_postgres_refuses_truncate(postgres_store: Store) -> None:
    AuditLog(postgres_store.engine).append(make_event(1))
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), postgres_store.engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE audit_subject_refs, audit_events")


def test_immutability_sql_is_rerunnable_through_text_as_alembic_runs_it(store: Store) -> None:
    with store.engine.begin() as conn:
        for statement in install_immutability_sql(store.dialect):
            conn.execute(sa.text(statement))
    AuditLog(store.engine).append(make_event(1))
    with pytest.raises(sa.exc.DatabaseError), store.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM audit_events")


def test_sqlite_runs_wal_with_full_sync(sqlite: Store) -> None:
    AuditLog(sqlite.engine).append(make_event(1))
    with sqlite.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        # Checkpoints every 64 MiB of WAL, not SQLite's 4 MiB (audit.log.SQLITE_PRAGMAS).
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 16384


def test_complaint_lookup_finds_every_access_through_the_index(store: Store) -> None:
    log = AuditLog(store.engine)
    resident = PSEUDONYMIZER.ref("resident-3")
    log.append_many([make_event(i) for i in range(12)])
    expected = [seq for seq in range(1, 13) if resident in log.read(seq)[0].subject_refs]
    assert expected and log.seqs_for_subjects([resident, PSEUDONYMIZER.ref("nobody")]) == expected
    if store.dialect == "sqlite":
        query = sa.select(audit_subject_refs.c.seq).where(audit_subject_refs.c.subject_ref == resident)
        with store.engine.connect() as conn:
            plan = " ".join(
                str(r[-1])
                for r in conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + str(query.compile(compile_kwargs={"literal_binds": True}))
                )
            )
        assert "USING" in plan and "INDEX" in plan, plan


def test_inclusion_and_consistency_proofs_from_the_log(store: Store) -> None:
    log = AuditLog(store.engine)
    log.append_many([make_event(i) for i in range(11)])
    root7, root11 = log.root(7), log.root(11)
    for seq in (1, 5, 7):
        _, _, leaf = log.read(seq)
        verify_inclusion(leaf, seq - 1, 7, log.inclusion_proof(seq, 7), root7)
    merkle.verify_consistency(7, 11, log.consistency_proof(7, 11), root7, root11)
