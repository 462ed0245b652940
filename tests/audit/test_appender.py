"""GroupCommitAppender: many callers, few durable transactions, every future honest."""

from __future__ import annotations

import asyncio
import logging
import shutil
import sqlite3
import threading
import time
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from audit import AppendReceipt, AuditLog, AuditUnavailable, GroupCommitAppender, verify_log
from audit.log import PreparedEvent
from tests.audit.conftest import Store
from tests.audit.helpers import make_event


class RecordingLog(AuditLog):
    """A real log that remembers batch sizes and can be told to fail the next batch."""

    def __init__(self, store: Store) -> None:
        super().__init__(store.engine)
        self.batches: list[int] = []
        self.fail_next = threading.Event()
        self.gate = threading.Event()
        self.gate.set()

    def append_prepared(self, prepared: Sequence[PreparedEvent], within: Any = None) -> list[AppendReceipt]:
        self.gate.wait(5)
        self.batches.append(len(prepared))
        if self.fail_next.is_set():
            self.fail_next.clear()
            raise AuditUnavailable("injected failure")
        return super().append_prepared(prepared, within)


def test_concurrent_submitters_get_their_own_gapless_receipts(sqlite: Store) -> None:
    log = RecordingLog(sqlite)
    log.gate.clear()  # hold the first commit so that submissions pile up into batches
    results: dict[int, AppendReceipt] = {}
    with GroupCommitAppender(log, max_batch=16, max_wait_ms=1.0) as appender:

        def worker(start: int) -> None:
            futures = [(i, appender.submit(make_event(i))) for i in range(start, start + 50)]
            for i, future in futures:
                results[i] = future.result(timeout=30)

        threads = [threading.Thread(target=worker, args=(n * 50,)) for n in range(4)]
        for t in threads:
            t.start()
        log.gate.set()
        for t in threads:
            t.join()
    assert sorted(r.seq for r in results.values()) == list(range(1, 201))
    assert max(log.batches) <= 16 and len(log.batches) < 200
    for i, receipt in results.items():  # each caller's receipt is the row holding its own event
        assert log.read(receipt.seq)[0] == make_event(i)
    assert verify_log(sqlite.engine).ok


async def test_async_append_returns_after_commit(sqlite: Store) -> None:
    log = AuditLog(sqlite.engine)
    with GroupCommitAppender(log) as appender:
        receipts = await asyncio.gather(*(appender.append(make_event(i)) for i in range(20)))
        assert sorted(r.seq for r in receipts) == list(range(1, 21))
        assert log.size() == 20  # committed before the awaits returned


def test_a_failed_batch_fails_every_future_in_it(sqlite: Store) -> None:
    log = RecordingLog(sqlite)
    log.gate.clear()
    log.fail_next.set()
    with GroupCommitAppender(log, max_batch=64, max_wait_ms=200) as appender:
        futures = [appender.submit(make_event(i)) for i in range(10)]
        log.gate.set()
        errors = [f.exception(timeout=10) for f in futures]
    failed = log.batches[0]  # the linger makes this all 10 in practice; the law holds for any split
    assert failed >= 1
    assert all(isinstance(e, AuditUnavailable) for e in errors[:failed])
    assert all(e is None for e in errors[failed:])
    assert log.size() == 10 - failed


def test_store_failure_reaches_async_callers_as_audit_unavailable(sqlite: Store) -> None:
    log = AuditLog(sqlite.engine)
    with sqlite.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE audit_subject_refs")
        conn.exec_driver_sql("DROP TABLE audit_events")

    async def call() -> None:
        with GroupCommitAppender(log) as appender:
            await appender.append(make_event(1))

    with pytest.raises(AuditUnavailable):
        asyncio.run(call())


def test_close_drains_what_was_submitted(sqlite: Store) -> None:
    log = AuditLog(sqlite.engine)
    appender = GroupCommitAppender(log, max_batch=8, max_wait_ms=50)
    futures = [appender.submit(make_event(i)) for i in range(30)]  # submit starts the thread
    appender.close()
    assert all(f.done() and f.exception() is None for f in futures)
    assert log.size() == 30
    with pytest.raises(AuditUnavailable):
        appender.submit(make_event(31))


def test_bad_event_is_refused_at_submit_not_in_the_batch(sqlite: Store) -> None:
    log = AuditLog(sqlite.engine)
    with GroupCommitAppender(log) as appender:
        good = appender.submit(make_event(1))
        with pytest.raises(TypeError):
            appender.submit("not an event")  # type: ignore[arg-type]
        assert good.result(timeout=10).seq == 1


