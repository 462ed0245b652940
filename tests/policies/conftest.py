"""Fixtures for the policy tests: the shipped policy files, a small demo jurisdiction, a clock inside
the scenarios' hours, and a throwaway SQLite session with the policy tables."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.orm import Session

from policies import (
    GrantIndex,
    GrantStatus,
    PermissionModel,
    PolicyEngine,
    ScenarioCatalog,
    ScenarioGrant,
    Subject,
    load_permissions,
    load_scenarios,
    metadata,
)

#: Chinese characters and full-width punctuation: a message meant for a Chinese reader has some.
CJK = re.compile(r"[\u3000-\u30ff\u4e00-\u9fff\uff00-\uffef]")

# 10:00 Beijing time (UTC+8): inside every shipped scenario's hours.
T0 = datetime(2025, 3, 3, 2, 0, tzinfo=UTC)

# Demo jurisdiction (Shanghai, Chongming district): one county, two townships, villages under them.
COUNTY = "310151000000"
TOWNSHIP_A = "310151101000"
TOWNSHIP_B = "310151102000"
VILLAGE_A1 = "310151101001"
VILLAGE_A2 = "310151101002"
VILLAGE_B1 = "310151102001"

CADRE_A1 = Subject(user_id="u-cadre-a1", org=VILLAGE_A1, roles=("village_cadre",))
CADRE_A2 = Subject(user_id="u-cadre-a2", org=VILLAGE_A2, roles=("village_cadre",))
CADRE_B1 = Subject(user_id="u-cadre-b1", org=VILLAGE_B1, roles=("village_cadre",))
GRID_A1 = Subject(user_id="u-grid-a1", org=VILLAGE_A1, roles=("grid_worker",), grids=(f"{VILLAGE_A1}-G01",))
TOWNSHIP_OFFICER_A = Subject(user_id="u-town-a", org=TOWNSHIP_A, roles=("township_officer",))
COUNTY_OFFICER = Subject(user_id="u-county", org=COUNTY, roles=("county_officer",))
STEWARD = Subject(user_id="u-steward-1", org=COUNTY, roles=("data_steward",), department="civil_affairs")
STEWARD_2 = Subject(user_id="u-steward-2", org=COUNTY, roles=("data_steward",), department="civil_affairs")
OTHER_STEWARD = Subject(
    user_id="u-steward-x", org=COUNTY, roles=("data_steward",), department="public_security"
)
SUPERVISOR = Subject(user_id="u-supervisor", org=COUNTY, roles=("supervisor",))
AUDITOR = Subject(user_id="u-auditor", org=COUNTY, roles=("auditor",))

DIBAO_FIELDS = (
    "id",
    "name",
    "id_number",
    "mobile",
    "address",
    "household_no",
    "dibao_status",
    "village_code",
    "remark",
)
ELDERLY_FIELDS = ("id", "name", "birth_date", "address", "mobile", "village_code")


def make_grant(
    grant_id: str,
    scenario: str,
    org_scope: str,
    fields: tuple[str, ...],
    *,
    status: GrantStatus = GrantStatus.APPROVED,
    valid_from: datetime = T0 - timedelta(days=1),
    valid_until: datetime = T0 + timedelta(days=30),
    dataset: str = "residents",
) -> ScenarioGrant:
    return ScenarioGrant(
        grant_id=grant_id,
        scenario=scenario,
        org_scope=org_scope,
        datasets=MappingProxyType({dataset: fields}),
        valid_from=valid_from,
        valid_until=valid_until,
        status=status,
        requested_by="u-requester",
        approved_by="u-steward-1",
        created_at=valid_from,
        updated_at=valid_from,
    )


@pytest.fixture(scope="session")
def permissions() -> PermissionModel:
    return load_permissions()


@pytest.fixture(scope="session")
def scenarios() -> ScenarioCatalog:
    return load_scenarios()


@pytest.fixture
def engine_for(permissions: PermissionModel, scenarios: ScenarioCatalog) -> Callable[..., PolicyEngine]:
    def build(*grants: ScenarioGrant) -> PolicyEngine:
        return PolicyEngine(permissions, scenarios, GrantIndex(grants))

    return build


@pytest.fixture
def session() -> Iterator[Session]:
    engine = create_engine("sqlite+pysqlite:///:memory:")
    metadata.create_all(engine)
    with Session(engine) as s:
        yield s
    engine.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    base = os.environ.get("GRASSROOTS_TEST_POSTGRES_URL")
    if not base:
        if os.environ.get("CI"):
            pytest.fail("GRASSROOTS_TEST_POSTGRES_URL is required in CI")
        pytest.skip("GRASSROOTS_TEST_POSTGRES_URL not set")
    name = f"gr_policies_{secrets.token_hex(4)}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
