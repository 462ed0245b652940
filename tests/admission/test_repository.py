"""Repository round trips on SQLite and, when configured (always in CI), PostgreSQL."""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.orm import Session

from admission import (
    AdmissionRepository,
    AdmissionService,
    BurdenChecklist,
    ProvidedDataset,
    ReviewRecord,
    ReviewVote,
    SystemStatus,
    load_admission_config,
    load_status_snapshot,
    metadata,
)

from .conftest import REVIEWERS, T0, FakeClock, Flow, _sqlite_engine, make_registration

PG_ENV = "GRASSROOTS_TEST_POSTGRES_URL"


@pytest.fixture(scope="module")
def postgres_engine() -> Iterator[Engine]:
    url = os.environ.get(PG_ENV)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{PG_ENV} must be set in CI")
        pytest.skip(f"{PG_ENV} not set")
    name = f"gr_admission_{secrets.token_hex(4)}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = create_engine(make_url(url).set(database=name))
    try:
        metadata.create_all(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = _sqlite_engine(tmp_path / "rt.db")
        yield engine
        engine.dispose()
        return
    yield request.getfixturevalue("clean_postgres")


@pytest.fixture
def clean_postgres(postgres_engine: Engine) -> Iterator[Engine]:
    yield postgres_engine
    with postgres_engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())


FULL = make_registration(
    "full-system",
    name="全字段系统",
    reaches=("310151101", "310151102003"),
    collects_fields=("residents.name", "phone"),
    provides=(
        ProvidedDataset("residents", "https://a.test/api", ("/r", "/r/{id}"), ("id", "name")),
        ProvidedDataset("households", "http://b.test:8080", (), ()),
    ),
    security_level=3,
    checklist=BurdenChecklist(True, False, None, True, False, notes="说明"),
)


def test_registration_round_trip(db: Engine) -> None:
    with Session(db) as s, s.begin():
        AdmissionRepository(s).add(FULL, T0)
    with Session(db) as s:
        loaded = AdmissionRepository(s).get("full-system")
    assert loaded is not None
    assert loaded.replace(created_at=None, updated_at=None) == FULL
    assert loaded.created_at == T0 and loaded.created_at.tzinfo is not None


def test_times_come_back_as_the_same_instant_in_utc(db: Engine) -> None:
    shanghai = timezone(timedelta(hours=8))
    until = datetime(2026, 1, 1, 8, 0, tzinfo=shanghai)
    reg = FULL.replace(status=SystemStatus.APPROVED, approved_until=until, filing_number="CJZR-2025-0009")
    with Session(db) as s, s.begin():
        AdmissionRepository(s).add(reg, T0)
    with Session(db) as s:
        loaded = AdmissionRepository(s).get("full-system")
        assert loaded is not None and loaded.approved_until == until
        assert loaded.approved_until is not None and loaded.approved_until.utcoffset() == timedelta(0)
        repo = AdmissionRepository(s)
        assert repo.due_to_lapse(until - timedelta(microseconds=1)) == []
        assert repo.due_to_lapse(until) == ["full-system"]


def test_reviews_round_trip(db: Engine) -> None:
    record = ReviewRecord(
        "full-system", 1, "big_data_centre", "u-bd-1", "big_data", ReviewVote.REJECT, "重复", T0
    )
    with Session(db) as s, s.begin():
        repo = AdmissionRepository(s)
        repo.add(FULL, T0)
        repo.add_review(record)
    with Session(db) as s:
        assert AdmissionRepository(s).reviews("full-system") == [record]
        assert AdmissionRepository(s).reviews("full-system", 2) == []


def test_whole_journey_and_snapshot(db: Engine) -> None:
    clock = FakeClock()
    with Session(db) as s, s.begin():
        flow = Flow(AdmissionService(s, load_admission_config(), clock))
        flow.admit(make_registration())
        client_id, secret = flow.service.issue_client_secret("health-visits", "u-health-admin")
        flow.service.set_outbound_credential("health-visits", b"\x00\xffcipher", "u-ops")
    with Session(db) as s:
        service = AdmissionService(s, load_admission_config(), clock)
        assert service.verify_client_secret(client_id, secret) == "health-visits"
        assert service.outbound_credential("health-visits") == b"\x00\xffcipher"
        snapshot = load_status_snapshot(s)
        # submit, approval, and the outbound credential (gateway processes reload it with the routes)
        assert snapshot.version == 3
        assert snapshot.verdict("health-visits", clock.now).allowed


@pytest.mark.postgres
def test_concurrent_last_votes_still_approve(clean_postgres: Engine) -> None:
    """Two offices cast the last two approvals at once: the row lock makes the later one see the earlier
    one, so the system ends approved instead of stuck in review with every vote in."""
    postgres_engine = clean_postgres
    clock = FakeClock()
    config = load_admission_config()
    offices = list(REVIEWERS)
    with Session(postgres_engine) as s, s.begin():
        service = AdmissionService(s, config, clock)
        service.register(make_registration("race-system"))
        service.submit("race-system", "u-health-admin")
        for office in offices[:-2]:
            reviewer, dept = REVIEWERS[office]
            service.review("race-system", office, reviewer, dept, "approve")

    first_voted = threading.Event()
    second_done = threading.Event()
    errors: list[BaseException] = []

    def second_vote() -> None:
        try:
            first_voted.wait(10)
            with Session(postgres_engine) as s2, s2.begin():
                reviewer, dept = REVIEWERS[offices[-1]]
                AdmissionService(s2, config, clock).review(
                    "race-system", offices[-1], reviewer, dept, "approve"
                )
        except BaseException as exc:  # re-raised in the main thread
            errors.append(exc)
        finally:
            second_done.set()

    def second_is_waiting_on_a_lock() -> bool:
        with postgres_engine.connect() as probe:
            waiting = probe.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
        return bool(waiting)

    worker = threading.Thread(target=second_vote)
    worker.start()
    try:
        with Session(postgres_engine) as s1, s1.begin():
            reviewer, dept = REVIEWERS[offices[-2]]
            AdmissionService(s1, config, clock).review("race-system", offices[-2], reviewer, dept, "approve")
            first_voted.set()
            # Keep this transaction open until the second vote either finished (no lock: the race is
            # lost) or is seen blocked on our row lock.
            while not second_done.wait(0.02) and not second_is_waiting_on_a_lock():
                pass
    finally:
        first_voted.set()
        worker.join(10)
    assert not errors
    with Session(postgres_engine) as s:
        reg = AdmissionService(s, config, clock).get("race-system")
        assert reg.status is SystemStatus.APPROVED