@pytest.mark.parametrize(("max_batch", "max_wait_ms"), [(0, 1.0), (1, -1.0)])
def test_invalid_settings_are_refused(sqlite: Store, max_batch: int, max_wait_ms: float) -> None:
    with pytest.raises(ValueError):
        GroupCommitAppender(AuditLog(sqlite.engine), max_batch=max_batch, max_wait_ms=max_wait_ms)


class DurabilityProbe(AuditLog):
    """A real log that reads, inside each append transaction, the setting that makes its commit durable."""

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine)
        self.seen: list[str] = []

    def _write(
        self, cursor: Any, prepared: Sequence[PreparedEvent], *, pipelined: bool = False
    ) -> list[AppendReceipt]:
        cursor.execute(
            "PRAGMA synchronous" if self.engine.dialect.name == "sqlite" else "SHOW synchronous_commit"
        )
        self.seen.append(str(cursor.fetchone()[0]))
        return super()._write(cursor, prepared, pipelined=pipelined)


def _careless_engine(store: Store) -> sa.Engine:
    """An engine whose sessions start NOT durable (a misconfigured deployment): the log must still be."""
    if store.dialect == "sqlite":
        engine = sa.create_engine(store.url, connect_args={"check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _not_durable(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute("PRAGMA synchronous=OFF")

        return engine
    return sa.create_engine(
        store.url, connect_args={"options": f"-c search_path={store.schema} -c synchronous_commit=off"}
    )


def test_every_batch_commits_durably_on_the_pinned_connection(store: Store) -> None:
    engine = _careless_engine(store)
    checkouts: list[object] = []
    sa.event.listen(engine, "checkout", lambda *_args: checkouts.append(None))
    log = DurabilityProbe(engine)
    log.append(make_event(0))  # unpinned: durable per transaction
    # No idle WAL checkpoints here: they take a connection of their own (counted below) whenever the
    # appender is idle long enough, which on a loaded machine is between any two of these batches.
    with GroupCommitAppender(log, max_batch=4, wal_checkpoint_s=None) as appender:
        for start in range(1, 25, 4):  # one batch after another, each awaited
            futures = [appender.submit(make_event(i)) for i in range(start, start + 4)]
            assert [f.result(timeout=10).seq for f in futures] == list(range(start + 1, start + 5))
    engine.dispose()
    durable = "2" if store.dialect == "sqlite" else "on"  # synchronous=FULL / synchronous_commit=on
    assert len(log.seen) >= 7 and set(log.seen) == {durable}
    assert len(checkouts) == 2  # the direct append's, then one for every group commit
    assert verify_log(store.engine).ok


@pytest.mark.postgres
def test_a_broken_pinned_connection_fails_one_batch_then_recovers(postgres_store: Store) -> None:
    log = AuditLog(postgres_store.engine)
    with GroupCommitAppender(log) as appender:
        assert appender.submit(make_event(1)).result(timeout=10).seq == 1
        with postgres_store.engine.connect() as admin:  # the server drops the appender's session
            admin.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        failed = appender.submit(make_event(2)).exception(timeout=10)
        assert isinstance(failed, AuditUnavailable)  # fail closed: that batch is not acknowledged
        assert appender.submit(make_event(3)).result(timeout=10).seq == 2  # a fresh connection
    assert log.size() == 2 and verify_log(postgres_store.engine).ok


class CheckpointSpy(AuditLog):
    """The real log, counting the WAL checkpoints the appender asks for (and failing them if told)."""

    def __init__(self, engine: sa.Engine, fail: bool = False) -> None:
        super().__init__(engine)
        self.checkpoints = 0
        self.fail = fail

    def checkpoint_wal(self) -> tuple[int, int, int] | None:
        self.checkpoints += 1
        if self.fail:
            raise OSError("disk full")
        return super().checkpoint_wal()


def _until_checkpointed(log: CheckpointSpy) -> None:
    """Wait (10 s at most) for the checkpoint thread to have tried once: it runs on its own thread, and an
    appender closed before that thread was scheduled (a loaded host) rightly skips the pending request."""
    deadline = time.monotonic() + 10
    while log.checkpoints == 0 and time.monotonic() < deadline:
        time.sleep(0.01)


def _events_in_main_file(store: Store, tmp: Path) -> int:
    """Events readable from the database file alone, without its WAL (what a checkpoint has copied).

    The appender's idle checkpoint may be writing the file while it is copied: a torn copy ("database disk
    image is malformed") is taken again, as a reader of a file being written would."""
    for attempt in range(100):
        copy = tmp / f"main-file-only-{attempt}.db"
        shutil.copyfile(str(store.engine.url.database), copy)
        try:
            with closing(sqlite3.connect(copy)) as con:
                tables = "SELECT count(*) FROM sqlite_master WHERE name = 'audit_events'"
                if con.execute(tables).fetchone()[0] == 0:
                    return 0  # not even the schema has been copied yet
                return int(con.execute("SELECT count(*) FROM audit_events").fetchone()[0])
        except sqlite3.DatabaseError:
            time.sleep(0.01)
        finally:
            copy.unlink()
    raise AssertionError("the database file was being written every time it was copied")


@pytest.mark.parametrize("interval", [0.0, None])
def test_idle_moments_checkpoint_the_wal_off_the_callers_path(
    sqlite: Store, tmp_path: Path, interval: float | None
) -> None:
    log = CheckpointSpy(sqlite.engine)
    with GroupCommitAppender(log, wal_checkpoint_s=interval) as appender:
        for i in range(20):  # one at a time: the queue is empty after every batch
            assert appender.submit(make_event(i)).result(timeout=10).seq == i + 1
        deadline = time.monotonic() + 10
        in_main_file = _events_in_main_file(sqlite, tmp_path)
        while interval is not None and in_main_file < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
            in_main_file = _events_in_main_file(sqlite, tmp_path)
    if interval is None:  # left to SQLite's own checkpoint, which 20 events do not trigger
        assert log.checkpoints == 0 and in_main_file == 0
    else:  # after batches, once their callers were answered; requests made during one are folded
        assert log.checkpoints >= 1 and in_main_file == 20
    assert verify_log(sqlite.engine).ok


def test_an_event_that_arrives_during_a_wal_checkpoint_is_committed_without_waiting_for_it(
    sqlite: Store,
) -> None:
    """The checkpoint has a thread and connection of its own: a slow one (held here) delays no append."""

    class HeldCheckpoint(CheckpointSpy):
        def __init__(self, engine: sa.Engine) -> None:
            super().__init__(engine)
            self.started = threading.Event()
            self.release = threading.Event()

        def checkpoint_wal(self) -> tuple[int, int, int] | None:
            self.started.set()
            self.release.wait(10)
            return super().checkpoint_wal()

    log = HeldCheckpoint(sqlite.engine)
    with GroupCommitAppender(log, wal_checkpoint_s=0.0) as appender:
        assert appender.submit(make_event(0)).result(timeout=10).seq == 1
        assert log.started.wait(10)  # the idle moment after that batch asked for a checkpoint
        try:
            receipts = [appender.submit(make_event(i)).result(timeout=2) for i in range(1, 6)]
            assert [r.seq for r in receipts] == [2, 3, 4, 5, 6]
            assert not log.release.is_set()  # all answered while the checkpoint was still held
        finally:
            log.release.set()
    assert verify_log(sqlite.engine).ok


def test_a_failing_wal_checkpoint_fails_no_append_and_warns_once(
    sqlite: Store, caplog: pytest.LogCaptureFixture
) -> None:
    log = CheckpointSpy(sqlite.engine, fail=True)
    with (
        caplog.at_level(logging.WARNING, logger="audit.appender"),
        GroupCommitAppender(log, wal_checkpoint_s=0.0) as appender,
    ):
        receipts = [appender.submit(make_event(i)).result(timeout=10) for i in range(5)]
        _until_checkpointed(log)
    assert [r.seq for r in receipts] == [1, 2, 3, 4, 5]
    assert log.checkpoints >= 1
    warnings = [r for r in caplog.records if "checkpoint" in r.getMessage()]
    assert len(warnings) == 1 and "OSError" in warnings[0].getMessage()
    assert "disk full" not in caplog.text


def test_postgres_appenders_never_checkpoint_and_a_negative_interval_is_refused(store: Store) -> None:
    log = CheckpointSpy(store.engine)
    with pytest.raises(ValueError, match="wal_checkpoint_s"):
        GroupCommitAppender(log, wal_checkpoint_s=-1)
    with GroupCommitAppender(log, wal_checkpoint_s=0.0) as appender:
        for i in range(3):
            appender.submit(make_event(i)).result(timeout=10)
        if store.dialect == "sqlite":
            _until_checkpointed(log)
    assert (log.checkpoints > 0) is (store.dialect == "sqlite")


def test_a_heavy_load_leaves_the_checkpoint_to_sqlite(sqlite: Store) -> None:
    class Gated(CheckpointSpy):
        def __init__(self, engine: sa.Engine) -> None:
            super().__init__(engine)
            self.gate = threading.Event()
            self.waiting = threading.Event()
            self.batches: list[int] = []

        def append_prepared(
            self, prepared: Sequence[PreparedEvent], within: Any = None
        ) -> list[AppendReceipt]:
            self.waiting.set()
            self.gate.wait(5)
            self.batches.append(len(prepared))
            return super().append_prepared(prepared, within)

    log = Gated(sqlite.engine)
    with GroupCommitAppender(log, wal_checkpoint_s=0.0) as appender:
        # The writer holds the first event at the gate before the rest pile up behind it, so the load
        # ends with the heavy batch (a light last batch would rightly be followed by an idle checkpoint).
        first = appender.submit(make_event(0))
        assert log.waiting.wait(5)
        futures = [first, *(appender.submit(make_event(i)) for i in range(1, 60))]
        log.gate.set()
        assert [f.result(timeout=10).seq for f in futures] == list(range(1, 61))
    assert log.batches == [1, 59]  # then a large batch: a heavy load
    assert log.checkpoints == 0


async def test_many_tasks_awaiting_in_turn_keep_one_gapless_chain(sqlite: Store) -> None:
    """Callers that come back as soon as they are answered (as gateway requests do), many at once:
    whatever batches form, every caller's receipt is the row of its own event, and the chain holds."""
    log = RecordingLog(sqlite)
    receipts: dict[int, AppendReceipt] = {}
    with GroupCommitAppender(log) as appender:

        async def caller(k: int) -> None:
            for i in range(k, 96 * 6, 96):
                receipts[i] = await appender.append(make_event(i))

        await asyncio.gather(*(caller(k) for k in range(96)))
    assert sorted(r.seq for r in receipts.values()) == list(range(1, 96 * 6 + 1))
    assert sum(log.batches) == 96 * 6
    for i, receipt in receipts.items():
        assert log.read(receipt.seq)[0] == make_event(i)
    assert verify_log(sqlite.engine).ok


def test_a_database_file_moved_away_under_the_appender_gets_no_event(sqlite: Store) -> None:
    """An operator moved the SQLite file away (or restored a backup over it with ``mv``) under a running
    gateway. Its connections kept the old file open and the group commit went on appending to it: requests
    were served, and their events went into a file no longer at the path, lost when the process stopped.
    Now an append finds the file at the path is not the one it opened: refused (AuditUnavailable, the
    request 503), the connections dropped; once the right file is there, events go into it again."""
    path = Path(sqlite.url.removeprefix("sqlite:///"))
    aside, restored = path.with_name("aside.db"), path.with_name("restored.db")
    with GroupCommitAppender(AuditLog(sqlite.engine)) as appender:
        appender.submit(make_event(0)).result(timeout=10)
        path.rename(aside)
        with pytest.raises(AuditUnavailable, match="DatabaseFileReplaced"):
            appender.submit(make_event(1)).result(timeout=10)
        aside.rename(path)  # put back: served again, by itself
        appender.submit(make_event(1)).result(timeout=10)
        # A copy moved over it (a backup restored with mv): not the file the connections opened either.
        shutil.copyfile(path, restored)
        restored.rename(path)
        with pytest.raises(AuditUnavailable, match="DatabaseFileReplaced"):
            appender.submit(make_event(2)).result(timeout=10)
        appender.submit(make_event(2)).result(timeout=10)
    with sqlite3.connect(path) as conn:  # every event acknowledged is in the file at the path
        assert conn.execute("SELECT count(*) FROM audit_events").fetchone() == (3,)


def test_an_administrative_change_is_not_committed_into_a_file_moved_away(sqlite: Store) -> None:
    """The same for a change recorded in its caller's transaction (a grant approved, a case assigned): it
    and its event went into the old file. Now refused, nothing written; the file back, it commits."""
    path = Path(sqlite.url.removeprefix("sqlite:///"))
    log = AuditLog(sqlite.engine)
    log.append(make_event(0))
    path.rename(path.with_name("aside.db"))
    with sqlite.engine.connect() as conn, pytest.raises(AuditUnavailable, match="DatabaseFileReplaced"):
        log.append_within(conn, [make_event(1)])
    path.with_name("aside.db").rename(path)
    with sqlite.engine.begin() as conn:
        log.append_within(conn, [make_event(1)])
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM audit_events").fetchone() == (2,)
