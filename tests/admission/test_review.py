"""Registration and joint review through the service: every required office, recusal, separation of
duties, rejection reasons, changes and resubmission, and the change events handed to audit."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from admission import (
    AdmissionConfig,
    AdmissionService,
    AlreadyVoted,
    BurdenChecklist,
    ConfigurationError,
    IllegalTransition,
    InvalidRegistration,
    ReasonRequired,
    RegistrationExists,
    RegistrationNotFound,
    ReviewOffice,
    SeparationOfDuties,
    SystemStatus,
    UnknownOffice,
    load_admission_config,
    registry_version,
)

from .conftest import REVIEWERS, T0, FakeClock, Flow, make_registration

DEFAULT_OFFICES = list(REVIEWERS)


def vote(
    service: AdmissionService, system_id: str, office: str, v: str, comment: str = ""
) -> dict[str, object]:
    reviewer, department = REVIEWERS[office]
    return service.review(system_id, office, reviewer, department, v, comment)


def test_register_creates_a_draft_and_an_event(service: AdmissionService) -> None:
    event = service.register(make_registration(status=SystemStatus.APPROVED, filing_number="forged"))
    reg = service.get("health-visits")
    assert reg.status is SystemStatus.DRAFT
    assert reg.filing_number is None
    assert event["kind"] == "admission.registered"
    assert (event["actor"], event["system_id"], event["before"], event["after"]) == (
        "u-health-admin",
        "health-visits",
        None,
        "draft",
    )


def test_register_twice_is_refused(service: AdmissionService) -> None:
    service.register(make_registration())
    with pytest.raises(RegistrationExists):
        service.register(make_registration())


def test_unknown_system(service: AdmissionService) -> None:
    with pytest.raises(RegistrationNotFound) as info:
        service.submit("nope-system", "u")
    assert "nope-system" in info.value.message_zh


def test_incomplete_checklist_cannot_be_submitted(service: AdmissionService) -> None:
    service.register(make_registration(checklist=BurdenChecklist(forces_checkins=False)))
    with pytest.raises(InvalidRegistration) as info:
        service.submit("health-visits", "u-health-admin")
    assert info.value.field == "checklist"
    assert service.get("health-visits").status is SystemStatus.DRAFT
    # The Chinese message, which the department's system admin reads first, names every open question
    # (not only the English one): what it asks, and the key to answer it with.
    for question in ("duplicates_platform_function", "can_embed_in_platform", "offers_complaint_entry"):
        assert BurdenChecklist.QUESTIONS_ZH[question] in info.value.message_zh
        assert question in info.value.message_zh
    assert "forces_checkins" not in info.value.message_zh  # answered


def test_approval_needs_every_required_office(service: AdmissionService, clock: FakeClock) -> None:
    service.register(make_registration())
    service.submit("health-visits", "u-health-admin")
    for office in DEFAULT_OFFICES[:-1]:
        event = vote(service, "health-visits", office, "approve")
        assert event["kind"] == "admission.review_vote"
        assert service.get("health-visits").status is SystemStatus.SUBMITTED
    assert service.review_progress("health-visits").pending == (DEFAULT_OFFICES[-1],)
    clock.advance(timedelta(hours=1))
    event = vote(service, "health-visits", DEFAULT_OFFICES[-1], "approve")
    reg = service.get("health-visits")
    assert reg.status is SystemStatus.APPROVED
    assert reg.filing_number == "CJZR-2025-0001"
    assert reg.approved_until == T0 + timedelta(hours=1, days=365)
    assert event["kind"] == "admission.approved"
    assert (event["before"], event["after"], event["filing_number"]) == (
        "submitted",
        "approved",
        "CJZR-2025-0001",
    )


def test_filing_numbers_are_sequential(flow: Flow, service: AdmissionService) -> None:
    flow.admit(make_registration("sys-one"))
    flow.admit(make_registration("sys-two"))
    assert [service.get(s).filing_number for s in ("sys-one", "sys-two")] == [
        "CJZR-2025-0001",
        "CJZR-2025-0002",
    ]


def test_the_filing_year_is_the_beijing_year(flow: Flow, service: AdmissionService, clock: FakeClock) -> None:
    """Approved at 01:00 on New Year's Day in Beijing (17:00 UTC the day before): a filing of the new year."""
    clock.now = datetime(2025, 12, 31, 17, 0, tzinfo=UTC)
    flow.admit(make_registration("sys-new-year"))
    assert service.get("sys-new-year").filing_number == "CJZR-2026-0001"


