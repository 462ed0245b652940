"""Daily quotas without a database read on the event loop.

The policy engine asks ``used(user, scenario, day)`` synchronously inside ``decide``. Reading the counter
table there would block the event loop for every request; instead the pipeline ``prefetch``es the count
off the loop (only when the cached value is older than ``ttl_s``), and ``consume`` stores the total the
database returns. Within one process the count is exact; across processes a count is at most ``ttl_s``
old, so several processes may together overshoot a quota by the pages served in that window. The
counting itself stays one atomic upsert (policies.quotas.SqlQuotaCounter), so totals are never lost.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict

from policies.quotas import QuotaCounter

_MAX_ENTRIES = 100_000


class CachedQuotaCounter:
    def __init__(self, inner: QuotaCounter, ttl_s: float = 0.5) -> None:
        self._inner = inner
        self._ttl = ttl_s
        self._cache: OrderedDict[tuple[str, str, str], tuple[int, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _store(self, key: tuple[str, str, str], value: int) -> None:
        with self._lock:
            self._cache[key] = (value, time.monotonic())
            self._cache.move_to_end(key)
            while len(self._cache) > _MAX_ENTRIES:
                self._cache.popitem(last=False)

    def _fresh(self, key: tuple[str, str, str]) -> int | None:
        entry = self._cache.get(key)
        if entry is None or time.monotonic() - entry[1] > self._ttl:
            return None
        return entry[0]

    async def prefetch(self, user_id: str, scenario: str, day: str) -> None:
        """Make ``used`` answer from memory for this key (reads the database only when stale)."""
        key = (user_id, scenario, day)
        if self._fresh(key) is None:
            value = await asyncio.to_thread(self._inner.used, user_id, scenario, day)
            self._store(key, value)

    def used(self, user_id: str, scenario: str, day: str) -> int:
        key = (user_id, scenario, day)
        cached = self._fresh(key)
        if cached is not None:
            return cached
        # Not prefetched (e.g. an administrative dry run): read through, never guess.
        value = self._inner.used(user_id, scenario, day)
        self._store(key, value)
        return value

    def consume(self, user_id: str, scenario: str, day: str, count: int) -> int:
        total = self._inner.consume(user_id, scenario, day, count)
        self._store((user_id, scenario, day), total)
        return total
