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
  never both take the last records. :class:`SharedHoldWriter` takes them on a connection and a thread of
  its own: one statement per hold, and one round trip for the holds waiting together (a session per hold
  cost a ping, BEGIN, SET LOCAL and COMMIT besides, and a thread-pool hop). The audit transaction then
  adds ``served - held`` (giving back what was not served, or all of it on a refusal), so once settled
  the counter is exactly what the audit events say. A hold whose audit commit fails is given back in a
  transaction of its own; a process that dies holding one leaves the day's count that much high (fail
  closed), never low.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final, Protocol

from sqlalchemy import Engine

from policies.quotas import (
    QuotaCounter,
    QuotaKey,
    add_counts,
    reserve_count,
    send_reserve,
    used_count,
)

_MAX_ENTRIES = 100_000
_log = logging.getLogger("gateway.quotas")


class SharedQuotaStore(QuotaCounter, Protocol):
    """A counter every process reads and writes (:class:`policies.SqlQuotaCounter`)."""

    def reserve(self, key: QuotaKey, count: int, limit: int) -> tuple[bool, int]: ...

    def release(self, key: QuotaKey, count: int) -> int: ...


class QuotaUnavailable(Exception):
    """The shared counter could not take a hold: the request must not be served."""


# The key, the count, the limit, the caller's future and event loop.
_HoldItem = tuple[QuotaKey, int, int, "asyncio.Future[tuple[bool, int]]", asyncio.AbstractEventLoop]
_STOP: Final = object()


