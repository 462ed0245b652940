"""Served pages are counted inside the audit log's group commit: a request's count and the event that
records its access become durable in one transaction, or neither does. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from audit import AppendReceipt, AuditLog, AuditUnavailable, GroupCommitAppender, verify_log
from audit.log import PreparedEvent
from gateway.quotas import CachedQuotaCounter, CountedWithAudit, QuotaUnavailable, SharedHoldWriter
from policies import SqlQuotaCounter
from policies import metadata as policy_metadata
from tests.audit.conftest import Store, postgres_database, postgres_store, store  # noqa: F401 - fixtures
from tests.audit.helpers import make_event

DAY = "2025-03-03"
KEY = ("cadre_a", "DIBAO_REVIEW", DAY)


class CountingLog(AuditLog):
    """The real log, remembering the size of each batch it committed."""

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine)
        self.batches: list[int] = []

    def append_prepared(self, prepared: Sequence[PreparedEvent], within: Any = None) -> list[AppendReceipt]:
        receipts = super().append_prepared(prepared, within)
        self.batches.append(len(prepared))
        return receipts


class NoReads(SqlQuotaCounter):
    """Counts like the real counter but refuses to be read: what the cache answers came from a commit."""

    def used(self, user_id: str, scenario: str, day: str) -> int:
        raise AssertionError("the cache should have answered")


@pytest.fixture
def quota_store(store: Store) -> Iterator[Store]:  # noqa: F811 - the audit fixture, extended
    policy_metadata.create_all(store.engine)
    yield store


def _counted(engine: sa.Engine) -> int:
    return SqlQuotaCounter(sessionmaker(engine)).used(*KEY)


async def test_counts_commit_with_their_events_in_shared_batches(quota_store: Store) -> None:
    engine = quota_store.engine
    cache = CachedQuotaCounter(NoReads(sessionmaker(engine)), ttl_s=60)
    log = CountingLog(engine)
    with GroupCommitAppender(log, companion=CountedWithAudit(cache)) as appender:
        # 150 served requests (1 or 2 records each) and 50 refusals, which count nothing.
        results = await asyncio.gather(
            *(appender.append(make_event(i), (KEY, 1 + i % 2) if i % 4 else None) for i in range(200))
        )
    assert sorted(r.seq for r in results) == list(range(1, 201))
    expected = sum(1 + i % 2 for i in range(200) if i % 4)
    assert _counted(engine) == expected
    assert cache.used(*KEY) == expected  # refreshed from the committed total, not read back
    assert len(log.batches) < 200  # the counts rode in the events' group commits
    assert verify_log(engine).ok


async def test_a_count_that_cannot_be_written_keeps_neither_count_nor_event(quota_store: Store) -> None:
    engine = quota_store.engine
    block, unblock = {
        "sqlite": (
            [
                "CREATE TRIGGER quota_refused BEFORE INSERT ON policy_quota_usage "
                "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
            ],
            ["DROP TRIGGER quota_refused"],
        ),
        "postgresql": (
            [
                "CREATE FUNCTION quota_refused() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'disk full'; END $$",
                "CREATE TRIGGER quota_refused BEFORE INSERT ON policy_quota_usage "
                "FOR EACH ROW EXECUTE FUNCTION quota_refused()",
            ],
            ["DROP TRIGGER quota_refused ON policy_quota_usage", "DROP FUNCTION quota_refused()"],
        ),
    }[quota_store.dialect]
    with engine.begin() as conn:
        for statement in block:
            conn.exec_driver_sql(statement)
    cache = CachedQuotaCounter(SqlQuotaCounter(sessionmaker(engine)), ttl_s=60)
    log = AuditLog(engine)
    with GroupCommitAppender(log, companion=CountedWithAudit(cache)) as appender:
        results = await asyncio.gather(
            *(appender.append(make_event(i), (KEY, 1)) for i in range(5)), return_exceptions=True
        )
        assert all(isinstance(r, AuditUnavailable) for r in results), results
        assert "disk full" not in " ".join(str(r) for r in results)  # no database text to the caller
        assert log.size() == 0 and _counted(engine) == 0
        with engine.begin() as conn:
            for statement in unblock:
                conn.exec_driver_sql(statement)
        receipt = await appender.append(make_event(9), (KEY, 3))
    assert receipt.seq == 1 and _counted(engine) == 3 and cache.used(*KEY) == 3
    assert verify_log(engine).ok


def test_threads_count_too_and_a_payload_needs_a_companion(quota_store: Store) -> None:
    engine = quota_store.engine
    with GroupCommitAppender(AuditLog(engine)) as bare:
        with pytest.raises(ValueError, match="no companion"):
            bare.submit(make_event(1), (KEY, 1))
        assert bare.submit(make_event(2)).result(timeout=30).seq == 1  # no payload: as ever
    cache = CachedQuotaCounter(SqlQuotaCounter(sessionmaker(engine)), ttl_s=60)
    companion = CountedWithAudit(cache)
    appender = GroupCommitAppender(AuditLog(engine))
    appender.attach(companion)
    appender.attach(companion)  # the same one again: harmless
    with pytest.raises(ValueError, match="already"):
        appender.attach(CountedWithAudit(cache))
    with appender:
        futures = [appender.submit(make_event(i), (KEY, 2)) for i in range(3, 13)]
        assert [f.result(timeout=30).seq for f in futures] == list(range(2, 12))
    assert _counted(engine) == 20


async def test_an_after_commit_failure_does_not_fail_the_committed_callers(quota_store: Store) -> None:
    class CacheFails(CountedWithAudit):
        calls = 0

        def committed(self, written: object) -> None:
            type(self).calls += 1
            raise RuntimeError("cache broke")

    engine = quota_store.engine
    cache = CachedQuotaCounter(SqlQuotaCounter(sessionmaker(engine)), ttl_s=60)
    with GroupCommitAppender(AuditLog(engine), companion=CacheFails(cache)) as appender:
        receipt = await appender.append(make_event(1), (KEY, 4))
    assert receipt.seq == 1 and CacheFails.calls == 1
    assert _counted(engine) == 4  # committed: the count stands


# -- shared holds on a connection of their own (PostgreSQL) ------------------------------------------


@pytest.fixture
def shared_counter(postgres_store: Store) -> Iterator[tuple[Store, CachedQuotaCounter, SharedHoldWriter]]:  # noqa: F811
    policy_metadata.create_all(postgres_store.engine)
    holds = SharedHoldWriter(postgres_store.engine)
    cache = CachedQuotaCounter(
        SqlQuotaCounter(sessionmaker(postgres_store.engine)), ttl_s=60, shared=True, holds=holds
    )
    try:
        yield postgres_store, cache, holds
    finally:
        holds.close()


@pytest.mark.postgres
async def test_parallel_shared_holds_never_take_more_than_the_limit(
    shared_counter: tuple[Store, CachedQuotaCounter, SharedHoldWriter],
) -> None:
    """Forty holds of 5 at once with 10 left: exactly two are taken, each committed at once."""
    pg, cache, _ = shared_counter
    SqlQuotaCounter(sessionmaker(pg.engine)).consume(*KEY, 90)
    holds = await asyncio.gather(*(cache.hold(KEY, 5, 100) for _ in range(40)))
    taken = [h for h in holds if h is not None]
    assert len(taken) == 2
    assert all(h.in_store for h in taken)
    assert _counted(pg.engine) == 100  # visible to every other connection: committed
    assert cache.used(*KEY) == 100
    # The refused see the total as it stands, and a hold larger than the whole quota is never taken.
    assert await cache.hold(KEY, 1, 100) is None
    assert await cache.hold(("someone_else", "DIBAO_REVIEW", DAY), 101, 100) is None
    await cache.give_back(taken[0])
    assert _counted(pg.engine) == 95


@pytest.mark.postgres
async def test_a_hold_that_cannot_be_written_fails_alone_and_the_writer_recovers(
    shared_counter: tuple[Store, CachedQuotaCounter, SharedHoldWriter],
) -> None:
    pg, cache, holds = shared_counter
    assert await cache.hold(KEY, 5, 100) is not None
    with pg.engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE FUNCTION refuse_quota() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'disk full'; END $$"
        )
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse_quota BEFORE INSERT OR UPDATE ON policy_quota_usage "
            "FOR EACH ROW EXECUTE FUNCTION refuse_quota()"
        )
    with pytest.raises(QuotaUnavailable):
        await cache.hold(KEY, 5, 100)
    with pg.engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER refuse_quota ON policy_quota_usage")
    assert await cache.hold(KEY, 5, 100) is not None  # on a fresh connection
    assert _counted(pg.engine) == 10
    holds.close()
    with pytest.raises(QuotaUnavailable):  # closed: nothing is held any more, nothing served
        await cache.hold(KEY, 5, 100)


def test_shared_holds_are_taken_on_postgresql_only() -> None:
    # SQLite has one gateway process: its holds are in memory (CachedQuotaCounter, shared=False).
    with pytest.raises(ValueError, match="PostgreSQL"):
        SharedHoldWriter(sa.create_engine("sqlite://"))


class SlowFirstRead(SqlQuotaCounter):
    """The real counter whose first read takes its snapshot at once and answers only when let go: a
    prefetch still on its worker thread while other requests of the same cadre are served and counted."""

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(sessionmaker(engine))
        self.snapshot_taken = threading.Event()
        self.let_go = threading.Event()
        self._first = True

    def used(self, user_id: str, scenario: str, day: str) -> int:
        value = super().used(user_id, scenario, day)
        if self._first:
            self._first = False
            self.snapshot_taken.set()
            assert self.let_go.wait(timeout=30)
        return value


async def test_a_slow_read_never_puts_back_a_count_older_than_a_commit(quota_store: Store) -> None:
    """One process (the SQLite deployment): a prefetch that read the counter before a parallel request's
    audit commit counted its page must not overwrite that commit's total when it answers late. It did:
    the hold was dropped after the commit, the late read put the old count back, and the cadre was
    served a page past the quota (CI: 15 records served of the last 10)."""
    engine = quota_store.engine
    SqlQuotaCounter(sessionmaker(engine)).consume(*KEY, 90)
    inner = SlowFirstRead(engine)
    cache = CachedQuotaCounter(inner, ttl_s=60)
    late = asyncio.create_task(cache.prefetch(*KEY))
    assert await asyncio.to_thread(inner.snapshot_taken.wait, 30)  # it has read 90
    hold = await cache.hold(KEY, 5, 100)
    assert hold is not None
    with GroupCommitAppender(AuditLog(engine), companion=CountedWithAudit(cache)) as appender:
        await appender.append(make_event(1), hold.settlement(5))
    cache.drop(hold)
    assert cache.used(*KEY) == 95
    inner.let_go.set()
    await late
    assert cache.used(*KEY) == 95  # the commit's total, not the late read's 90
    assert await cache.hold(KEY, 10, 100) is None  # only 5 are left
    assert await cache.hold(KEY, 5, 100) is not None
