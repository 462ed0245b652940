"""A grant's window is bounded and never backdated: it lasts at most the scenario's ``max_validity_days``
(approval and renewal) and covers nothing before it is approved, so neither a decision nor a replay of
the past ever counts a grant approved later (PIPL art. 6; GB/T 35273-2020 §7.1 a, least authorisation)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from policies import (
    AccessRequest,
    GrantError,
    GrantIndex,
    GrantRepository,
    GrantService,
    GrantStatus,
    GrantWindowError,
    InvalidTransitionError,
    PermissionModel,
    PolicyEngine,
    ScenarioCatalog,
    load_scenarios,
    replay,
)
from policies.grants import BACKDATE_ALLOWANCE, stagger_days
from policies.scenarios import DEFAULT_SCENARIOS_PATH

from .conftest import CADRE_A1, CJK, STEWARD, STEWARD_2, T0, TOWNSHIP_A, TOWNSHIP_OFFICER_A, VILLAGE_A1

DAY = timedelta(days=1)
MAX = timedelta(days=180)  # ELDERLY_VISIT: default_validity_days = 180, no max_validity_days


@pytest.fixture
def service(session: Session, scenarios: ScenarioCatalog, permissions: PermissionModel) -> GrantService:
    return GrantService(GrantRepository(session), scenarios, permissions)


def _elderly(service: GrantService, at: datetime = T0) -> str:
    grant, _ = service.request(CADRE_A1, "ELDERLY_VISIT", VILLAGE_A1, None, "季度走访", at)
    return grant.grant_id


def _dibao(service: GrantService, at: datetime = T0) -> str:
    grant, _ = service.request(TOWNSHIP_OFFICER_A, "DIBAO_REVIEW", TOWNSHIP_A, None, "年度复核", at)
    return grant.grant_id


# (valid_from - now, valid_until - now, the window granted as offsets from now | the error code)
WINDOWS: list[tuple[timedelta | None, timedelta | None, tuple[timedelta, timedelta] | str]] = [
    (None, None, (timedelta(0), MAX)),
    (None, MAX, (timedelta(0), MAX)),
    (None, MAX + timedelta(seconds=1), "validity_over_maximum"),
    (None, 3650 * DAY, "validity_over_maximum"),
    (10 * DAY, 10 * DAY + MAX, (10 * DAY, 10 * DAY + MAX)),
    (10 * DAY, 11 * DAY + MAX, "validity_over_maximum"),
    (-30 * DAY, -DAY, "valid_from_in_past"),
    (-30 * DAY, 30 * DAY, "valid_from_in_past"),
    (-BACKDATE_ALLOWANCE - timedelta(seconds=1), DAY, "valid_from_in_past"),
    # Within the clock-skew allowance: accepted, but the window starts at the approval, not before.
    (-BACKDATE_ALLOWANCE, DAY, (timedelta(0), DAY)),
    (-timedelta(minutes=1), MAX - timedelta(minutes=1), (timedelta(0), MAX - timedelta(minutes=1))),
]


@pytest.mark.parametrize(("start", "end", "expected"), WINDOWS)
def test_an_approved_window_is_bounded_and_starts_no_earlier_than_the_approval(
    service: GrantService,
    start: timedelta | None,
    end: timedelta | None,
    expected: tuple[timedelta, timedelta] | str,
) -> None:
    grant_id = _elderly(service)
    version = service.repository.policy_version()
    valid_from = None if start is None else T0 + start
    valid_until = None if end is None else T0 + end
    if isinstance(expected, str):
        with pytest.raises(GrantWindowError) as info:
            service.approve(grant_id, STEWARD, T0, valid_from=valid_from, valid_until=valid_until)
        assert info.value.code == expected
        assert CJK.search(info.value.message_zh) and not CJK.search(info.value.message_en)
        stored = service.repository.get(grant_id)
        assert stored is not None and stored.status is GrantStatus.REQUESTED
        assert service.repository.policy_version() == version
        return
    grant, _ = service.approve(grant_id, STEWARD, T0, valid_from=valid_from, valid_until=valid_until)
    assert (grant.valid_from, grant.valid_until) == (T0 + expected[0], T0 + expected[1])


def test_the_errors_say_the_maximum_and_how_to_proceed(service: GrantService) -> None:
    # One request throughout: a refused approval leaves it waiting, for the steward to approve again.
    grant_id = _elderly(service)
    with pytest.raises(GrantWindowError) as too_long:
        service.approve(grant_id, STEWARD, T0, valid_until=T0 + 365 * DAY)
    assert "180" in too_long.value.message_zh and "180" in too_long.value.message_en
    assert "续期" in too_long.value.message_zh and "renew" in too_long.value.message_en
    assert "max_validity_days" in too_long.value.message_en
    with pytest.raises(GrantWindowError) as backdated:
        service.approve(grant_id, STEWARD, T0, valid_from=T0 - 30 * DAY)
    assert "valid_from" in backdated.value.message_zh and "Leave valid_from out" in backdated.value.message_en


def test_an_end_before_the_start_names_both_in_beijing_time_and_where_the_start_came_from(
    service: GrantService,
) -> None:
    """`grants approve --valid-until 2026-12-01` (a day already past, no --valid-from) answered "valid_until
    must be after valid_from", naming a valid_from the steward never gave. Both ends are named now, in
    Beijing time, and a start not given is said to be the approval."""
    grant_id = _elderly(service)  # each refused approval leaves it waiting
    with pytest.raises(GrantError) as past_end:
        service.approve(grant_id, STEWARD, T0, valid_until=T0 - 2 * DAY)
    zh, en = past_end.value.message_zh, past_end.value.message_en
    # T0 is 2025-03-03 02:00 UTC: 10:00 in Beijing.
    assert "2025-03-03 10:00" in zh and "2025-03-01 10:00" in zh and "即审批时间" in zh
    assert "2025-03-03 10:00" in en and "the approval" in en and en.isascii()
    with pytest.raises(GrantError) as swapped:
        service.approve(grant_id, STEWARD, T0, valid_from=T0 + 10 * DAY, valid_until=T0 + 5 * DAY)
    zh, en = swapped.value.message_zh, swapped.value.message_en
    assert "2025-03-13 10:00" in zh and "2025-03-08 10:00" in zh and "即审批时间" not in zh
    assert "2025-03-13 10:00" in en and "the approval" not in en
    # A day typed alone ends at its 24:00 (Beijing), as the steward wrote it, not "the next day 00:00".
    day_end = datetime(2025, 3, 1, 16, 0, tzinfo=T0.tzinfo)  # 2025-03-02 00:00 in Beijing
    with pytest.raises(GrantError) as a_day:
        service.approve(grant_id, STEWARD, T0, valid_until=day_end)
    assert "2025-03-01 24:00" in a_day.value.message_zh and "2025-03-01 24:00" in a_day.value.message_en


def test_a_catalog_maximum_above_the_default_is_what_counts(
    tmp_path: Path, session: Session, permissions: PermissionModel
) -> None:
    path = tmp_path / "scenarios.toml"
    path.write_text(
        DEFAULT_SCENARIOS_PATH.read_text(encoding="utf-8").replace(
            "default_validity_days = 90", "default_validity_days = 90\nmax_validity_days = 120"
        ),
        encoding="utf-8",
    )
    service = GrantService(GrantRepository(session), load_scenarios(path), permissions)
    grant_id = _dibao(service)
    with pytest.raises(GrantWindowError, match="120 days"):
        service.approve(grant_id, STEWARD, T0, valid_until=T0 + 121 * DAY)
    # The refused approval left the request waiting: approved now within the maximum.
    first, _ = service.approve(grant_id, STEWARD, T0, valid_until=T0 + 120 * DAY)
    assert first.valid_until == T0 + 120 * DAY
    service.approve(first.grant_id, STEWARD_2, T0)
    with pytest.raises(GrantWindowError, match="validity_days at most 120"):
        service.renew([first.grant_id], STEWARD, T0, second=STEWARD_2, validity_days=121)
    renewed, _ = service.renew([first.grant_id], STEWARD, T0, second=STEWARD_2, validity_days=120)
    assert renewed[0].valid_until is not None and renewed[0].valid_until <= T0 + 120 * DAY


def test_renewal_is_bounded_and_its_stagger_only_shortens(service: GrantService) -> None:
    ids = []
    for _ in range(6):
        grant_id = _elderly(service)
        service.approve(grant_id, STEWARD, T0)
        ids.append(grant_id)
    later = T0 + 170 * DAY
    version = service.repository.policy_version()
    with pytest.raises(GrantWindowError) as info:
        service.renew(ids, STEWARD_2, later, validity_days=181)
    assert info.value.code == "validity_over_maximum"
    assert service.repository.policy_version() == version  # all or nothing: nothing renewed
    assert all(service.repository.get(i).status is GrantStatus.APPROVED for i in ids)  # type: ignore[union-attr]

    renewed, _ = service.renew(ids, STEWARD_2, later, stagger_window_days=30)
    assert len({g.valid_until for g in renewed}) > 1  # still spread over several days
    for g in renewed:
        assert g.valid_from == later and g.valid_until is not None
        assert g.valid_until == later + MAX - stagger_days(g.grant_id, 30) * DAY
        assert later + MAX - 30 * DAY < g.valid_until <= later + MAX

    # A validity shorter than the stagger window never reaches zero days.
    short, _ = service.renew([renewed[0].grant_id], STEWARD_2, later, validity_days=1)
    assert short[0].valid_until == later + DAY


def test_a_grant_takes_effect_at_its_second_approval_not_before(
    service: GrantService, permissions: PermissionModel, scenarios: ScenarioCatalog
) -> None:
    """First approval on day 0 sets the window; the second steward approves on day 5. The reads of days
    0-4 were refused (the grant was not yet in force): a replay must still see them refused, so revoking
    the grant loses nothing back then."""
    grant_id = _dibao(service)
    first, _ = service.approve(grant_id, STEWARD, T0)
    assert first.valid_from == T0
    approved, _ = service.approve(grant_id, STEWARD_2, T0 + 5 * DAY)
    assert approved.status is GrantStatus.APPROVED
    assert (approved.valid_from, approved.valid_until) == (T0 + 5 * DAY, T0 + 90 * DAY)

    officer = TOWNSHIP_OFFICER_A
    recorded = [
        AccessRequest(officer, "read", "residents", "DIBAO_REVIEW", None, T0 + d * DAY) for d in range(8)
    ]
    index = GrantIndex.from_repository(service.repository, T0 + 8 * DAY)
    current = PolicyEngine(permissions, scenarios, index).what_if()
    assert [current.decide(r).allowed for r in recorded] == [False] * 5 + [True] * 3
    proposed = current.what_if(grants=index.with_changes(add=[], remove=[grant_id]))
    report = replay(recorded, current, proposed)
    assert sum(c.requests for c in report.lost) == 3  # days 5, 6, 7 only


def test_a_window_that_closed_before_the_second_approval_cannot_be_approved(service: GrantService) -> None:
    grant_id = _dibao(service)
    service.approve(grant_id, STEWARD, T0, valid_until=T0 + 10 * DAY)
    with pytest.raises(InvalidTransitionError, match="request anew"):
        service.approve(grant_id, STEWARD_2, T0 + 10 * DAY)
    stored = service.repository.get(grant_id)
    assert stored is not None and stored.status is GrantStatus.AWAITING_SECOND_APPROVAL


def test_the_stagger_never_ends_a_renewal_before_its_predecessor(service: GrantService) -> None:
    # Renewed a day after approval, with the default validity: the stagger used to take up to the whole
    # window off, so the renewed grant lapsed days before the one it replaced.
    ids = []
    for _ in range(8):
        grant_id = _elderly(service)
        service.approve(grant_id, STEWARD, T0)
        ids.append(grant_id)
    old_ends = {i: service.repository.get(i).valid_until for i in ids}  # type: ignore[union-attr]
    renewed, _ = service.renew(ids, STEWARD_2, T0 + DAY, stagger_window_days=30)
    assert any(stagger_days(g.grant_id, 30) > 1 for g in renewed)  # the stagger would have cut
    for g in renewed:
        assert g.renewed_from is not None and g.valid_until is not None
        assert g.valid_until >= old_ends[g.renewed_from]
        assert g.valid_until <= T0 + DAY + MAX  # and never past the requested validity
