"""The grant windows the supervision anomaly rule ``no_active_grant`` checks reads against.

A read recorded under a grant id is covered only while that grant was in force: from its (second)
approval to its end or revocation. A grant that never took effect — still requested, waiting for its
second steward, or rejected — covered no read at all, so a read recorded under it is flagged, not
taken as authorised from the day the grant was requested.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker

from audit.anomaly import load_anomaly_rules, no_active_grant
from audit.query import EventSummary
from gateway.routes.supervision import _grant_windows
from policies import GrantRepository, GrantService, Subject, load_permissions, load_scenarios, metadata

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
DAY = timedelta(days=1)
COUNTY, TOWNSHIP, VILLAGE = "310151000000", "310151101000", "310151101001"
CADRE = Subject(user_id="u-cadre", org=VILLAGE, roles=("village_cadre",))
OFFICER = Subject(user_id="u-town", org=TOWNSHIP, roles=("township_officer",))
STEWARD = Subject(user_id="u-steward-1", org=COUNTY, roles=("data_steward",), department="civil_affairs")
STEWARD_2 = Subject(user_id="u-steward-2", org=COUNTY, roles=("data_steward",), department="civil_affairs")


@dataclass
class _Runtime:
    sessions: sessionmaker[Session]


@pytest.fixture
def runtime() -> Iterator[_Runtime]:
    engine = create_engine("sqlite+pysqlite:///:memory:")
    metadata.create_all(engine)
    yield _Runtime(sessionmaker(engine, expire_on_commit=False))
    engine.dispose()


def _grants(runtime: _Runtime) -> dict[str, str]:
    """One grant in each state, requested on day 0; returns {state: grant id}."""
    ids: dict[str, str] = {}
    with runtime.sessions() as session:
        service = GrantService(GrantRepository(session), load_scenarios(), load_permissions())

        def ask(scenario: str, who: Subject, scope: str) -> str:
            return service.request(who, scenario, scope, None, "季度工作", T0)[0].grant_id

        ids["requested"] = ask("ELDERLY_VISIT", CADRE, VILLAGE)
        # For the village: the township's identical request would be refused while this one waits.
        ids["awaiting_second_approval"] = ask("DIBAO_REVIEW", OFFICER, VILLAGE)
        service.approve(ids["awaiting_second_approval"], STEWARD, T0 + DAY)
        ids["rejected"] = ask("ELDERLY_VISIT", OFFICER, TOWNSHIP)
        service.reject(ids["rejected"], STEWARD, "已有村级授权", T0 + DAY)
        ids["approved"] = ask("DIBAO_REVIEW", OFFICER, TOWNSHIP)
        service.approve(ids["approved"], STEWARD, T0 + DAY)
        service.approve(ids["approved"], STEWARD_2, T0 + 3 * DAY)
        session.commit()
    return ids


# (grant state, read on day n, covered by the grant)
READS = [
    ("requested", 2, False),
    ("awaiting_second_approval", 2, False),
    ("rejected", 2, False),
    ("approved", 2, False),  # first approval on day 1, in force from the second on day 3
    ("approved", 4, True),
]


@pytest.mark.parametrize(("state", "day", "covered"), READS)
def test_a_read_is_covered_only_while_its_grant_was_in_force(
    runtime: _Runtime, state: str, day: int, covered: bool
) -> None:
    grant_id = _grants(runtime)[state]
    windows = _grant_windows(runtime)  # type: ignore[arg-type]
    read = EventSummary(
        seq=1,
        occurred_at=T0 + day * DAY,
        kind="access.read",
        outcome="allowed",
        actor="u-town",
        actor_org=TOWNSHIP,
        actor_roles=("township_officer",),
        scenario="DIBAO_REVIEW",
        dataset="residents",
        fields=("name",),
        record_count=1,
        reason=None,
        subject_refs=(),
        request_id=None,
        trace_id=None,
        details={"grant_id": grant_id},
    )
    flagged = no_active_grant([read], load_anomaly_rules()["no_active_grant"], windows)
    assert (not flagged) is covered, (state, day, windows.get(grant_id))
