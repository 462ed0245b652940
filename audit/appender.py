"""Group commit: many requests' audit events share one durable transaction.

A durable commit costs an fsync (SQLite ``synchronous=FULL``) or a WAL flush (PostgreSQL
``synchronous_commit=on``); paying it once per request would cap throughput at the disk's sync rate.
One background thread commits whatever events are waiting (up to ``max_batch``) in one transaction, then
at once the next lot that queued up meanwhile — classic group commit: no fixed sleep, the batch grows
with the load. Each caller's future resolves only after that commit, so "respond only after the event is
durable" still holds for every request. If the batch fails, every future in it fails with
:class:`AuditUnavailable` — nothing is half-logged.

The RFC 8785 encoding and leaf hash happen on the submitting thread (:func:`audit.log.prepare`): a bad
event is refused to its caller alone, and requests arriving while a batch commits are encoded while the
database works (sqlite3 and psycopg release the GIL in their calls). The committer resolves a batch's
asyncio futures with one wake-up of their event loop, not one per event, and keeps one database
connection for all its batches.

A :class:`TransactionCompanion` adds writes of its own to each batch's transaction: an event may carry
a payload (``append(event, companion=...)``), and the batch's payloads are written after its events and
before the commit. Both become durable with the one fsync, or neither does (the gateway counts the pages a
request served against its daily quota this way, atomically with the event recording that access).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, Final, Protocol

from audit.events import AuditEvent
from audit.log import AppendReceipt, AuditLog, AuditUnavailable, PreparedEvent, prepare

logger = logging.getLogger(__name__)

# The event, its caller's future, the caller's event loop (None: a thread's concurrent future), and the
# companion payload (None: nothing to add).
_Item = tuple[
    PreparedEvent,
    "Future[AppendReceipt] | asyncio.Future[AppendReceipt]",
    "asyncio.AbstractEventLoop | None",
    object,
]
_Outcome = AppendReceipt | BaseException
_STOP: Final = object()
# Batches this small mean a light load: only then does the thread checkpoint the WAL between batches.
# Under a heavy one (large batches, a queue that refills at once) SQLite's automatic checkpoint, rarer
# and larger, costs less per event: checkpointing every 50 ms in the 128-writer benchmark cost ~10%.
_LIGHT_BATCH: Final = 16


def _settle(futures: list[asyncio.Future[AppendReceipt]], outcomes: list[_Outcome]) -> None:
    """On the callers' event loop: hand each its receipt or error (unless its caller gave up)."""
    for future, outcome in zip(futures, outcomes, strict=True):
        if future.done():
            continue  # cancelled: the event is written all the same
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


class TransactionCompanion(Protocol):
    """Writes that commit in the same transaction as the events whose payloads they carry."""

    def write(self, cursor: Any, dialect: str, payloads: list[Any]) -> object:
        """Write ``payloads`` (in submission order) through the batch's DB-API ``cursor``; runs after the
        events are inserted, before the commit. Raising fails the whole batch: nothing is committed and
        every caller of the batch gets :class:`AuditUnavailable`. The result goes to :meth:`committed`."""
        ...

    def committed(self, written: object) -> None:
        """After the commit succeeded, with what :meth:`write` returned (e.g. to refresh a cache)."""
        ...