def test_office_of_the_applying_department_is_recused(service: AdmissionService) -> None:
    """The civil affairs bureau does not review (and is not required for) a civil-affairs system."""
    service.register(make_registration("civil-affairs-registry", department="civil_affairs"))
    service.submit("civil-affairs-registry", "u-health-admin")
    progress = service.review_progress("civil-affairs-registry")
    assert "civil_affairs_bureau" not in progress.required_offices
    assert progress.recused_offices == ("civil_affairs_bureau",)
    with pytest.raises(SeparationOfDuties):
        vote(service, "civil-affairs-registry", "civil_affairs_bureau", "approve")
    for office in progress.required_offices:
        vote(service, "civil-affairs-registry", office, "approve")
    assert service.get("civil-affairs-registry").status is SystemStatus.APPROVED


@pytest.mark.parametrize(
    ("case", "office", "reviewer_id", "reviewer_department", "error"),
    [
        ("reviewer from the applying department", "big_data_centre", "u-h-9", "health", SeparationOfDuties),
        (
            "the registering admin reviews",
            "big_data_centre",
            "u-health-admin",
            "big_data",
            SeparationOfDuties,
        ),
        (
            "one person, second office",
            "city_operations_centre",
            "u-bd-1",
            "city_operations",
            SeparationOfDuties,
        ),
        ("office votes twice", "big_data_centre", "u-bd-2", "big_data", AlreadyVoted),
        ("unknown office", "district_police", "u-p-1", "police", UnknownOffice),
    ],
)
def test_separation_of_duties(
    service: AdmissionService,
    case: str,
    office: str,
    reviewer_id: str,
    reviewer_department: str,
    error: type[Exception],
) -> None:
    service.register(make_registration())
    service.submit("health-visits", "u-health-admin")
    vote(service, "health-visits", "big_data_centre", "approve")
    with pytest.raises(error):
        service.review("health-visits", office, reviewer_id, reviewer_department, "approve", "")
    assert len(service.reviews("health-visits")) == 1


def test_rejection_returns_reasons_and_resubmission_opens_a_new_round(service: AdmissionService) -> None:
    service.register(make_registration())
    service.submit("health-visits", "u-health-admin")
    vote(service, "health-visits", "government_services_office", "approve")
    event = vote(service, "health-visits", "big_data_centre", "reject", "与社区云随访模块重复")
    assert event["kind"] == "admission.rejected"
    assert event["reasons"] == ["与社区云随访模块重复"]
    assert service.get("health-visits").status is SystemStatus.REJECTED
    with pytest.raises(IllegalTransition):
        vote(service, "health-visits", "city_operations_centre", "approve")

    service.submit("health-visits", "u-health-admin")
    progress = service.review_progress("health-visits")
    assert (progress.round, progress.approved_by, progress.pending) == (2, (), tuple(DEFAULT_OFFICES))
    for office in DEFAULT_OFFICES:
        vote(service, "health-visits", office, "approve")
    assert service.get("health-visits").status is SystemStatus.APPROVED


def test_rejected_registration_can_be_revised_then_resubmitted(service: AdmissionService) -> None:
    service.register(make_registration())
    service.submit("health-visits", "u-health-admin")
    vote(service, "health-visits", "big_data_centre", "reject", "重复采集手机号")
    with pytest.raises(IllegalTransition):
        service.update(make_registration(collects_fields=("residents.name",)), "u-health-admin")
    service.revise("health-visits", "u-health-admin")
    service.update(make_registration(collects_fields=("residents.name",)), "u-health-admin")
    service.submit("health-visits", "u-health-admin")
    assert service.get("health-visits").collects_fields == ("residents.name",)


