"""Group commit: many requests' audit events share one durable transaction.

A durable commit costs an fsync (SQLite ``synchronous=FULL``) or a WAL flush (PostgreSQL
``synchronous_commit=on``); paying it once per request would cap throughput at the disk's sync rate.
One background thread collects whatever events are waiting (up to ``max_batch``, lingering at most
``max_wait_ms`` after the first) and appends them in one transaction; each caller's future resolves only
after that commit, so "respond only after the event is durable" still holds for every request.
If the batch fails, every future in it fails with :class:`AuditUnavailable` — nothing is half-logged.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from concurrent.futures import Future
from typing import Final

from audit.events import AuditEvent
from audit.log import AppendReceipt, AuditLog, AuditUnavailable, PreparedEvent, prepare

logger = logging.getLogger(__name__)

_Item = tuple[PreparedEvent, "Future[AppendReceipt]"]
_STOP: Final = object()


class GroupCommitAppender:
    """Batches submitted events into single transactions on a background thread.

    Use ``start()`` once (``submit`` also starts it), ``await append(event)`` from async code or
    ``submit(event).result()`` from threads, and ``close()`` on shutdown: it drains what was submitted.
    """

    def __init__(self, log: AuditLog, max_batch: int = 256, max_wait_ms: float = 2.0) -> None:
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

    def submit(self, event: AuditEvent) -> Future[AppendReceipt]:
        """Queue ``event``; the future resolves to its receipt once durably committed.

        Raises ``ValueError`` at once for an event that cannot be encoded (so one bad event never fails
        a whole batch) and :class:`AuditUnavailable` after ``close()``.
        """
        prepared = prepare(event)
        future: Future[AppendReceipt] = Future()
        with self._lock:
            self._start_locked()
            # Under the lock: close() enqueues its stop marker after every accepted event.
            self._queue.put((prepared, future))
        return future

    async def append(self, event: AuditEvent) -> AppendReceipt:
        """Append ``event`` and return after its durable commit (awaitable form of :meth:`submit`)."""
        return await asyncio.wrap_future(self.submit(event))

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

    def __enter__(self) -> GroupCommitAppender:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch: list[_Item] = [first]  # type: ignore[list-item]
            stop = self._collect(batch)
            self._commit(batch)
            if stop:
                return

    def _collect(self, batch: list[_Item]) -> bool:
        """Add waiting events to ``batch``; True when the stop marker was reached."""
        deadline = time.monotonic() + self._max_wait
        while len(batch) < self._max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
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
        live = [future.set_running_or_notify_cancel() for _, future in batch]
        try:
            receipts = self._log.append_prepared([prepared for prepared, _ in batch])
        except AuditUnavailable as exc:
            detail = str(exc)
        except Exception as exc:  # a bug must not leave callers waiting forever
            logger.error("audit group commit failed: %s", type(exc).__name__)
            detail = f"audit append failed ({type(exc).__name__})"
        else:
            for (_, future), receipt, running in zip(batch, receipts, live, strict=True):
                if running:
                    future.set_result(receipt)
            return
        for (_, future), running in zip(batch, live, strict=True):
            if running:
                # One instance per caller: a shared exception's traceback would be rewritten by each.
                future.set_exception(AuditUnavailable(detail))
