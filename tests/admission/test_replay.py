"""The client-assertion replay store (RFC 7523 §3 item 7) on SQLite and PostgreSQL: a (client, jti) is
accepted once whichever guard (process) sees it, expired entries are taken over and purged, concurrent
first uses are won by exactly one, and a store that cannot be written refuses (fail closed)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from admission import (
    AssertionReplayRepository,
    DatabaseReplayGuard,
    ReplayStoreUnavailable,
)
from admission.tables import AssertionJtiRow

from .test_repository import clean_postgres, db, postgres_engine  # noqa: F401 (fixtures)

T0 = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
LIVE = T0 + timedelta(seconds=65)


def _first_use(engine: Engine, client_id: str, jti: str, expires_at: datetime, now: datetime) -> bool:
    with Session(engine) as session, session.begin():
        return AssertionReplayRepository(session).first_use(client_id, jti, expires_at, now)


def _rows(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.scalar(select(func.count()).select_from(AssertionJtiRow)) or 0)


def test_a_jti_is_accepted_once_per_client(db: Engine) -> None:  # noqa: F811
    assert _first_use(db, "gsc_a", "j-1", LIVE, T0)
    assert not _first_use(db, "gsc_a", "j-1", LIVE, T0 + timedelta(seconds=30))
    # Another jti of the same client, and the same jti of another client, are different assertions.
    assert _first_use(db, "gsc_a", "j-2", LIVE, T0)
    assert _first_use(db, "gsc_b", "j-1", LIVE, T0)
    assert _rows(db) == 3


def test_an_expired_entry_is_taken_over_and_purged(db: Engine) -> None:  # noqa: F811
    assert _first_use(db, "gsc_a", "j-1", LIVE, T0)
    later = LIVE + timedelta(seconds=1)
    # The assertion it remembered can no longer be used, so the jti may serve a new one.
    assert _first_use(db, "gsc_a", "j-1", later + timedelta(seconds=60), later)
    assert not _first_use(db, "gsc_a", "j-1", later + timedelta(seconds=60), later)
    assert _first_use(db, "gsc_a", "j-old", LIVE, T0)
    with Session(db) as session, session.begin():
        assert AssertionReplayRepository(session).purge_expired(later) == 1
    assert _rows(db) == 1


def test_concurrent_first_uses_are_won_by_exactly_one(db: Engine) -> None:  # noqa: F811
    start = threading.Barrier(8)
    results: list[bool] = []
    lock = threading.Lock()

    def attempt() -> None:
        start.wait()
        won = _first_use(db, "gsc_a", "race", LIVE, T0)
        with lock:
            results.append(won)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]


def test_two_guards_on_one_database_accept_an_assertion_once(tmp_path: Path, db: Engine) -> None:  # noqa: F811
    # Two guards with engines of their own stand for two gateway processes.
    other = create_engine(db.url)
    try:
        first, second = DatabaseReplayGuard(sessionmaker(db)), DatabaseReplayGuard(sessionmaker(other))
        now = T0.timestamp()
        assert first.first_use("gsc_a", "j-1", now + 60, now)
        assert not second.first_use("gsc_a", "j-1", now + 60, now + 1)
        assert not first.first_use("gsc_a", "j-1", now + 60, now + 2)
    finally:
        other.dispose()


def test_the_guard_purges_expired_rows_at_most_once_per_interval(db: Engine) -> None:  # noqa: F811
    ticks = [0.0]
    guard = DatabaseReplayGuard(sessionmaker(db), purge_interval_s=60.0, clock=lambda: ticks[0])
    now = T0.timestamp()
    assert guard.first_use("gsc_a", "old", now + 10, now)  # purges (nothing), then records
    assert guard.first_use("gsc_a", "new", now + 100, now + 20)  # "old" expired, but no purge yet
    assert _rows(db) == 2
    ticks[0] = 61.0
    assert guard.first_use("gsc_a", "newer", now + 100, now + 30)  # purge due: "old" goes
    assert _rows(db) == 2


def test_a_store_that_cannot_be_written_refuses(tmp_path: Path) -> None:
    bare = create_engine(f"sqlite:///{tmp_path / 'no-table.db'}")  # the table was never created
    try:
        guard = DatabaseReplayGuard(sessionmaker(bare))
        with pytest.raises(ReplayStoreUnavailable) as caught:
            guard.first_use("gsc_a", "j-1", T0.timestamp() + 60, T0.timestamp())
        assert caught.value.code == "replay_store_unavailable"
        assert "重放" in caught.value.message_zh
        assert "admission_assertion_jtis" not in str(caught.value) and caught.value.__cause__ is None
    finally:
        bare.dispose()