@pytest.mark.parametrize("negative", ["reject", "request_changes"])
def test_negative_votes_need_a_reason(service: AdmissionService, negative: str) -> None:
    service.register(make_registration())
    service.submit("health-visits", "u-health-admin")
    with pytest.raises(InvalidRegistration):
        vote(service, "health-visits", "big_data_centre", negative, "   ")
    assert service.get("health-visits").status is SystemStatus.SUBMITTED


@pytest.mark.parametrize(
    ("comment", "kind"),
    [
        ("护照号E12345678，请核对", "护照号"),
        ("回电一三八一二三四五六七八", "手机号"),
        ("微信号：wang_jg88", "微信号"),
    ],
)
def test_a_review_comment_holding_personal_data_is_refused_by_the_library(
    service: AdmissionService, comment: str, kind: str
) -> None:
    """The library refuses on its own what the gateway refuses (the review record is read by every office
    and kept, PIPL Art. 51), naming the kind, never the value."""
    service.register(make_registration())
    service.submit("health-visits", "u-health-admin")
    with pytest.raises(InvalidRegistration) as refused:
        vote(service, "health-visits", "big_data_centre", "request_changes", comment)
    assert refused.value.field == "comment" and kind in refused.value.message_zh
    for value in ("E12345678", "一三八一二三四五六七八", "wang_jg88"):
        assert value not in refused.value.message_zh + refused.value.message_en
    assert service.get("health-visits").status is SystemStatus.SUBMITTED


def test_changes_requested_then_updated_and_resubmitted(service: AdmissionService) -> None:
    service.register(make_registration())
    service.submit("health-visits", "u-health-admin")
    event = vote(
        service, "health-visits", "civil_affairs_bureau", "request_changes", "手机号可用回流数据预填"
    )
    assert (event["kind"], event["after"], event["reasons"]) == (
        "admission.changes_requested",
        "changes_requested",
        ["手机号可用回流数据预填"],
    )
    event = service.update(make_registration(collects_fields=("residents.name",)), "u-health-admin")
    assert event["changed_fields"] == ["collects_fields"]
    service.submit("health-visits", "u-health-admin")
    assert service.get("health-visits").status is SystemStatus.SUBMITTED


@pytest.mark.parametrize("status", ["submitted", "approved"])
def test_update_outside_draft_or_changes_requested_is_refused(
    flow: Flow, service: AdmissionService, status: str
) -> None:
    flow.register(make_registration())
    service.submit("health-visits", "u-health-admin")
    if status == "approved":
        flow.approve_all("health-visits")
    with pytest.raises(IllegalTransition) as info:
        service.update(make_registration(name="改名"), "u-health-admin")
    assert "修改登记" in info.value.message_zh


def test_update_cannot_move_the_system_to_another_department(service: AdmissionService) -> None:
    service.register(make_registration())
    with pytest.raises(InvalidRegistration):
        service.update(make_registration(department="civil_affairs"), "u-health-admin")


def test_withdraw_returns_to_draft_and_keeps_votes_of_the_old_round(service: AdmissionService) -> None:
    service.register(make_registration())
    service.submit("health-visits", "u-health-admin")
    vote(service, "health-visits", "big_data_centre", "approve")
    service.withdraw("health-visits", "u-health-admin")
    service.submit("health-visits", "u-health-admin")
    progress = service.review_progress("health-visits")
    assert progress.round == 2
    assert "big_data_centre" in progress.pending
    assert [r.round for r in service.reviews("health-visits")] == [1]


def test_configurable_offices(session: Session, clock: FakeClock) -> None:
    config = AdmissionConfig(
        offices=(
            ReviewOffice("a", "甲", "A", "dept_a"),
            ReviewOffice("b", "乙", "B", "dept_b", required=False),
        )
    )
    service = AdmissionService(session, config, clock)
    service.register(make_registration())
    service.submit("health-visits", "u-health-admin")
    service.review("health-visits", "a", "u-a", "dept_a", "approve")
    assert service.get("health-visits").status is SystemStatus.APPROVED


def test_submit_refused_when_every_required_office_is_recused(session: Session, clock: FakeClock) -> None:
    config = AdmissionConfig(offices=(ReviewOffice("h", "卫健委", "Health", "health"),))
    service = AdmissionService(session, config, clock)
    service.register(make_registration())
    with pytest.raises(ConfigurationError):
        service.submit("health-visits", "u-health-admin")


