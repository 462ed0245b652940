"""Blocking: the routing verdict for every status, lapse by time at the approved_until boundary,
re-certification, reminders, and the status snapshot each gateway process polls."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from admission import (
    AdmissionService,
    IllegalTransition,
    SystemStatus,
    load_status_snapshot,
    registry_version,
    routing_verdict,
)

from .conftest import REVIEWERS, T0, FakeClock, Flow, make_registration

LATER = T0 + timedelta(days=30)

EXPECTED = [
    # status, approved_until, allowed, code, words the Chinese message must contain
    ("approved", LATER, True, "ok", "已准入"),
    ("approved", T0, False, "system_lapsed", "已到期"),
    ("approved", None, False, "system_lapsed", "已到期"),
    ("draft", None, False, "system_not_approved", "草稿"),
    ("submitted", None, False, "system_not_approved", "联审中"),
    ("changes_requested", None, False, "system_not_approved", "待修改"),
    ("rejected", None, False, "system_not_approved", "未通过"),
    ("suspended", LATER, False, "system_suspended", "暂停"),
    ("revoked", LATER, False, "system_revoked", "撤销"),
    ("lapsed", LATER, False, "system_lapsed", "到期"),
]


@pytest.mark.parametrize(("status", "until", "allowed", "code", "zh"), EXPECTED)
def test_verdict_for_every_status(
    status: str, until: datetime | None, allowed: bool, code: str, zh: str
) -> None:
    reg = make_registration("street-lamps", status=SystemStatus(status), approved_until=until)
    verdict = routing_verdict(reg, T0)
    assert (verdict.allowed, verdict.code, verdict.system_id) == (allowed, code, "street-lamps")
    assert zh in verdict.message_zh
    if not allowed:
        assert "street-lamps" in verdict.message_zh
        assert "street-lamps" in verdict.message_en


@pytest.mark.parametrize(
    ("status", "until", "next_zh", "next_en"),
    [
        ("lapsed", LATER, "grassroots admission recertify", "grassroots admission recertify"),
        ("approved", T0, "grassroots admission recertify", "grassroots admission recertify"),
        ("suspended", LATER, "只能由其恢复", "only they can lift it"),
        ("submitted", None, "grassroots admission progress", "grassroots admission progress"),
        ("draft", None, "各审核单位都同意后才能访问", "once every office has approved"),
    ],
)
def test_a_blocked_system_is_told_what_comes_next(
    status: str, until: datetime | None, next_zh: str, next_en: str
) -> None:
    """A system calling /api/v1/systems/me while suspended was told only 暂不能访问; lapsed, not who
    reopens the review; not yet approved, not where its review stands."""
    verdict = routing_verdict(
        make_registration("street-lamps", status=SystemStatus(status), approved_until=until), T0
    )
    assert next_zh in verdict.message_zh and next_en in verdict.message_en


def test_every_status_is_covered_by_the_table() -> None:
    assert {s for s, *_ in EXPECTED} == {s.value for s in SystemStatus}


def test_unregistered_system_is_refused_by_name() -> None:
    verdict = routing_verdict(None, T0, system_id="ghost-system")
    assert (verdict.allowed, verdict.code) == (False, "system_not_registered")
    assert "ghost-system" in verdict.message_zh and "ghost-system" in verdict.message_en


@given(
    status=st.sampled_from(list(SystemStatus)),
    offset=st.integers(min_value=-(10**6), max_value=10**6),
)
def test_allowed_iff_approved_and_before_approved_until(status: SystemStatus, offset: int) -> None:
    until = T0 + timedelta(seconds=offset)
    reg = make_registration(status=status, approved_until=until)
    assert routing_verdict(reg, T0).allowed == (status is SystemStatus.APPROVED and until > T0)


def test_lapse_by_time_at_the_boundary(flow: Flow, service: AdmissionService, clock: FakeClock) -> None:
    flow.admit(make_registration())
    until = service.get("health-visits").approved_until
    assert until is not None
    one_before = until - timedelta(microseconds=1)
    assert routing_verdict(service.get("health-visits"), one_before).allowed
    assert service.lapse_due(one_before) == []
    assert not routing_verdict(service.get("health-visits"), until).allowed
    events = service.lapse_due(until)
    assert [(e["kind"], e["system_id"], e["after"]) for e in events] == [
        ("admission.lapsed", "health-visits", "lapsed")
    ]
    assert service.get("health-visits").status is SystemStatus.LAPSED
    assert service.lapse_due(until + timedelta(days=1)) == []


def test_a_suspension_outlives_the_approval(flow: Flow, service: AdmissionService, clock: FakeClock) -> None:
    """Letting a suspended system's approval run out and asking for a fresh review does not clear the
    suspension: only the supervisor lifts it, and then the ended approval lapses."""
    flow.admit(make_registration())
    service.suspend("health-visits", "u-sup", "投诉核查")
    until = service.get("health-visits").approved_until
    assert until is not None
    assert service.lapse_due(until + timedelta(days=1)) == []
    assert service.get("health-visits").status is SystemStatus.SUSPENDED
    with pytest.raises(IllegalTransition):
        service.recertify("health-visits", "u-health-admin")
    clock.now = until + timedelta(days=2)
    events = service.reinstate("health-visits", "u-sup", "核查完毕，未发现问题")
    # Reinstated past its end, it lapses at once: never "approved" with an approval that has ended.
    assert [(e["kind"], e["after"]) for e in events] == [
        ("admission.reinstated", "approved"),
        ("admission.lapsed", "lapsed"),
    ]
    assert service.get("health-visits").status is SystemStatus.LAPSED
    assert service.lapse_due(clock.now) == []
    (reminder,) = service.reminders_due(clock.now)
    assert reminder.lapsed
    assert service.recertify("health-visits", "u-health-admin")["after"] == "submitted"


def _renewal_signed_by_all_but_one(flow: Flow, service: AdmissionService, clock: FakeClock) -> str:
    """Admitted, re-certified in time and signed by every office but one, which is returned."""
    flow.admit(make_registration())
    clock.advance(timedelta(days=340))
    service.recertify("health-visits", "u-health-admin")
    first, *rest = list(service.review_progress("health-visits").pending)
    for office in rest:
        reviewer, department = REVIEWERS[office]
        service.review("health-visits", office, reviewer, department, "approve", "同意")
    return first


def test_a_renewal_round_paused_by_a_suspension_resumes_on_reinstatement(
    flow: Flow, service: AdmissionService, clock: FakeClock
) -> None:
    """Suspending a system mid-renewal closed its round: reinstated, it showed no renewal under way and its
    department had to recertify again, so the offices that had signed signed again. Now the round is
    paused while the system is suspended (no vote, no recertify) and resumes with its signatures."""
    last_office = _renewal_signed_by_all_but_one(flow, service, clock)
    until = service.get("health-visits").approved_until
    service.suspend("health-visits", "u-sup", "投诉核查")
    reviewer, department = REVIEWERS[last_office]
    with pytest.raises(IllegalTransition) as refused:
        service.review("health-visits", last_office, reviewer, department, "approve", "同意")
    assert "暂停" in refused.value.message_zh and "reinstate" in refused.value.message_en
    with pytest.raises(IllegalTransition):
        service.recertify("health-visits", "u-health-admin")

    (event,) = service.reinstate("health-visits", "u-sup", "核查完毕")
    assert (event["after"], event["renewal"]) == ("approved", True)
    reg = service.get("health-visits")
    assert (reg.status, reg.review_round, reg.renewal_open, reg.approved_until) == (
        SystemStatus.APPROVED,
        2,
        True,
        until,
    )
    assert service.review_progress("health-visits").pending == (last_office,)
    last = service.review("health-visits", last_office, reviewer, department, "approve", "同意")
    assert last["kind"] == "admission.recertified"
    assert service.get("health-visits").approved_until == clock.now + timedelta(days=365)


def test_an_approval_ending_during_a_suspension_lapses_on_reinstatement_and_its_round_goes_on(
    flow: Flow, service: AdmissionService, clock: FakeClock
) -> None:
    """Suspended mid-renewal and reinstated after the approval's end, the system came back "approved" past
    its end with no round open. Now it lapses as it is reinstated (blocked) and the paused round goes on
    as the full review a lapsed system needs: the last office's vote approves it."""
    last_office = _renewal_signed_by_all_but_one(flow, service, clock)
    service.suspend("health-visits", "u-sup", "投诉核查")
    clock.advance(timedelta(days=30))
    assert service.lapse_due() == []
    events = service.reinstate("health-visits", "u-sup", "核查完毕")
    assert [(e["kind"], e["before"], e["after"]) for e in events] == [
        ("admission.reinstated", "suspended", "approved"),
        ("admission.lapsed", "approved", "lapsed"),
        ("admission.renewal_continued", "lapsed", "submitted"),
    ]
    reg = service.get("health-visits")
    assert (reg.status, reg.review_round) == (SystemStatus.SUBMITTED, 2)
    assert not routing_verdict(reg, clock.now).allowed
    assert service.review_progress("health-visits").pending == (last_office,)
    reviewer, department = REVIEWERS[last_office]
    last = service.review("health-visits", last_office, reviewer, department, "approve", "同意")
    assert last["after"] == "approved"
    assert routing_verdict(service.get("health-visits"), clock.now).allowed