def _answer(future: asyncio.Future[tuple[bool, int]], outcome: tuple[bool, int] | BaseException) -> None:
    """On the caller's event loop: hand it the hold's outcome (unless it gave up waiting)."""
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class SharedHoldWriter:
    """Takes holds in the shared counter (PostgreSQL) on one connection and one thread of its own.

    Each hold is the conditional upsert of :func:`policies.quotas.reserve_count`, sent alone in autocommit
    mode, so it is committed the moment it is taken and every process sees it at once: one round trip.
    The session runs with ``synchronous_commit = off``, as the per-hold transaction did: a hold is only
    ever relied on through the audit commit that settles it, a later commit on the same server, which
    makes it durable too (the WAL is flushed in order); a hold lost in a crash before that served nothing.
    Holds asked for while the thread waits on the server go out together next, as one pipeline and one
    transaction (:meth:`_reserve`), so the writer keeps up however many requests arrive at once. The
    connection is the writer's alone (detached from the pool, so its session settings never reach another
    user) and is replaced after any failure, which fails only the holds sent with it (their callers
    answer 503 and serve nothing).
    """

    def __init__(self, engine: Engine) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError("shared quota holds are taken on PostgreSQL")
        self._engine = engine
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"SharedHoldWriter(closed={self._closed})"

    async def reserve(self, key: QuotaKey, count: int, limit: int) -> tuple[bool, int]:
        """Like :meth:`policies.SqlQuotaCounter.reserve`: (taken, the total now)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[bool, int]] = loop.create_future()
        with self._lock:
            if self._closed:
                raise QuotaUnavailable()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="quota-holds", daemon=True)
                self._thread.start()
            self._queue.put((key, count, limit, future, loop))
        return await future

    def close(self, timeout: float | None = None) -> None:
        """Take the holds already asked for, then stop the thread and close the connection."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            self._queue.put(_STOP)
        if thread is not None:
            thread.join(timeout)

    def _connect(self) -> Any:
        raw = self._engine.raw_connection()
        raw.detach()  # never back into the pool: autocommit and synchronous_commit=off are this writer's
        try:
            connection: Any = raw.dbapi_connection  # (driver_connection is None once detached)
            connection.autocommit = True
            connection.execute("SET synchronous_commit = off")
        except BaseException:
            raw.close()
            raise
        return raw

    def _run(self) -> None:
        raw: Any = None
        stop = False
        try:
            while not stop:
                first = self._queue.get()
                if first is _STOP:
                    return
                batch: list[_HoldItem] = [first]  # type: ignore[list-item]
                while True:  # the holds asked for meanwhile go out with it
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stop = True
                        break
                    batch.append(item)  # type: ignore[arg-type]
                outcomes: list[tuple[bool, int] | BaseException]
                try:
                    if raw is None:
                        raw = self._connect()
                    holds = [(key, count, limit) for key, count, limit, _, _ in batch]
                    outcomes = [*self._reserve(holds, raw)]
                except Exception as exc:
                    _log.warning("quota holds could not be taken: %s", type(exc).__name__)
                    outcomes = [QuotaUnavailable() for _ in batch]
                    if raw is not None:
                        with contextlib.suppress(Exception):
                            raw.close()
                        raw = None
                for (_, _, _, future, loop), outcome in zip(batch, outcomes, strict=True):
                    with contextlib.suppress(RuntimeError):  # that event loop is closed: nobody waits
                        loop.call_soon_threadsafe(_answer, future, outcome)
        finally:
            if raw is not None:
                with contextlib.suppress(Exception):
                    raw.close()

    @staticmethod
    def _reserve(holds: list[tuple[QuotaKey, int, int]], raw: Any) -> list[tuple[bool, int]]:
        """Each hold's (taken, total now). Several holds go out as one libpq pipeline: one round trip,
        and one implicit transaction in which each conditional upsert sees the ones before it (on one
        key they add up exactly as one after the other would), committed at its end, before anyone is
        answered; an error in any of them takes none."""
        connection: Any = raw.dbapi_connection
        cursors = [connection.cursor() for _ in holds]
        try:
            totals: list[int | None] = []
            if len(holds) == 1:
                key, count, limit = holds[0]
                totals.append(reserve_count(cursors[0], "postgresql", key, count, limit))
            else:
                with connection.pipeline():
                    sent = [
                        send_reserve(cursor, "postgresql", key, count, limit)
                        for cursor, (key, count, limit) in zip(cursors, holds, strict=True)
                    ]
                for cursor, was_sent in zip(cursors, sent, strict=True):
                    row = cursor.fetchone() if was_sent else None
                    totals.append(None if row is None else int(row[0]))
            return [
                (True, total) if total is not None else (False, used_count(cursors[0], "postgresql", key))
                for total, (key, _, _) in zip(totals, holds, strict=True)
            ]
        finally:
            for cursor in cursors:
                cursor.close()


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

    def __init__(
        self,
        inner: QuotaCounter,
        ttl_s: float = 0.5,
        *,
        shared: bool = False,
        holds: SharedHoldWriter | None = None,
    ) -> None:
        self._inner = inner
        #: Where shared holds are taken (None: through ``inner.reserve`` on a worker thread).
        self._holds = holds
        self._ttl = ttl_s
        self._cache: OrderedDict[QuotaKey, tuple[int, float]] = OrderedDict()
        self._lock = threading.Lock()
        #: In-memory holds of requests between their decision and their audit commit (``shared=False``).
        self._held: dict[QuotaKey, int] = {}
        self.shared = shared

    def remember(self, key: QuotaKey, total: int) -> None:
        """Keep ``total``, the key's count as a commit or a shared hold just returned it."""
        with self._lock:
            self._keep(key, total)

    def _keep(self, key: QuotaKey, total: int) -> None:
        self._cache[key] = (total, time.monotonic())
        self._cache.move_to_end(key)
        while len(self._cache) > _MAX_ENTRIES:
            self._cache.popitem(last=False)

    def _remember_read(self, key: QuotaKey, value: int, started: float) -> int:
        """Keep ``value``, read from the database by a read that began at ``started``, unless a total was
        remembered since it began: that one is at least as new (a commit's total, counted after the read's
        snapshot), and a slow read put over it would forget records served meanwhile, letting parallel
        requests serve past the quota. The count now kept."""
        with self._lock:
            entry = self._cache.get(key)
            if entry is not None and entry[1] >= started:
                return entry[0]
            self._keep(key, value)
            return value

    def _fresh(self, key: QuotaKey) -> int | None:
        entry = self._cache.get(key)
        if entry is None or time.monotonic() - entry[1] > self._ttl:
            return None
        return entry[0]

    async def prefetch(self, user_id: str, scenario: str, day: str) -> None:
        """Make ``used`` answer from memory for this key (reads the database only when stale)."""
        key = (user_id, scenario, day)
        if self._fresh(key) is None:
            started = time.monotonic()
            value = await asyncio.to_thread(self._inner.used, user_id, scenario, day)
            self._remember_read(key, value, started)

    def used(self, user_id: str, scenario: str, day: str) -> int:
        """Committed plus held: what a new request must leave room for."""
        key = (user_id, scenario, day)
        cached = self._fresh(key)
        if cached is None:
            # Not prefetched (e.g. an administrative dry run): read through, never guess.
            started = time.monotonic()
            cached = self._remember_read(key, self._inner.used(user_id, scenario, day), started)
        return cached + self._held.get(key, 0)

    async def hold(self, key: QuotaKey, count: int, limit: int) -> QuotaHold | None:
        """Take ``count`` of ``key``'s ``limit`` for one request, or None if it does not fit beside what
        is committed and held. Settle with :meth:`QuotaHold.settlement` in the audit transaction, then
        :meth:`drop`; or :meth:`give_back` if that transaction failed."""
        if self.shared:
            store: SharedQuotaStore = self._inner  # type: ignore[assignment]
            try:
                if self._holds is not None:
                    taken, total = await self._holds.reserve(key, count, limit)
                else:
                    taken, total = await asyncio.to_thread(store.reserve, key, count, limit)
            except QuotaUnavailable:
                raise
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
