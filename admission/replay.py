"""Client-assertion replay detection that holds across every gateway process (RFC 7523 §3 item 7).

A ``private_key_jwt`` assertion may be used once. An in-process set only sees one process, so the ``jti``
of each accepted assertion is written to ``admission_assertion_jtis`` with its client id and expiry; the
primary key (client id, jti) makes a second use conflict in the database, whichever process it reaches.
The row is committed before the caller issues a token, and expired rows are purged now and then.

Fail closed: when the row cannot be written, the assertion is refused (``ReplayStoreUnavailable``) rather
than accepted unrecorded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from admission.errors import AdmissionError
from admission.tables import AssertionJtiRow

#: Longest ``jti`` stored (RFC 7519 sets no limit; a longer one is refused, never truncated, since a
#: truncated key could make two different assertions collide).
MAX_JTI_CHARS = 256
#: How often one process deletes the rows of expired assertions.
PURGE_INTERVAL_S = 60.0


class ReplayStoreUnavailable(AdmissionError):
    """The replay store could not record an assertion, so the assertion is refused (fail closed)."""

    code = "replay_store_unavailable"


class AssertionReplayRepository:
    """The ``jti`` table through the caller's session; never commits."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def first_use(self, client_id: str, jti: str, expires_at: datetime, now: datetime) -> bool:
        """Record ``(client_id, jti)``; False when it is already recorded for an assertion still valid.

        One statement, atomic in both databases: insert, or on conflict take over the row only if the
        assertion it remembers has expired (then nothing it protected can be replayed any more). Under
        concurrency PostgreSQL makes the second writer wait for the first and then see its row."""
        dialect = self.session.get_bind().dialect.name
        insert_fn: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
        stmt = insert_fn(AssertionJtiRow).values(client_id=client_id, jti=jti, expires_at=expires_at)
        stmt = stmt.on_conflict_do_update(
            index_elements=[AssertionJtiRow.client_id, AssertionJtiRow.jti],
            set_={"expires_at": stmt.excluded.expires_at},
            where=AssertionJtiRow.expires_at <= now,
        ).returning(AssertionJtiRow.jti)
        # A row comes back when it was inserted or taken over, none when a live one was there: RETURNING,
        # not rowcount, which drivers do not report alike for an upsert.
        return self.session.execute(stmt).first() is not None

    def purge_expired(self, now: datetime) -> int:
        result: Any = self.session.execute(delete(AssertionJtiRow).where(AssertionJtiRow.expires_at <= now))
        return int(result.rowcount or 0)


class DatabaseReplayGuard:
    """The replay check ``verify_client_assertion`` calls, backed by the shared database.

    It owns its short transactions, like the audit appender, because the record must be durable before a
    token leaves: a check that another process could not see would protect nothing."""

    def __init__(
        self,
        sessions: Callable[[], Session],
        *,
        purge_interval_s: float = PURGE_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._purge_interval_s = purge_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._next_purge = clock()

    def _purge_due(self) -> bool:
        with self._lock:
            now = self._clock()
            if now < self._next_purge:
                return False
            self._next_purge = now + self._purge_interval_s
            return True

    def first_use(self, client_id: str, jti: str, expires_at: float, now: float) -> bool:
        when = datetime.fromtimestamp(now, UTC)
        try:
            with self._sessions() as session, session.begin():
                repository = AssertionReplayRepository(session)
                if self._purge_due():
                    repository.purge_expired(when)
                return repository.first_use(client_id, jti, datetime.fromtimestamp(expires_at, UTC), when)
        except SQLAlchemyError:
            # The database error itself stays out of the message (it could quote the statement).
            raise ReplayStoreUnavailable(
                "暂时无法记录客户端断言，为防止重放本次请求已拒绝，请稍后重试。",
                "The client assertion could not be recorded, so it was refused to prevent replay. "
                "Retry later.",
            ) from None
