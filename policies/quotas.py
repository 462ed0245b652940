"""Daily per-user read volume per scenario, counted in local (UTC+8) days.

The engine only reads the counter (``used``); the gateway adds what it actually returned, in the same
transaction as the audit event recording that access (:func:`add_counts`). Counting is one atomic upsert
per key, so several gateway processes sharing a database count consistently.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Final, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from policies.scenarios import CHINA_STANDARD_TIME
from policies.tables import QuotaUsageRow

__all__ = [
    "InMemoryQuotaCounter",
    "QuotaCounter",
    "QuotaKey",
    "SqlQuotaCounter",
    "add_counts",
    "quota_day",
    "reserve_count",
    "send_reserve",
    "used_count",
]


def quota_day(now: datetime) -> str:
    """The local calendar day a quota belongs to (China Standard Time, no DST)."""
    return now.astimezone(CHINA_STANDARD_TIME).date().isoformat()


QuotaKey = tuple[str, str, str]
"""(user_id, scenario, day)"""


class QuotaCounter(Protocol):
    def used(self, user_id: str, scenario: str, day: str) -> int: ...

    def consume(self, user_id: str, scenario: str, day: str, count: int) -> int: ...


def _summed(deltas: Iterable[tuple[QuotaKey, int]], allow_negative: bool = False) -> dict[QuotaKey, int]:
    summed: dict[QuotaKey, int] = {}
    for key, count in deltas:
        if count < 0 and not allow_negative:
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


# One atomic upsert per key, straight on a driver cursor, so that the gateway can run it inside the audit
# log's own transaction (gateway.quotas.CountedWithAudit): the count and the event that records the
# access then commit together, under one fsync. Table and columns: policies.tables.QuotaUsageRow.
_UPSERT: Final = (
    "INSERT INTO policy_quota_usage (user_id, scenario, day, used) VALUES ({p}, {p}, {p}, {p}) "
    "ON CONFLICT (user_id, scenario, day) DO UPDATE SET used = policy_quota_usage.used + excluded.used "
    "RETURNING used"
)
_UPSERT_BY_DIALECT: Final = {"sqlite": _UPSERT.format(p="?"), "postgresql": _UPSERT.format(p="%s")}

# The same upsert, taken only while the total stays within the quota: a reservation several processes can
# race for, the row lock deciding (the loser's WHERE is false and it gets no row back). A key without a row
# is inserted as is; the caller never reserves more than the whole quota.
_RESERVE: Final = _UPSERT.replace(
    " RETURNING used", " WHERE policy_quota_usage.used + excluded.used <= {p} RETURNING used"
)
_RESERVE_BY_DIALECT: Final = {"sqlite": _RESERVE.format(p="?"), "postgresql": _RESERVE.format(p="%s")}


def _statement(by_dialect: dict[str, str], dialect: str) -> str:
    try:
        return by_dialect[dialect]
    except KeyError:
        raise ValueError(f"quota counting does not support the {dialect} dialect") from None


def add_counts(
    cursor: Any, dialect: str, deltas: Iterable[tuple[QuotaKey, int]], *, allow_negative: bool = False
) -> dict[QuotaKey, int]:
    """Add the deltas (summed per key) through a DB-API ``cursor`` of ``dialect`` ("sqlite" or
    "postgresql") in the caller's open transaction; each key's new total. Keys are written in sorted
    order, so two transactions counting the same keys never deadlock on PostgreSQL.

    ``allow_negative``: a delta may give back part of a reservation (:func:`reserve_count`) that was
    not served; only the gateway's reservation bookkeeping passes it."""
    summed = _summed(deltas, allow_negative)
    statement = _statement(_UPSERT_BY_DIALECT, dialect)
    totals: dict[QuotaKey, int] = {}
    for key in sorted(summed):
        if summed[key] == 0 and allow_negative:
            continue  # a reservation served in full: nothing to correct
        cursor.execute(statement, (*key, summed[key]))
        totals[key] = int(cursor.fetchone()[0])
    return totals


def reserve_count(cursor: Any, dialect: str, key: QuotaKey, count: int, limit: int) -> int | None:
    """Add ``count`` to ``key`` only if the total stays at most ``limit``, atomically (one conditional
    upsert): the new total, or None when it would not fit (nothing written)."""
    if not send_reserve(cursor, dialect, key, count, limit):
        return None
    row = cursor.fetchone()
    return None if row is None else int(row[0])


def send_reserve(cursor: Any, dialect: str, key: QuotaKey, count: int, limit: int) -> bool:
    """Execute :func:`reserve_count`'s upsert without reading its answer (for a pipeline: the new total,
    or no row when it did not fit, is then the cursor's to fetch). False: ``count`` exceeds the whole
    ``limit``, so nothing was sent."""
    if count < 0:
        raise ValueError("count must not be negative")
    if count > limit:
        return False
    cursor.execute(_statement(_RESERVE_BY_DIALECT, dialect), (*key, count, limit))
    return True


_USED: Final = "SELECT used FROM policy_quota_usage WHERE user_id = {p} AND scenario = {p} AND day = {p}"
_USED_BY_DIALECT: Final = {"sqlite": _USED.format(p="?"), "postgresql": _USED.format(p="%s")}


def used_count(cursor: Any, dialect: str, key: QuotaKey) -> int:
    """``key``'s count as it stands (0 without a row), through a DB-API ``cursor``."""
    cursor.execute(_statement(_USED_BY_DIALECT, dialect), key)
    row = cursor.fetchone()
    return 0 if row is None else int(row[0])


class SqlQuotaCounter:
    """Counter rows in ``policy_quota_usage``. ``session_factory`` yields a Session per call; ``consume``
    commits its own tiny transaction so the count is visible to every process at once. (The gateway's
    data path counts inside the audit transaction instead: :func:`add_counts`.)
    """

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

    def consume_many(
        self, deltas: Iterable[tuple[QuotaKey, int]], *, allow_negative: bool = False
    ) -> dict[QuotaKey, int]:
        """Add every delta in ONE transaction, one atomic upsert per distinct key (:func:`add_counts`).
        Returns each key's new total."""
        deltas = list(deltas)
        if not deltas:
            return {}
        with self._session_factory() as session:
            connection = session.connection()
            cursor = connection.connection.cursor()
            try:
                totals = add_counts(cursor, connection.dialect.name, deltas, allow_negative=allow_negative)
            finally:
                cursor.close()
            session.commit()
        return totals

    def reserve(self, key: QuotaKey, count: int, limit: int) -> tuple[bool, int]:
        """Take ``count`` of ``key``'s quota of ``limit`` in a committed transaction of its own, so every
        process sees it at once: (taken, the total now). Not taken: the total as it stands."""
        with self._session_factory() as session:
            connection = session.connection()
            cursor = connection.connection.cursor()
            try:
                if connection.dialect.name == "postgresql":
                    # No fsync of its own: a hold is only ever relied on through the audit commit that
                    # settles it, a later commit on the same server, which makes this one durable too
                    # (the WAL is flushed in order). A hold lost in a crash before that served nothing.
                    cursor.execute("SET LOCAL synchronous_commit = off")
                total = reserve_count(cursor, connection.dialect.name, key, count, limit)
            finally:
                cursor.close()
            session.commit()
        if total is not None:
            return True, total
        return False, self.used(*key)

    def release(self, key: QuotaKey, count: int) -> int:
        """Give back ``count`` reserved by :meth:`reserve` and not served; the total now."""
        return self.consume_many([(key, -count)], allow_negative=True)[key]
