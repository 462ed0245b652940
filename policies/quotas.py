"""Daily per-user read volume per scenario, counted in local (UTC+8) days.

The engine only reads the counter (``used``); the gateway adds what it actually returned (``consume``)
after the response is committed. ``SqlQuotaCounter`` increments with one atomic upsert, so several
gateway processes sharing a database count consistently.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from policies.scenarios import CHINA_STANDARD_TIME
from policies.tables import QuotaUsageRow

__all__ = ["InMemoryQuotaCounter", "QuotaCounter", "QuotaKey", "SqlQuotaCounter", "quota_day"]


def quota_day(now: datetime) -> str:
    """The local calendar day a quota belongs to (China Standard Time, no DST)."""
    return now.astimezone(CHINA_STANDARD_TIME).date().isoformat()


QuotaKey = tuple[str, str, str]
"""(user_id, scenario, day)"""


class QuotaCounter(Protocol):
    def used(self, user_id: str, scenario: str, day: str) -> int: ...

    def consume(self, user_id: str, scenario: str, day: str, count: int) -> int: ...


def _summed(deltas: Iterable[tuple[QuotaKey, int]]) -> dict[QuotaKey, int]:
    summed: dict[QuotaKey, int] = {}
    for key, count in deltas:
        if count < 0:
            raise ValueError("count must not be negative")
        summed[key] = summed.get(key, 0) + count
    return summed


class InMemoryQuotaCounter:
    """One process only: for tests, replays and single-process deployments."""

    def __init__(self) -> None:
        self._used: dict[tuple[str, str, str], int] = {}
        self._lock = threading.Lock()

    def used(self, user_id: str, scenario: str, day: str) -> int:
        return self._used.get((user_id, scenario, day), 0)

    def consume(self, user_id: str, scenario: str, day: str, count: int) -> int:
        if count < 0:
            raise ValueError("count must not be negative")
        with self._lock:
            key = (user_id, scenario, day)
            total = self._used.get(key, 0) + count
            self._used[key] = total
            return total

    def consume_many(self, deltas: Iterable[tuple[QuotaKey, int]]) -> dict[QuotaKey, int]:
        """Add every delta; the new total of each key."""
        summed = _summed(deltas)
        with self._lock:
            for key, count in summed.items():
                self._used[key] = self._used.get(key, 0) + count
            return {key: self._used[key] for key in summed}


class SqlQuotaCounter:
    """Counter rows in ``policy_quota_usage``. ``session_factory`` yields a Session per call;
    ``consume`` commits its own tiny transaction so the count is visible to every process at once."""

    def __init__(self, session_factory: Callable[[], Session]) -> None:
        self._session_factory = session_factory

    def used(self, user_id: str, scenario: str, day: str) -> int:
        with self._session_factory() as session:
            value = session.scalar(
                select(QuotaUsageRow.used).where(
                    QuotaUsageRow.user_id == user_id,
                    QuotaUsageRow.scenario == scenario,
                    QuotaUsageRow.day == day,
                )
            )
            return int(value or 0)

    def consume(self, user_id: str, scenario: str, day: str, count: int) -> int:
        return self.consume_many([((user_id, scenario, day), count)])[(user_id, scenario, day)]

    def consume_many(self, deltas: Iterable[tuple[QuotaKey, int]]) -> dict[QuotaKey, int]:
        """Add every delta in ONE transaction (one durable commit for a whole batch of requests), one
        atomic upsert per distinct key, in key order so concurrent batches never deadlock on PostgreSQL.
        Returns each key's new total."""
        summed = _summed(deltas)
        totals: dict[QuotaKey, int] = {}
        if not summed:
            return totals
        with self._session_factory() as session:
            dialect = session.get_bind().dialect.name
            insert_fn: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
            for key in sorted(summed):
                (user_id, scenario, day), count = key, summed[key]
                stmt = (
                    insert_fn(QuotaUsageRow)
                    .values(user_id=user_id, scenario=scenario, day=day, used=count)
                    .on_conflict_do_update(
                        index_elements=[QuotaUsageRow.user_id, QuotaUsageRow.scenario, QuotaUsageRow.day],
                        set_={"used": QuotaUsageRow.used + count},
                    )
                    .returning(QuotaUsageRow.used)
                )
                totals[key] = int(session.execute(stmt).scalar_one())
            session.commit()
        return totals