def test_every_status_change_bumps_the_registry_version(
    flow: Flow, service: AdmissionService, session: Session
) -> None:
    assert registry_version(session) == 0
    flow.register(make_registration())
    assert registry_version(session) == 0
    service.submit("health-visits", "u-health-admin")
    assert registry_version(session) == 1
    vote(service, "health-visits", "big_data_centre", "approve")
    assert registry_version(session) == 1
    flow.approve_all("health-visits")
    assert registry_version(session) == 2
    service.suspend("health-visits", "u-sup", "投诉核查中")
    assert registry_version(session) == 3


def test_events_are_plain_json_ready_dicts(flow: Flow) -> None:
    flow.admit(make_registration())
    import json

    for event in flow.events:
        json.dumps(event)
        assert {"kind", "actor", "system_id", "before", "after", "at"} <= event.keys()
        assert "13800000000" not in json.dumps(event)


def test_replace_keeps_validation() -> None:
    with pytest.raises(InvalidRegistration):
        replace(make_registration(), security_level=6)


@pytest.mark.parametrize(
    ("office", "reviewer_department"),
    [
        ("civil_affairs_bureau", "civil_affairs"),  # the applying department's own office
        ("big_data_centre", "civil_affairs"),  # a reviewer from the applying department, for another office
    ],
)
def test_a_recused_reviewer_is_told_the_department_by_its_chinese_name(
    service: AdmissionService, office: str, reviewer_department: str
) -> None:
    """Both messages name the department as the progress view does (区民政局, District Civil Affairs
    Bureau), not by its code (the English one said civil_affairs)."""
    service.register(make_registration("civil-affairs-visits", department="civil_affairs"))
    service.submit("civil-affairs-visits", "u-health-admin")
    with pytest.raises(SeparationOfDuties) as info:
        service.review("civil-affairs-visits", office, "u-mz-9", reviewer_department, "approve", "")
    assert "区民政局" in info.value.message_zh and "civil_affairs" not in info.value.message_zh
    assert "District Civil Affairs Bureau" in info.value.message_en
    assert "civil_affairs" not in info.value.message_en


def test_a_department_without_an_office_is_named_from_the_district_table() -> None:
    config = load_admission_config()
    assert config.department_name_zh("civil_affairs") == "区民政局"
    # No reviewing office belongs to health: it was None, and the recusal said 部门代码 health.
    assert config.department_name_zh("health") == "区卫健委"
    assert config.department_name_zh("no_such_department") is None
    assert config.department_names("health") == ("区卫健委", "District Health Commission")
    assert config.department_names("civil_affairs") == ("区民政局", "District Civil Affairs Bureau")
    assert config.department_names("no_such_department") == (
        "部门代码 no_such_department",
        "department code no_such_department",
    )


def test_a_reviewer_recused_from_a_department_without_an_office_is_told_its_chinese_name(
    service: AdmissionService,
) -> None:
    service.register(make_registration())  # health-visits, by the health department
    service.submit("health-visits", "u-health-admin")
    with pytest.raises(SeparationOfDuties) as info:
        service.review("health-visits", "big_data_centre", "u-h-9", "health", "approve", "")
    assert "审核人不得来自申请部门（区卫健委）" in info.value.message_zh
    assert "部门代码" not in info.value.message_zh
    assert "the applying department (District Health Commission)" in info.value.message_en


def test_a_vote_on_a_registration_sent_back_does_not_call_it_final(service: AdmissionService) -> None:
    """A reviewer voting after another office sent the registration back is told what may happen next
    (the department resubmits), never that the status is final: it is not."""
    service.register(make_registration())
    service.submit("health-visits", "u-health-admin")
    vote(service, "health-visits", "big_data_centre", "request_changes", "请说明走访记录保存期限")
    with pytest.raises(IllegalTransition) as info:
        vote(service, "health-visits", "city_operations_centre", "approve")
    # Not "possible now: submit": a reviewer cannot submit; she is told who acts next and where to look.
    assert info.value.message_zh.endswith(
        "当前状态为「待修改」，不能执行「联审表决」操作。它现在不在联审中，没有需要表决的内容；"
        "申请部门提交联审（或发起重新审核）后，它会出现在您的待办中（admission list --awaiting-me）。"
    )
    assert "submit" not in info.value.message_zh and "Possible now" not in info.value.message_en
    assert "final" not in info.value.message_en


