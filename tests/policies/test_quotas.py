"""Quota counters: the in-memory one, and the SQL one whose atomic upsert keeps several gateway
processes counting consistently (SQLite here; PostgreSQL with two real processes when configured)."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from policies import InMemoryQuotaCounter, SqlQuotaCounter, metadata, quota_day
from policies.quotas import add_counts

DAY = "2025-03-03"


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


def test_consume_many_sums_per_key_in_one_transaction(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+pysqlite:///{tmp_path / 'q.db'}")
    metadata.create_all(engine)
    commits: list[int] = []
    event.listen(engine, "commit", lambda _conn: commits.append(1))
    counter = SqlQuotaCounter(sessionmaker(engine))
    deltas = [(("u1", "S", DAY), 5), (("u2", "S", DAY), 1), (("u1", "S", DAY), 7), (("u1", "T", DAY), 2)]
    assert counter.consume_many(deltas) == {("u1", "S", DAY): 12, ("u2", "S", DAY): 1, ("u1", "T", DAY): 2}
    assert len(commits) == 1
    assert counter.consume_many([(("u1", "S", DAY), 3)]) == {("u1", "S", DAY): 15}
    assert counter.consume_many([]) == {}
    with pytest.raises(ValueError, match="negative"):
        counter.consume_many([(("u1", "S", DAY), -1)])
    assert counter.used("u1", "S", DAY) == 15
    assert InMemoryQuotaCounter().consume_many(deltas) == {
        ("u1", "S", DAY): 12,
        ("u2", "S", DAY): 1,
        ("u1", "T", DAY): 2,
    }
    engine.dispose()


def test_add_counts_refuses_a_dialect_it_has_no_statement_for() -> None:
    with pytest.raises(ValueError, match="mysql"):
        add_counts(object(), "mysql", [(("u1", "S", DAY), 1)])
