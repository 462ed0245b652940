"""Daily quotas without a database round trip per request on the event loop.

The policy engine asks ``used(user, scenario, day)`` synchronously inside ``decide``. Reading the counter
table there would block the event loop for every request; instead the pipeline ``prefetch``es the count
off the loop (only when the cached value is older than ``ttl_s``), and counting stores the total the
database returns. Within one process the count is exact; across processes a count is at most ``ttl_s``
old, so several processes may together overshoot a quota by the pages served in that window. The
counting itself stays one atomic upsert per key (:func:`policies.quotas.add_counts`), so totals are
never lost.

The pages a request served are counted in the audit log's group commit (:class:`CountedWithAudit`, an
:class:`audit.TransactionCompanion`): the upserts run in the same transaction as the events, so the
access record and its count become durable together with one fsync, or neither does and the request
is refused (503, no data). A separate counting transaction per batch used to cost each request a second
commit and thread hand-off after the audit commit, about as much latency again.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from typing import Any

from policies.quotas import QuotaCounter, QuotaKey, add_counts

_MAX_ENTRIES = 100_000


class CachedQuotaCounter:
    """A read cache over ``inner`` (the policy engine's ``quotas``), refreshed by :meth:`prefetch` and by
    the totals each count returns."""

    def __init__(self, inner: QuotaCounter, ttl_s: float = 0.5) -> None:
        self._inner = inner
        self._ttl = ttl_s
        self._cache: OrderedDict[QuotaKey, tuple[int, float]] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, key: QuotaKey, total: int) -> None:
        """Keep ``total`` (just read or just committed) as the key's count."""
        with self._lock:
            self._cache[key] = (total, time.monotonic())
            self._cache.move_to_end(key)
            while len(self._cache) > _MAX_ENTRIES:
                self._cache.popitem(last=False)

    def _fresh(self, key: QuotaKey) -> int | None:
        entry = self._cache.get(key)
        if entry is None or time.monotonic() - entry[1] > self._ttl:
            return None
        return entry[0]

    async def prefetch(self, user_id: str, scenario: str, day: str) -> None:
        """Make ``used`` answer from memory for this key (reads the database only when stale)."""
        key = (user_id, scenario, day)
        if self._fresh(key) is None:
            value = await asyncio.to_thread(self._inner.used, user_id, scenario, day)
            self.remember(key, value)

    def used(self, user_id: str, scenario: str, day: str) -> int:
        key = (user_id, scenario, day)
        cached = self._fresh(key)
        if cached is not None:
            return cached
        # Not prefetched (e.g. an administrative dry run): read through, never guess.
        value = self._inner.used(user_id, scenario, day)
        self.remember(key, value)
        return value

    def consume(self, user_id: str, scenario: str, day: str, count: int) -> int:
        """Count synchronously, in a transaction of its own (threads, administrative paths)."""
        total = self._inner.consume(user_id, scenario, day, count)
        self.remember((user_id, scenario, day), total)
        return total


class CountedWithAudit:
    """The audit appender's companion: payloads are ``(QuotaKey, count)``; each batch adds them up per
    key inside the audit transaction and, once committed, refreshes the cache with the new totals."""

    def __init__(self, cache: CachedQuotaCounter) -> None:
        self._cache = cache

    def write(self, cursor: Any, dialect: str, payloads: list[Any]) -> dict[QuotaKey, int]:
        return add_counts(cursor, dialect, payloads)

    def committed(self, written: object) -> None:
        assert isinstance(written, dict)
        for key, total in written.items():
            self._cache.remember(key, total)
