"""Fixtures for the admission tests: a migrated-schema SQLite session, a controllable clock, and a factory
of valid registrations. PostgreSQL variants live in test_repository.py."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session

from admission import (
    AdmissionConfig,
    AdmissionService,
    BurdenChecklist,
    ProvidedDataset,
    SystemRegistration,
    load_admission_config,
    metadata,
)

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)

# Offices of the packaged configuration, with a reviewer and that reviewer's department for each.
REVIEWERS: dict[str, tuple[str, str]] = {
    "district_government_office": ("u-gov-1", "district_government_office"),
    "government_services_office": ("u-svc-1", "government_services"),
    "civil_affairs_bureau": ("u-mz-1", "civil_affairs"),
    "science_technology_commission": ("u-kw-1", "science_technology"),
    "city_operations_centre": ("u-cy-1", "city_operations"),
    "big_data_centre": ("u-bd-1", "big_data"),
}

ANSWERED = BurdenChecklist(
    duplicates_platform_function=False,
    can_embed_in_platform=False,
    forces_checkins=False,
    forces_points_or_rankings=False,
    offers_complaint_entry=True,
)


@dataclass
class FakeClock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def make_registration(system_id: str = "health-visits", **overrides: Any) -> SystemRegistration:
    values: dict[str, Any] = {
        "system_id": system_id,
        "name": "家庭医生随访",
        "department": "health",
        "purpose": "家庭医生签约居民随访记录",
        "reaches": ("310151101",),
        "reaches_villages": True,
        "collects_fields": ("residents.name", "residents.mobile"),
        "provides": (ProvidedDataset("visits", "https://health.example.test", ("/visits",), ("id", "date")),),
        "security_level": 2,
        "contact": "13800000000",
        "checklist": ANSWERED,
        "created_by": "u-health-admin",
    }
    values.update(overrides)
    return SystemRegistration(**values)


def _sqlite_engine(path: Path) -> Engine:
    engine = create_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    metadata.create_all(engine)
    return engine


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = _sqlite_engine(tmp_path / "admission.db")
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine) as s:
        yield s


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def config() -> AdmissionConfig:
    return load_admission_config()


@pytest.fixture
def service(session: Session, config: AdmissionConfig, clock: FakeClock) -> AdmissionService:
    return AdmissionService(session, config, clock)


@dataclass
class Flow:
    """Drives a registration through the joint review with the default offices."""

    service: AdmissionService
    events: list[dict[str, Any]] = field(default_factory=list)

    def register(self, reg: SystemRegistration) -> None:
        self.events.append(self.service.register(reg))

    def approve_all(self, system_id: str) -> dict[str, Any]:
        progress = self.service.review_progress(system_id)
        event: dict[str, Any] = {}
        for office in progress.pending:
            reviewer, department = REVIEWERS[office]
            event = self.service.review(system_id, office, reviewer, department, "approve", "同意")
            self.events.append(event)
        return event

    def admit(self, reg: SystemRegistration) -> dict[str, Any]:
        self.register(reg)
        self.events.append(self.service.submit(reg.system_id, reg.created_by))
        return self.approve_all(reg.system_id)


@pytest.fixture
def flow(service: AdmissionService) -> Flow:
    return Flow(service)
