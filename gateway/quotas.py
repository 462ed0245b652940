"""Daily quotas without a database round trip per request on the event loop.

The policy engine asks ``used(user, scenario, day)`` synchronously inside ``decide``. Reading the counter
table there would block the event loop for every request; instead the pipeline ``prefetch``es the count
off the loop (only when the cached value is older than ``ttl_s``), and ``consume`` stores the total the
database returns. Within one process the count is exact; across processes a count is at most ``ttl_s``
old, so several processes may together overshoot a quota by the pages served in that window. The
counting itself stays one atomic upsert per key (policies.quotas.SqlQuotaCounter), so totals are never
lost.

Counting is group-committed, like the audit log: ``consume_async`` queues the delta and a background
thread writes whatever deltas are waiting in ONE transaction (one upsert per distinct key), then
answers every caller with its key's new total. A durable commit per request would otherwise cost an
fsync (SQLite) or a WAL flush (PostgreSQL) each and, on SQLite, queue every request behind the single
write lock. A request is answered only after its pages are counted; if the batch cannot be written its
callers get the error (fail closed). By default that commit does not also wait for the disk
(``GRASSROOTS_QUOTA_WAIT_FOR_DISK``; see ``SqlQuotaCounter``): the audit event committed just before it
is the durable record, and a second fsync per request would double the commit latency a reader sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Protocol

from policies.quotas import QuotaCounter, QuotaKey

_MAX_ENTRIES = 100_000
_MAX_BATCH = 512

_log = logging.getLogger(__name__)


class BatchQuotaCounter(QuotaCounter, Protocol):
    def consume_many(self, deltas: Iterable[tuple[QuotaKey, int]]) -> dict[QuotaKey, int]: ...


_Pending = tuple[QuotaKey, int, "asyncio.Future[int]", asyncio.AbstractEventLoop]


def _settle(futures: list[asyncio.Future[int]], outcomes: list[int | BaseException]) -> None:
    for future, outcome in zip(futures, outcomes, strict=True):
        if future.done():
            continue  # the caller gave up; the pages are counted all the same
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


class CachedQuotaCounter:
    def __init__(self, inner: BatchQuotaCounter, ttl_s: float = 0.5) -> None:
        self._inner = inner
        self._ttl = ttl_s
        self._cache: OrderedDict[QuotaKey, tuple[int, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False

    def _store(self, key: QuotaKey, value: int) -> None:
        with self._lock:
            self._cache[key] = (value, time.monotonic())
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
        """Count synchronously, in a transaction of its own (threads, administrative paths)."""
        total = self._inner.consume(user_id, scenario, day, count)
        self._store((user_id, scenario, day), total)
        return total

    async def consume_async(self, user_id: str, scenario: str, day: str, count: int) -> int:
        """Count in the next group commit; the key's new total once it is durable."""
        if count < 0:
            raise ValueError("count must not be negative")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the quota counter is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="quota-group-commit", daemon=True)
                self._thread.start()
            self._queue.put(((user_id, scenario, day), count, future, loop))
        return await future

    def close(self, timeout: float | None = None) -> None:
        """Count everything already queued, then stop the thread."""
        with self._lock:
            thread, self._closed = self._thread, True
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < _MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[_Pending]) -> None:
        outcomes: list[int | BaseException]
        try:
            totals = self._inner.consume_many((key, count) for key, count, _, _ in batch)
        except Exception as exc:  # the database is down or refused: every caller of the batch fails
            _log.error("quota group commit failed: %s", type(exc).__name__)
            outcomes = [RuntimeError(f"quota counting failed ({type(exc).__name__})") for _ in batch]
        else:
            for key, total in totals.items():
                self._store(key, total)
            outcomes = [totals[key] for key, _, _, _ in batch]
        by_loop: dict[
            asyncio.AbstractEventLoop, tuple[list[asyncio.Future[int]], list[int | BaseException]]
        ] = {}
        for (_, _, future, loop), outcome in zip(batch, outcomes, strict=True):
            futures, results = by_loop.setdefault(loop, ([], []))
            futures.append(future)
            results.append(outcome)
        for loop, (futures, results) in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed event loop: nobody is waiting any more
                loop.call_soon_threadsafe(_settle, futures, results)
