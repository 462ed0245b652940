"""PostgreSQL specifics: concurrent appending processes, and the insert-and-select-only writer role."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from audit import AuditLog, GroupCommitAppender, postgres_writer_role_sql, use_writer_role, verify_log
from audit.tables import WRITER_ROLE
from tests.audit.conftest import Store, postgres_engine
from tests.audit.helpers import drop_triggers, make_event

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[2]
PER_PROCESS = 220


def test_two_processes_appending_concurrently_leave_one_chain(postgres_store: Store) -> None:
    assert postgres_store.schema is not None
    command = [sys.executable, "-m", "tests.audit._writer", postgres_store.url, postgres_store.schema]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen([*command, str(PER_PROCESS)], cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    acked = [int(line.split()[0]) for out in outputs for line in out.splitlines()]
    assert sorted(acked) == list(range(1, len(acked) + 1))  # gapless, no seq handed out twice
    assert len(acked) >= 2 * PER_PROCESS
    report = verify_log(postgres_store.engine)
    assert report.ok and report.checked == len(acked), report.describe()


def test_writer_role_can_append_but_never_rewrite(postgres_store: Store) -> None:
    engine, schema = postgres_store.engine, postgres_store.schema
    with engine.begin() as conn:
        for statement in postgres_writer_role_sql():
            conn.exec_driver_sql(statement)
        for statement in postgres_writer_role_sql():  # rerunnable
            conn.execute(sa.text(statement))
        conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA {schema} TO {WRITER_ROLE}")
    drop_triggers(engine)  # the role alone must hold the line

    writer = sa.create_engine(
        postgres_store.url, connect_args={"options": f"-c search_path={schema} -c role={WRITER_ROLE}"}
    )
    try:
        log = AuditLog(writer)
        assert [r.seq for r in log.append_many([make_event(i) for i in range(3)])] == [1, 2, 3]
        assert log.append(make_event(3)).seq == 4
        for statement in (
            "UPDATE audit_events SET actor = 'x'",
            "DELETE FROM audit_events",
            "DELETE FROM audit_subject_refs",
            "TRUNCATE audit_events CASCADE",
        ):
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied"), writer.begin() as conn:
                conn.exec_driver_sql(statement)
    finally:
        writer.dispose()
    assert verify_log(postgres_engine(postgres_store.url, schema or "public")).ok


class _WhoWritesAfter:
    """A transaction companion that records who its writes would run as (after the audit statements)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def write(self, cursor: Any, dialect: str, payloads: list[Any]) -> object:
        cursor.execute("SELECT current_user")
        self.seen.append(str(cursor.fetchone()[0]))
        return None

    def committed(self, written: object) -> None:
        pass


def test_with_use_writer_role_every_append_path_inserts_as_the_writer(postgres_store: Store) -> None:
    """The group-commit batches (with and without a companion after them), a plain append and an append in
    the caller's transaction: each event inserted as the writer role, everything after as the login role."""
    engine, schema = postgres_store.engine, postgres_store.schema
    with engine.begin() as conn:
        for statement in postgres_writer_role_sql():
            conn.exec_driver_sql(statement)
        conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA {schema} TO {WRITER_ROLE}")
        conn.exec_driver_sql("CREATE TABLE who (seq bigint, inserted_by name)")
        conn.exec_driver_sql(
            "CREATE FUNCTION who() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "INSERT INTO who VALUES (NEW.seq, current_user); RETURN NULL; END $$"
        )
        conn.exec_driver_sql(
            "CREATE TRIGGER who AFTER INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION who()"
        )
        conn.exec_driver_sql(f"GRANT INSERT ON who TO {WRITER_ROLE}")
        login = conn.exec_driver_sql("SELECT current_user").scalar_one()
    use_writer_role(engine)
    log = AuditLog(engine)
    log.append(make_event(0))
    companion = _WhoWritesAfter()
    with GroupCommitAppender(log, companion=companion) as appender:
        appender.submit(make_event(1)).result(timeout=30)
        appender.submit(make_event(2), companion="count").result(timeout=30)
    with engine.begin() as conn:
        log.append_within(conn, [make_event(3)])
        after = conn.exec_driver_sql("SELECT current_user").scalar_one()
    with engine.connect() as conn:
        inserted_by = dict(conn.exec_driver_sql("SELECT seq, inserted_by FROM who").all())
    assert inserted_by == {1: WRITER_ROLE, 2: WRITER_ROLE, 3: WRITER_ROLE, 4: WRITER_ROLE}
    assert companion.seen == [login] and after == login
    assert verify_log(engine).ok


def test_an_append_behind_a_lock_held_for_long_is_refused_not_left_waiting(
    postgres_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone held a lock on the log for a long time (an operator's ``LOCK TABLE``, a stuck session):
    every request waited for its audit event as long, answered only by its client's timeout, while SQLite
    refused after its busy timeout. Now an append waits at most ``PG_LOCK_TIMEOUT_MS`` and is refused
    (AuditUnavailable: the request gets 503), on the group-commit thread and in a caller's transaction;
    once the lock is let go, appends go on by themselves."""
    from audit import AuditUnavailable
    from audit import log as audit_log

    monkeypatch.setattr(audit_log, "PG_LOCK_TIMEOUT_MS", 300)
    log = AuditLog(postgres_store.engine)
    with GroupCommitAppender(log) as appender:
        appender.submit(make_event(0)).result(timeout=10)
        with postgres_store.engine.connect() as holder:
            holder.exec_driver_sql("LOCK TABLE audit_head IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(AuditUnavailable):  # not a TimeoutError: refused while the lock is held
                appender.submit(make_event(1)).result(timeout=20)
            with pytest.raises(AuditUnavailable), postgres_store.engine.begin() as conn:
                log.append_within(conn, [make_event(1)])
            holder.rollback()
        appender.submit(make_event(1)).result(timeout=10)
    assert verify_log(postgres_store.engine).checked == 2