class _WalCheckpointer:
    """PASSIVE WAL checkpoints on a thread and connection of their own, at most every ``interval_s``, when
    the group-commit thread reports an idle moment.

    Requests that arrive while one runs are folded into one more run after it. A failure (e.g. disk full)
    is logged once until a checkpoint succeeds again; SQLite's automatic checkpoint remains."""

    def __init__(self, log: AuditLog, interval_s: float) -> None:
        self._log = log
        self._interval = interval_s
        self._requested = time.monotonic()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def idle(self) -> None:
        """The group-commit thread has just answered a small batch and nothing is waiting."""
        now = time.monotonic()
        if now - self._requested < self._interval:
            return
        self._requested = now
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="audit-wal-checkpoint", daemon=True)
            self._thread.start()
        self._wake.set()

    def close(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        warned = False
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            try:
                self._log.checkpoint_wal()
                warned = False
            except Exception as exc:
                if not warned:
                    logger.warning("audit WAL checkpoint failed: %s", type(exc).__name__)
                warned = True


class GroupCommitAppender:
    """Batches submitted events into single transactions on a background thread.

    Use ``start()`` once (``submit`` also starts it), ``await append(event)`` from async code or
    ``submit(event).result()`` from threads, and ``close()`` on shutdown: it drains what was submitted.
    ``max_wait_ms`` (default 0) lets a batch linger for more events after the first, up to the size of
    the batch before it; the default commits as soon as the previous commit has finished.

    On SQLite the WAL is also checkpointed (copied into the database file) when the thread has just
    answered a small batch (a light load) and nothing is waiting, at most every ``wal_checkpoint_s``
    seconds: small PASSIVE checkpoints in idle moments, instead of SQLite's automatic one, which runs
    inside some caller's commit and grows with the WAL (measured: 9-18 ms, once every ~360 requests for
    a page of 20). The checkpoint runs on a thread and connection of its own (:class:`_WalCheckpointer`):
    a PASSIVE checkpoint never blocks a writer, so an event that arrives meanwhile is committed at once
    instead of waiting the checkpoint out (measured at a steady 200 requests/s: 185 checkpoints in 10 s,
    2.4 ms each at the median, 6 ms at p99, each one a wait for whoever arrived during it). Under a
    heavy load (large batches, or a queue never empty) the automatic one (:data:`audit.log.SQLITE_PRAGMAS`)
    still does the job. ``None`` leaves checkpoints to SQLite alone.
    """

    def __init__(
        self,
        log: AuditLog,
        max_batch: int = 512,
        max_wait_ms: float = 0.0,
        companion: TransactionCompanion | None = None,
        wal_checkpoint_s: float | None = 0.05,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if max_wait_ms < 0:
            raise ValueError("max_wait_ms must not be negative")
        self._log = log
        self._max_batch = max_batch
        self._max_wait = max_wait_ms / 1000.0
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._companion = companion
        #: When the latest batch failed (``time.monotonic()``); None once a batch has committed since.
        self._failed_at: float | None = None
        if wal_checkpoint_s is not None and wal_checkpoint_s < 0:
            raise ValueError("wal_checkpoint_s must not be negative")
        self._checkpointer = (
            _WalCheckpointer(log, wal_checkpoint_s)
            if wal_checkpoint_s is not None and log.dialect == "sqlite"
            else None
        )

    def __repr__(self) -> str:
        return f"GroupCommitAppender(max_batch={self._max_batch}, closed={self._closed})"

    def start(self) -> None:
        with self._lock:
            self._start_locked()

    def _start_locked(self) -> None:
        if self._closed:
            raise AuditUnavailable("audit appender is closed")
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="audit-group-commit", daemon=True)
            self._thread.start()

    def _enqueue(self, item: _Item) -> None:
        # Under the lock: close() enqueues its stop marker after every accepted event.
        with self._lock:
            if self._thread is None or self._closed:
                self._start_locked()
            self._queue.put(item)

    def attach(self, companion: TransactionCompanion) -> None:
        """Set the companion whose writes join every batch (once, before events carry payloads)."""
        with self._lock:
            if self._companion is not None and self._companion is not companion:
                raise ValueError("this appender already has a companion")
            self._companion = companion

    def _payload(self, companion: object) -> object:
        if companion is not None and self._companion is None:
            raise ValueError("an event carries a companion payload but the appender has no companion")
        return companion

    def submit(self, event: AuditEvent, companion: object = None) -> Future[AppendReceipt]:
        """Queue ``event``; the future resolves to its receipt once durably committed. ``companion``: a
        payload for the appender's :class:`TransactionCompanion`, committed in the same transaction.

        Raises ``ValueError`` at once for an event that cannot be encoded (so one bad event never fails
        a whole batch) and :class:`AuditUnavailable` after ``close()``.
        """
        prepared = prepare(event)
        future: Future[AppendReceipt] = Future()
        self._enqueue((prepared, future, None, self._payload(companion)))
        return future

    def append(self, event: AuditEvent, companion: object = None) -> asyncio.Future[AppendReceipt]:
        """``await append(event)``: the receipt, once ``event`` is durably committed (the asyncio form
        of :meth:`submit`; call it from a coroutine). Raises like :meth:`submit`."""
        prepared = prepare(event)
        payload = self._payload(companion)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[AppendReceipt] = loop.create_future()
        self._enqueue((prepared, future, loop, payload))
        return future

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting events, commit everything already submitted, and stop the thread."""
        with self._lock:
            if self._closed:
                thread = self._thread
            else:
                self._closed = True
                thread = self._thread
                self._queue.put(_STOP)
        if thread is not None:
            thread.join(timeout)

    @property
    def failed_at(self) -> float | None:
        """When the latest batch failed to commit (``time.monotonic()``), or None when the latest one
        committed (or none was tried yet): readiness tells a load balancer the log is not taking events."""
        return self._failed_at

    def __enter__(self) -> GroupCommitAppender:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _run(self) -> None:
        # One connection for every batch of this thread (AuditLog.pinned_connection): no pool checkout,
        # reset and durability statement per batch.
        with self._log.pinned_connection():
            try:
                self._serve()
            finally:
                if self._checkpointer is not None:
                    self._checkpointer.close()

    def _serve(self) -> None:
        previous = 1
        checkpointer = self._checkpointer
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch: list[_Item] = [first]  # type: ignore[list-item]
            stop = self._collect(batch, previous)
            self._commit(batch)
            previous = len(batch)
            if stop:
                return
            if checkpointer is not None and previous <= _LIGHT_BATCH and self._queue.empty():
                checkpointer.idle()

    def _collect(self, batch: list[_Item], previous: int) -> bool:
        """Add waiting events to ``batch``; True when the stop marker was reached.

        Takes what is queued now; with ``max_wait_ms`` set, also waits (at most that long) for the
        batch to reach the previous batch's size, the callers a busy server can expect back.
        """
        get_nowait = self._queue.get_nowait
        limit = self._max_batch
        while len(batch) < limit:
            try:
                item = get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return True
            batch.append(item)  # type: ignore[arg-type]
        if self._max_wait <= 0:
            return False
        deadline = time.monotonic() + self._max_wait
        target = min(limit, previous)
        while len(batch) < target:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                item = self._queue.get(timeout=remaining)
            except queue.Empty:
                return False
            if item is _STOP:
                return True
            batch.append(item)  # type: ignore[arg-type]
        return False

    def _commit(self, batch: list[_Item]) -> None:
        # A cancelled future (e.g. the client went away) still gets its event written: the data was
        # fetched under that request, so the processing record must exist (PIPL Art. 56).
        for _, future, loop, _ in batch:
            if loop is None:
                future.set_running_or_notify_cancel()  # type: ignore[union-attr]
        outcomes: Sequence[_Outcome]
        companion = self._companion
        payloads = [item[3] for item in batch if item[3] is not None] if companion is not None else []
        written: list[object] = []
        within: Callable[[Any], None] | None = None
        if payloads:
            assert companion is not None
            dialect = self._log.dialect

            def within(cursor: Any) -> None:
                written.append(companion.write(cursor, dialect, payloads))

        try:
            outcomes = self._log.append_prepared([item[0] for item in batch], within)
        except AuditUnavailable as exc:
            detail = str(exc)
        except Exception as exc:  # a bug must not leave callers waiting forever
            logger.error("audit group commit failed: %s", type(exc).__name__)
            detail = f"audit append failed ({type(exc).__name__})"
        else:
            self._failed_at = None
            if written:
                assert companion is not None
                try:
                    companion.committed(written[0])
                except Exception as exc:  # committed already: a cache refresh must not fail the callers
                    logger.error("audit companion after-commit step failed: %s", type(exc).__name__)
            self._resolve(batch, outcomes)
            return
        self._failed_at = time.monotonic()
        # One instance per caller: a shared exception's traceback would be rewritten by each.
        self._resolve(batch, [AuditUnavailable(detail) for _ in batch])

    @staticmethod
    def _resolve(batch: list[_Item], outcomes: Sequence[_Outcome]) -> None:
        """Answer every caller: thread futures here, asyncio futures with one call per event loop."""
        by_loop: dict[asyncio.AbstractEventLoop, tuple[list[Any], list[_Outcome]]] = {}
        last_loop: asyncio.AbstractEventLoop | None = None
        futures: list[Any] = []
        results: list[_Outcome] = []
        for (_, future, loop, _), outcome in zip(batch, outcomes, strict=True):
            if loop is None:
                if future.cancelled():
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
                continue
            if loop is not last_loop:
                futures, results = by_loop.setdefault(loop, ([], []))
                last_loop = loop
            futures.append(future)
            results.append(outcome)
        for loop, (waiting, answers) in by_loop.items():
            # RuntimeError: that event loop is closed, so nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, waiting, answers)
