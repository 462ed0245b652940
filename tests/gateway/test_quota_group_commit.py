"""The gateway's quota counter group-commits: many requests' pages counted in one transaction, every
caller answered with a consistent running total, and every caller of a failed batch refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event
from sqlalchemy.orm import sessionmaker

from gateway.quotas import CachedQuotaCounter
from policies import InMemoryQuotaCounter, SqlQuotaCounter, metadata

DAY = "2025-03-03"


def _sql_counter(tmp_path: Path) -> tuple[SqlQuotaCounter, list[int]]:
    engine = create_engine(f"sqlite+pysqlite:///{tmp_path / 'q.db'}")
    metadata.create_all(engine)
    commits: list[int] = []
    event.listen(engine, "commit", lambda _conn: commits.append(1))
    return SqlQuotaCounter(sessionmaker(engine)), commits


def test_consume_many_sums_per_key_in_one_transaction(tmp_path: Path) -> None:
    counter, commits = _sql_counter(tmp_path)
    deltas = [(("u1", "S", DAY), 5), (("u2", "S", DAY), 1), (("u1", "S", DAY), 7), (("u1", "T", DAY), 2)]
    assert counter.consume_many(deltas) == {("u1", "S", DAY): 12, ("u2", "S", DAY): 1, ("u1", "T", DAY): 2}
    assert len(commits) == 1
    assert counter.consume_many([(("u1", "S", DAY), 3)]) == {("u1", "S", DAY): 15}
    assert counter.consume_many([]) == {}
    with pytest.raises(ValueError):
        counter.consume_many([(("u1", "S", DAY), -1)])
    assert counter.used("u1", "S", DAY) == 15
    memory = InMemoryQuotaCounter()
    assert memory.consume_many(deltas) == {("u1", "S", DAY): 12, ("u2", "S", DAY): 1, ("u1", "T", DAY): 2}


async def test_concurrent_requests_share_commits_and_see_distinct_totals(tmp_path: Path) -> None:
    inner, commits = _sql_counter(tmp_path)
    counter = CachedQuotaCounter(inner, ttl_s=60)
    try:
        totals = await asyncio.gather(*(counter.consume_async("u1", "S", DAY, 1) for _ in range(200)))
    finally:
        counter.close()
    # Within a batch every caller gets the batch's total; across batches totals only grow, and the
    # last one is exact.
    assert max(totals) == 200 and inner.used("u1", "S", DAY) == 200
    assert len(commits) < 200  # group commit: fewer transactions than requests
    assert counter.used("u1", "S", DAY) == 200  # the cache holds the committed total


async def test_a_failed_batch_fails_every_caller_and_counts_nothing(tmp_path: Path) -> None:
    class Broken(InMemoryQuotaCounter):
        def consume_many(self, deltas: object) -> dict[tuple[str, str, str], int]:
            raise OSError("disk full")

    counter = CachedQuotaCounter(Broken(), ttl_s=60)
    try:
        results = await asyncio.gather(
            *(counter.consume_async("u1", "S", DAY, 1) for _ in range(5)), return_exceptions=True
        )
    finally:
        counter.close()
    assert all(isinstance(r, RuntimeError) and "OSError" in str(r) for r in results)
    assert "disk full" not in " ".join(str(r) for r in results)


async def test_close_counts_what_was_queued_then_refuses(tmp_path: Path) -> None:
    inner, _ = _sql_counter(tmp_path)
    counter = CachedQuotaCounter(inner, ttl_s=60)
    assert await counter.consume_async("u1", "S", DAY, 4) == 4
    counter.close()
    assert inner.used("u1", "S", DAY) == 4
    with pytest.raises(RuntimeError):
        await counter.consume_async("u1", "S", DAY, 1)