def test_lapsed_system_is_blocked_until_fully_re_reviewed(
    flow: Flow, service: AdmissionService, clock: FakeClock
) -> None:
    flow.admit(make_registration())
    clock.advance(timedelta(days=400))
    service.lapse_due()
    event = service.recertify("health-visits", "u-health-admin")
    assert (event["before"], event["after"], event["renewal"]) == ("lapsed", "submitted", False)
    assert not routing_verdict(service.get("health-visits"), clock.now).allowed
    flow.approve_all("health-visits")
    reg = service.get("health-visits")
    assert reg.status is SystemStatus.APPROVED
    assert reg.filing_number == "CJZR-2025-0001"  # the 备案号 stays with the system
    assert reg.approved_until == clock.now + timedelta(days=365)


def test_early_recertification_keeps_the_system_routing(
    flow: Flow, service: AdmissionService, clock: FakeClock
) -> None:
    flow.admit(make_registration())
    clock.advance(timedelta(days=340))
    event = service.recertify("health-visits", "u-health-admin")
    assert (event["after"], event["renewal"]) == ("approved", True)
    assert routing_verdict(service.get("health-visits"), clock.now).allowed
    with pytest.raises(Exception, match="already under way"):
        service.recertify("health-visits", "u-health-admin")
    last = flow.approve_all("health-visits")
    assert last["kind"] == "admission.recertified"
    reg = service.get("health-visits")
    assert (reg.status, reg.renewal_open, reg.approved_until) == (
        SystemStatus.APPROVED,
        False,
        clock.now + timedelta(days=365),
    )


