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

from sqlalchemy import Connection, select
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
    ``consume`` commits its own tiny transaction so the count is visible to every process at once.

    ``wait_for_disk=False`` commits the counting without waiting for the disk: SQLite
    ``synchronous=NORMAL`` for that transaction (in WAL mode the commit is written but fsynced with the
    next durable commit or checkpoint), PostgreSQL ``SET LOCAL synchronous_commit = off``. The count is
    visible to every process at once either way and the counter can never be corrupted; a power cut can
    lose only the last increments. A quota is a rate limit, not a record: the record of every access is
    the audit event, which is committed durably before the pages are counted. Waiting for a second
    fsync per request would add about as much latency as the audit commit itself.
    """

    def __init__(self, session_factory: Callable[[], Session], *, wait_for_disk: bool = True) -> None:
        self._session_factory = session_factory
        self._wait_for_disk = wait_for_disk

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
            bound = session.get_bind()
        bind = bound.engine if isinstance(bound, Connection) else bound
        dialect = bind.dialect.name
        insert_fn: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
        relaxed = not self._wait_for_disk and dialect in ("sqlite", "postgresql")
        # One connection held from the first statement to the restore below, so the relaxed setting
        # never leaves with it into the pool.
        with bind.connect() as connection:
            if relaxed and dialect == "sqlite":
                # Before BEGIN: the setting applies to this connection's next commits.
                connection.exec_driver_sql("PRAGMA synchronous=NORMAL")
                connection.commit()
            try:
                with connection.begin():
                    if relaxed and dialect == "postgresql":
                        connection.exec_driver_sql("SET LOCAL synchronous_commit = off")
                    for key in sorted(summed):
                        (user_id, scenario, day), count = key, summed[key]
                        stmt = (
                            insert_fn(QuotaUsageRow)
                            .values(user_id=user_id, scenario=scenario, day=day, used=count)
                            .on_conflict_do_update(
                                index_elements=[
                                    QuotaUsageRow.user_id,
                                    QuotaUsageRow.scenario,
                                    QuotaUsageRow.day,
                                ],
                                set_={"used": QuotaUsageRow.used + count},
                            )
                            .returning(QuotaUsageRow.used)
                        )
                        totals[key] = int(connection.execute(stmt).scalar_one())
            finally:
                if relaxed and dialect == "sqlite":
                    _restore_full_sync(connection)
        return totals


def _restore_full_sync(connection: Connection) -> None:
    """Put ``synchronous=FULL`` back before the connection returns to the pool; a connection that cannot
    be restored is discarded, so no later writer (audit, grants) ever commits on it without an fsync."""
    try:
        connection.rollback()
        connection.exec_driver_sql("PRAGMA synchronous=FULL")
        connection.commit()
    except Exception:
        connection.invalidate()
        raise
