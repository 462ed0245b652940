"""Quota counters: the in-memory one, and the SQL one whose atomic upsert keeps several gateway
processes counting consistently (SQLite here; PostgreSQL with two real processes when configured)."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from policies import InMemoryQuotaCounter, SqlQuotaCounter, metadata, quota_day


@pytest.mark.parametrize(
    ("now", "day"),
    [
        (datetime(2025, 3, 3, 15, 59, 59, tzinfo=UTC), "2025-03-03"),
        (datetime(2025, 3, 3, 16, 0, 0, tzinfo=UTC), "2025-03-04"),  # midnight in Beijing
        (datetime(2025, 12, 31, 23, 0, 0, tzinfo=UTC), "2026-01-01"),
    ],
)
def test_quota_day_is_the_beijing_calendar_day(now: datetime, day: str) -> None:
    assert quota_day(now) == day


def test_in_memory_counter() -> None:
    c = InMemoryQuotaCounter()
    assert c.used("u", "S", "2025-03-03") == 0
    assert c.consume("u", "S", "2025-03-03", 5) == 5
    assert c.consume("u", "S", "2025-03-03", 7) == 12
    assert c.used("u", "S", "2025-03-04") == 0
    assert c.used("v", "S", "2025-03-03") == 0
    with pytest.raises(ValueError):
        c.consume("u", "S", "2025-03-03", -1)


def test_sql_counter_on_sqlite(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+pysqlite:///{tmp_path / 'q.db'}")
    metadata.create_all(engine)
    counter = SqlQuotaCounter(sessionmaker(engine))
    assert counter.used("u", "S", "2025-03-03") == 0
    assert counter.consume("u", "S", "2025-03-03", 5) == 5
    assert counter.consume("u", "S", "2025-03-03", 7) == 12
    # Another "process" (a fresh engine on the same file) sees the committed count.
    other = SqlQuotaCounter(sessionmaker(create_engine(f"sqlite+pysqlite:///{tmp_path / 'q.db'}")))
    assert other.used("u", "S", "2025-03-03") == 12
    assert other.used("u", "S", "2025-03-04") == 0


# -- PostgreSQL: two processes hammer one counter ---------------------------------------------------


def _hammer(url: str, n: int, out: multiprocessing.Queue[list[int]]) -> None:
    engine = create_engine(url)
    counter = SqlQuotaCounter(sessionmaker(engine))
    out.put([counter.consume("u-1", "DIBAO_REVIEW", "2025-03-03", 1) for _ in range(n)])
    engine.dispose()


@pytest.mark.postgres
def test_two_processes_count_consistently_on_postgres(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    metadata.create_all(engine)
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[list[int]] = ctx.Queue()
    n = 150
    procs = [ctx.Process(target=_hammer, args=(postgres_url, n, out)) for _ in range(2)]
    for p in procs:
        p.start()
    totals = out.get(timeout=120) + out.get(timeout=120)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    # Every increment saw a distinct running total: no lost update, no double count.
    assert sorted(totals) == list(range(1, 2 * n + 1))
    assert SqlQuotaCounter(sessionmaker(engine)).used("u-1", "DIBAO_REVIEW", "2025-03-03") == 2 * n
    with Session(engine) as s:
        assert s.execute(text("select count(*) from policy_quota_usage")).scalar_one() == 1
    engine.dispose()


def _setting_at_commit(engine: Engine, query: str) -> list[str]:
    """What ``query`` answers on the connection at the moment each transaction commits."""
    seen: list[str] = []

    def on_commit(conn: Connection) -> None:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        cursor.execute(query)
        seen.append(str(cursor.fetchone()[0]))
        cursor.close()

    event.listen(engine, "commit", on_commit)
    return seen


def _durable_sqlite(path: Path) -> Engine:
    engine = create_engine(f"sqlite+pysqlite:///{path}", pool_size=2, max_overflow=0)

    @event.listens_for(engine, "connect")
    def full(dbapi_connection: object, _record: object) -> None:
        cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    metadata.create_all(engine)
    return engine


def test_counting_without_waiting_for_disk_on_sqlite_leaves_every_pooled_connection_durable(
    tmp_path: Path,
) -> None:
    engine = _durable_sqlite(tmp_path / "q.db")
    seen = _setting_at_commit(engine, "PRAGMA synchronous")
    relaxed = SqlQuotaCounter(sessionmaker(engine), wait_for_disk=False)
    assert relaxed.consume("u", "S", "2025-03-03", 4) == 4
    assert relaxed.consume("u", "S", "2025-03-03", 3) == 7
    # The upserts committed with synchronous=NORMAL (1); the restore committed back at FULL (2).
    assert "1" in seen
    assert seen[-1] == "2"
    # Every connection the pool hands out afterwards is back at FULL.
    conns = [engine.connect() for _ in range(2)]
    assert [c.exec_driver_sql("PRAGMA synchronous").scalar() for c in conns] == [2, 2]
    for c in conns:
        c.close()
    seen.clear()
    assert SqlQuotaCounter(sessionmaker(engine)).consume("u", "S", "2025-03-03", 1) == 8
    assert seen and set(seen) == {"2"}  # the default still waits for the disk


def test_counting_without_waiting_for_disk_on_postgres_is_scoped_to_its_transaction(
    postgres_url: str,
) -> None:
    engine = create_engine(postgres_url)
    metadata.create_all(engine)
    seen = _setting_at_commit(engine, "SHOW synchronous_commit")
    relaxed = SqlQuotaCounter(sessionmaker(engine), wait_for_disk=False)
    assert relaxed.consume("u", "S", "2025-03-03", 4) == 4
    assert seen == ["off"]
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
    seen.clear()
    assert SqlQuotaCounter(sessionmaker(engine)).consume("u", "S", "2025-03-03", 1) == 5
    assert seen == ["on"]
    engine.dispose()