def test_an_approval_ending_mid_renewal_lapses_and_the_round_goes_on(
    flow: Flow, service: AdmissionService, clock: FakeClock
) -> None:
    """The department recertified in time and four offices signed; the fifth had not when the approval
    ended. The daily lapse job closed the round: the four signatures no longer counted and the
    department had to recertify again. Now the system is blocked (lapsed) and the round goes on: the
    remaining office's vote approves it."""
    first = _renewal_signed_by_all_but_one(flow, service, clock)
    rest = set(service.review_progress("health-visits").approved_by)
    clock.advance(timedelta(days=30))
    events = service.lapse_due()
    assert [(e["kind"], e["before"], e["after"]) for e in events] == [
        ("admission.lapsed", "approved", "lapsed"),
        ("admission.renewal_continued", "lapsed", "submitted"),
    ]
    reg = service.get("health-visits")
    assert (reg.status, reg.review_round, reg.renewal_open) == (SystemStatus.SUBMITTED, 2, False)
    assert not routing_verdict(reg, clock.now).allowed
    progress = service.review_progress("health-visits")
    assert progress.pending == (first,) and set(progress.approved_by) == set(rest)
    # Still blocked, still the most urgent reminder (it vanished from the list once the job had run).
    assert [(r.system_id, r.lapsed) for r in service.reminders_due()] == [("health-visits", True)]
    reviewer, department = REVIEWERS[first]
    last = service.review("health-visits", first, reviewer, department, "approve", "同意")
    assert last["after"] == "approved"
    assert routing_verdict(service.get("health-visits"), clock.now).allowed
    assert service.reminders_due() == []