@pytest.mark.parametrize("ending", ["withdraw", "request_changes", "reject"])
def test_approvals_of_a_round_that_ended_do_not_show_as_signed(
    service: AdmissionService, ending: str
) -> None:
    """Withdrawn after 区大数据中心 approved, the progress still listed it as signed; a resubmission opens a
    new round in which it must sign again."""
    service.register(make_registration())
    service.submit("health-visits", "u-health-admin")
    vote(service, "health-visits", "big_data_centre", "approve")
    if ending == "withdraw":
        service.withdraw("health-visits", "u-health-admin")
    else:
        vote(service, "health-visits", "city_operations_centre", ending, "请补充说明")
    progress = service.review_progress("health-visits")
    assert progress.round_ended and progress.approved_by == ()
    assert progress.pending == tuple(DEFAULT_OFFICES)
    assert progress.votes[0].office == "big_data_centre"  # kept as the record


@pytest.mark.parametrize(("v", "what"), [("reject", "驳回"), ("request_changes", "要求修改")])
def test_a_vote_against_without_a_comment_names_the_option_and_counts_nothing(
    service: AdmissionService, v: str, what: str
) -> None:
    """It said only "comment：须说明理由": which option to add, and whether the vote counted, were left
    to guess."""
    service.register(make_registration())
    service.submit("health-visits", "u-health-admin")
    with pytest.raises(ReasonRequired) as info:
        vote(service, "health-visits", "big_data_centre", v, "  ")
    assert info.value.message_zh.startswith(f"comment：{what}须写明理由（--comment）")
    assert info.value.message_zh.endswith("本次未表决。")
    assert "--comment" in info.value.message_en and "Nothing was voted" in info.value.message_en
    assert service.review_progress("health-visits").votes == ()


def test_an_office_voting_again_is_told_how_to_change_its_vote(service: AdmissionService) -> None:
    service.register(make_registration())
    service.submit("health-visits", "u-health-admin")
    vote(service, "health-visits", "big_data_centre", "approve")
    with pytest.raises(AlreadyVoted) as info:
        vote(service, "health-visits", "big_data_centre", "reject", "改变意见")
    assert info.value.message_zh.endswith(
        "每个单位每轮只表决一次。如需改变意见，请联系申请部门撤回（withdraw）后重新提交，在新一轮中再表决。"
    )


def test_a_vote_on_a_withdrawn_registration_tells_the_reviewer_to_wait(service: AdmissionService) -> None:
    service.register(make_registration())
    service.submit("health-visits", "u-health-admin")
    service.withdraw("health-visits", "u-health-admin")
    with pytest.raises(IllegalTransition) as info:
        vote(service, "health-visits", "city_operations_centre", "approve")
    assert "「草稿」" in info.value.message_zh and "admission list --awaiting-me" in info.value.message_zh
    assert "当前可以" not in info.value.message_zh


def test_a_vote_or_an_edit_on_an_approved_system_names_its_actions_not_votes(
    flow: Flow, service: AdmissionService
) -> None:
    flow.register(make_registration())
    service.submit("health-visits", "u-health-admin")
    flow.approve_all("health-visits")
    with pytest.raises(IllegalTransition) as info:
        service.update(make_registration(name="改名"), "u-health-admin")
    # The department's own action only: suspend and revoke are the supervisors'.
    assert info.value.message_zh.endswith("当前可以：重新审核（recertify）。"), info.value.message_zh
    assert "最终状态" not in info.value.message_zh
    with pytest.raises(IllegalTransition) as info:
        vote(service, "health-visits", "city_operations_centre", "approve")
    assert "当前状态为「已准入」" in info.value.message_zh and "--awaiting-me" in info.value.message_zh
    assert "最终状态" not in info.value.message_zh and "当前可以" not in info.value.message_zh
