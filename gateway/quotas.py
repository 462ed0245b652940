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

Counting after the fact alone let parallel requests overrun a quota: each was decided on the count of
what had been *committed*, so forty requests at 1990/2000 all passed. A request therefore takes a
:class:`QuotaHold` on its page before calling the upstream, checked against the limit atomically with
everything already held:

* one process (``shared=False``, the SQLite deployment): the hold is in memory, under the cache's lock,
  and ``used`` answers committed + held, so the policy engine refuses what is already spoken for. No
  database round trip; the hold is dropped once the audit commit has counted what was served.
* several processes on one database (``shared=True``, PostgreSQL): the hold is written to the counter row
  itself by a conditional upsert (``... WHERE used + n <= limit``) committed at once, so two workers can
  never both take the last records. The audit transaction then adds ``served - held`` (giving back what
  was not served, or all of it on a refusal), so once settled the counter is exactly what the audit
  events say. A hold whose audit commit fails is given back in a transaction of its own; a process that
  dies holding one leaves the day's count that much high (fail closed), never low.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

from policies.quotas import QuotaCounter, QuotaKey, add_counts

_MAX_ENTRIES = 100_000
_log = logging.getLogger("gateway.quotas")


class SharedQuotaStore(QuotaCounter, Protocol):
    """A counter every process reads and writes (:class:`policies.SqlQuotaCounter`)."""

    def reserve(self, key: QuotaKey, count: int, limit: int) -> tuple[bool, int]: ...

    def release(self, key: QuotaKey, count: int) -> int: ...


class QuotaUnavailable(Exception):
    """The shared counter could not take a hold: the request must not be served."""


@dataclass(frozen=True, slots=True)
class QuotaHold:
    """``count`` records of ``key``'s daily quota taken by one request before its upstream call.
    ``in_store``: written to the shared counter (settled by the audit transaction), else held in memory."""

    key: QuotaKey
    count: int
    in_store: bool

    def settlement(self, served: int) -> tuple[QuotaKey, int] | None:
        """The audit companion's payload for a request that served ``served`` records under this hold."""
        delta = served - self.count if self.in_store else served
        return None if delta == 0 else (self.key, delta)


class CachedQuotaCounter:
    """A read cache over ``inner`` (the policy engine's ``quotas``), refreshed by :meth:`prefetch` and by
    the totals each count returns."""

    def __init__(self, inner: QuotaCounter, ttl_s: float = 0.5, *, shared: bool = False) -> None:
        self._inner = inner
        self._ttl = ttl_s
        self._cache: OrderedDict[QuotaKey, tuple[int, float]] = OrderedDict()
        self._lock = threading.Lock()
        #: In-memory holds of requests between their decision and their audit commit (``shared=False``).
        self._held: dict[QuotaKey, int] = {}
        self.shared = shared

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
        """Committed plus held: what a new request must leave room for."""
        key = (user_id, scenario, day)
        cached = self._fresh(key)
        if cached is None:
            # Not prefetched (e.g. an administrative dry run): read through, never guess.
            cached = self._inner.used(user_id, scenario, day)
            self.remember(key, cached)
        return cached + self._held.get(key, 0)

    async def hold(self, key: QuotaKey, count: int, limit: int) -> QuotaHold | None:
        """Take ``count`` of ``key``'s ``limit`` for one request, or None if it does not fit beside what
        is committed and held. Settle with :meth:`QuotaHold.settlement` in the audit transaction, then
        :meth:`drop`; or :meth:`give_back` if that transaction failed."""
        if self.shared:
            store: SharedQuotaStore = self._inner  # type: ignore[assignment]
            try:
                taken, total = await asyncio.to_thread(store.reserve, key, count, limit)
            except Exception as exc:
                # The counter cannot be written: nothing may be served uncounted (fail closed, 503).
                raise QuotaUnavailable() from exc
            self.remember(key, total)
            return QuotaHold(key, count, in_store=True) if taken else None
        with self._lock:
            entry = self._cache.get(key)
            # The count the decision just used (prefetched); stale or evicted only in a race with the TTL,
            # when it is read again (rare, and never guessed).
            committed = entry[0] if entry is not None else self._inner.used(*key)
            held = self._held.get(key, 0)
            if committed + held + count > limit:
                return None
            self._held[key] = held + count
        return QuotaHold(key, count, in_store=False)

    def drop(self, hold: QuotaHold) -> None:
        """The audit commit has counted what ``hold`` served: forget the in-memory hold."""
        if hold.in_store:
            return
        with self._lock:
            left = self._held.get(hold.key, 0) - hold.count
            if left > 0:
                self._held[hold.key] = left
            else:
                self._held.pop(hold.key, None)

    async def give_back(self, hold: QuotaHold) -> None:
        """Nothing was counted for a shared ``hold`` (its audit commit failed): release all of it in the
        store. (An in-memory hold needs only :meth:`drop`.)"""
        if not hold.in_store:
            return
        store: SharedQuotaStore = self._inner  # type: ignore[assignment]
        try:
            total = await asyncio.to_thread(store.release, hold.key, hold.count)
        except Exception:
            # The counter stays high by this hold for the day: fail closed, never over the quota.
            _log.error("a quota hold could not be given back; the day's count stays high by it")
            return
        self.remember(hold.key, total)

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
        # Negative: a shared hold giving back what its request did not serve (QuotaHold.settlement).
        return add_counts(cursor, dialect, payloads, allow_negative=self._cache.shared)

    def committed(self, written: object) -> None:
        assert isinstance(written, dict)
        for key, total in written.items():
            self._cache.remember(key, total)