def test_recertification_can_end_in_rejection(flow: Flow, service: AdmissionService) -> None:
    flow.admit(make_registration())
    service.recertify("health-visits", "u-health-admin")
    reviewer, department = REVIEWERS["big_data_centre"]
    event = service.review("health-visits", "big_data_centre", reviewer, department, "reject", "长期无人使用")
    assert (event["before"], event["after"], event["reasons"]) == ("approved", "rejected", ["长期无人使用"])


def test_no_review_of_an_approved_system_without_an_open_round(flow: Flow, service: AdmissionService) -> None:
    flow.admit(make_registration())
    reviewer, department = REVIEWERS["big_data_centre"]
    with pytest.raises(IllegalTransition):
        service.review("health-visits", "big_data_centre", reviewer, department, "reject", "想撤就撤")


def test_suspend_reinstate_revoke(flow: Flow, service: AdmissionService, clock: FakeClock) -> None:
    flow.admit(make_registration())
    service.suspend("health-visits", "u-sup", "数据泄露核查")
    assert routing_verdict(service.get("health-visits"), clock.now).code == "system_suspended"
    service.reinstate("health-visits", "u-sup", "核查完毕")
    assert routing_verdict(service.get("health-visits"), clock.now).allowed
    event = service.revoke("health-visits", "u-sup", "违规下沉")
    assert (event["after"], event["reason"]) == ("revoked", "违规下沉")
    for action in (service.reinstate, service.suspend, service.revoke):
        with pytest.raises(IllegalTransition):
            action("health-visits", "u-sup", "再试")
    with pytest.raises(IllegalTransition):
        service.recertify("health-visits", "u-health-admin")


def test_supervision_needs_a_reason(flow: Flow, service: AdmissionService) -> None:
    flow.admit(make_registration())
    with pytest.raises(Exception, match="reason"):
        service.suspend("health-visits", "u-sup", " ")
    assert service.get("health-visits").status is SystemStatus.APPROVED


def test_reminders_before_lapse(flow: Flow, service: AdmissionService, clock: FakeClock) -> None:
    flow.admit(make_registration())
    until = service.get("health-visits").approved_until
    assert until is not None
    cases = [(61, None), (60, 60), (45, 60), (30, 30), (8, 30), (7, 7), (1, 7)]
    for days_left, threshold in cases:
        reminders = service.reminders_due(until - timedelta(days=days_left))
        assert [r.threshold_days for r in reminders] == ([threshold] if threshold else []), days_left
    # Once it has ended the system is blocked: the most urgent reminder of all, not none.
    (lapsed,) = service.reminders_due(until)
    assert (lapsed.system_id, lapsed.lapsed, lapsed.threshold_days) == ("health-visits", True, 0)
    # Days since it ended, counted toward zero: 25 hours ago is one day ago (it read -2), an hour ago none.
    for after, days in ((timedelta(hours=1), 0), (timedelta(hours=25), -1), (timedelta(days=3, hours=2), -3)):
        (lapsed,) = service.reminders_due(until + after)
        assert lapsed.days_left == days, after


def test_snapshot_follows_status_changes(flow: Flow, service: AdmissionService, session: Session) -> None:
    flow.admit(make_registration())
    flow.register(make_registration("pending-one"))
    snapshot = load_status_snapshot(session)
    assert snapshot.version == registry_version(session)
    assert set(snapshot) == {"health-visits", "pending-one"}
    assert snapshot["health-visits"].status is SystemStatus.APPROVED
    assert snapshot.verdict("health-visits", T0).allowed
    assert snapshot.verdict("pending-one", T0).code == "system_not_approved"
    assert snapshot.verdict("ghost", T0).code == "system_not_registered"
    until = snapshot["health-visits"].approved_until
    assert until is not None and not snapshot.verdict("health-visits", until).allowed

    service.suspend("health-visits", "u-sup", "核查")
    assert registry_version(session) > snapshot.version
    fresh = load_status_snapshot(session)
    assert fresh.verdict("health-visits", T0).code == "system_suspended"
    assert "13800000000" not in repr(fresh)


def test_clock_must_be_timezone_aware(session: Session) -> None:
    service = AdmissionService(session, clock=lambda: datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        service.register(make_registration())
