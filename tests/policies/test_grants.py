"""Grant lifecycle on a real (SQLite) database: transitions, separation of duties, change events,
renewal, reminders, break-glass, and revocation reaching every process through the version row."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from policies import (
    AccessRequest,
    GrantError,
    GrantIndex,
    GrantNotFoundError,
    GrantRepository,
    GrantService,
    GrantStatus,
    InvalidTransitionError,
    PermissionModel,
    PolicyEngine,
    ReviewNotFoundError,
    ScenarioCatalog,
    SeparationOfDutiesError,
    Subject,
    metadata,
)
from policies.grants import BREAK_GLASS_MAX_HOURS, BREAK_GLASS_MIN_REASON_CHARS, stagger_days

from .conftest import (
    AUDITOR,
    CADRE_A1,
    CADRE_A2,
    COUNTY,
    ELDERLY_FIELDS,
    OTHER_STEWARD,
    STEWARD,
    STEWARD_2,
    SUPERVISOR,
    T0,
    TOWNSHIP_A,
    TOWNSHIP_B,
    TOWNSHIP_OFFICER_A,
    VILLAGE_A1,
    VILLAGE_A2,
)


@pytest.fixture
def service(session: Session, scenarios: ScenarioCatalog, permissions: PermissionModel) -> GrantService:
    return GrantService(GrantRepository(session), scenarios, permissions)


def _elderly(service: GrantService, who: Subject = CADRE_A1, scope: str = VILLAGE_A1) -> str:
    grant, _ = service.request(who, "ELDERLY_VISIT", scope, None, "季度走访", T0)
    return grant.grant_id


def _dibao(service: GrantService, who: Subject = TOWNSHIP_OFFICER_A, scope: str = TOWNSHIP_A) -> str:
    grant, _ = service.request(who, "DIBAO_REVIEW", scope, None, "年度复核", T0)
    return grant.grant_id


def test_request_then_approve_makes_an_active_grant(service: GrantService, session: Session) -> None:
    grant, event = service.request(CADRE_A1, "ELDERLY_VISIT", "310151101001", None, "季度走访", T0)
    assert grant.status is GrantStatus.REQUESTED
    assert dict(grant.datasets) == {"residents": ELDERLY_FIELDS}
    assert event["kind"] == "grant.requested" and event["before"] is None
    assert event["after"]["status"] == "requested" and event["actor"] == CADRE_A1.user_id
    approved, event = service.approve(grant.grant_id, STEWARD, T0)
    assert approved.status is GrantStatus.APPROVED
    assert approved.valid_from == T0
    assert approved.valid_until == T0 + timedelta(days=180)  # the scenario's default validity
    assert approved.is_active(T0) and not approved.is_active(T0 + timedelta(days=180))
    assert event == {
        "kind": "grant.approved",
        "actor": STEWARD.user_id,
        "grant_id": grant.grant_id,
        "before": grant.to_dict(),
        "after": approved.to_dict(),
        "at": T0.isoformat(),
    }
    stored = GrantRepository(session).get(grant.grant_id)
    assert stored == approved
    assert stored is not None and stored.valid_until is not None and stored.valid_until.tzinfo is not None


def test_sensitive_fields_need_a_second_different_steward(service: GrantService) -> None:
    grant_id = _dibao(service)
    first, event = service.approve(grant_id, STEWARD, T0)
    assert first.status is GrantStatus.AWAITING_SECOND_APPROVAL
    assert event["kind"] == "grant.first_approval"
    assert not first.is_active(T0)
    with pytest.raises(SeparationOfDutiesError):
        service.approve(grant_id, STEWARD, T0)
    second, event = service.approve(grant_id, STEWARD_2, T0)
    assert second.status is GrantStatus.APPROVED
    assert (second.approved_by, second.second_approver) == (STEWARD.user_id, STEWARD_2.user_id)
    assert second.is_active(T0)


def test_a_narrowed_request_without_sensitive_fields_needs_one_approval(service: GrantService) -> None:
    grant, _ = service.request(
        TOWNSHIP_OFFICER_A,
        "DIBAO_REVIEW",
        TOWNSHIP_A,
        {"residents": ["id", "name", "village_code"]},
        "核对名单",
        T0,
    )
    approved, _ = service.approve(grant.grant_id, STEWARD, T0)
    assert approved.status is GrantStatus.APPROVED


# (who acts, on what, expected error)
SOD_CASES: list[tuple[str, Subject, type[Exception]]] = [
    ("requester approves own request", CADRE_A1, SeparationOfDutiesError),
    ("cadre cannot approve", CADRE_A2, SeparationOfDutiesError),
    ("steward of another department", OTHER_STEWARD, SeparationOfDutiesError),
    ("auditor cannot approve", AUDITOR, SeparationOfDutiesError),
    ("supervisor cannot approve", SUPERVISOR, SeparationOfDutiesError),
]


@pytest.mark.parametrize(("case", "actor", "error"), SOD_CASES, ids=[c[0] for c in SOD_CASES])
def test_who_may_not_approve(
    service: GrantService, case: str, actor: Subject, error: type[Exception]
) -> None:
    grant_id = _elderly(service)
    with pytest.raises(error) as info:
        service.approve(grant_id, actor, T0)
    assert isinstance(info.value, GrantError) and info.value.message_zh and info.value.message_en


def test_a_steward_who_requested_cannot_approve_it(
    session: Session, scenarios: ScenarioCatalog, permissions: PermissionModel
) -> None:
    both = Subject(
        user_id="u-both", org=VILLAGE_A1, roles=("village_cadre", "data_steward"), department="civil_affairs"
    )
    service = GrantService(GrantRepository(session), scenarios, permissions)
    grant_id = _elderly(service, who=both)
    with pytest.raises(SeparationOfDutiesError):
        service.approve(grant_id, both, T0)
    with pytest.raises(SeparationOfDutiesError):
        service.reject(grant_id, both, "no", T0)


# (requester, scope, scenario, datasets, expected error)
BAD_REQUESTS: list[tuple[str, Subject, str, str, dict[str, list[str]] | None, type[Exception]]] = [
    ("outside own jurisdiction", CADRE_A1, VILLAGE_A2, "ELDERLY_VISIT", None, SeparationOfDutiesError),
    ("above own level", TOWNSHIP_OFFICER_A, COUNTY, "DIBAO_REVIEW", None, SeparationOfDutiesError),
    ("sibling township", TOWNSHIP_OFFICER_A, TOWNSHIP_B, "DIBAO_REVIEW", None, SeparationOfDutiesError),
    ("unknown scenario", CADRE_A1, VILLAGE_A1, "NOPE", None, GrantError),
    (
        "field beyond the scenario",
        CADRE_A1,
        VILLAGE_A1,
        "ELDERLY_VISIT",
        {"residents": ["id_number"]},
        GrantError,
    ),
    (
        "dataset beyond the scenario",
        CADRE_A1,
        VILLAGE_A1,
        "ELDERLY_VISIT",
        {"households": ["id"]},
        GrantError,
    ),
    ("no fields", CADRE_A1, VILLAGE_A1, "ELDERLY_VISIT", {"residents": []}, GrantError),
    ("supervisor may not request", SUPERVISOR, VILLAGE_A1, "ELDERLY_VISIT", None, SeparationOfDutiesError),
    ("malformed scope", CADRE_A1, "3101511", "ELDERLY_VISIT", None, ValueError),
]


@pytest.mark.parametrize(
    ("case", "who", "scope", "scenario", "datasets", "error"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS]
)
def test_bad_requests_are_refused(
    service: GrantService,
    case: str,
    who: Subject,
    scope: str,
    scenario: str,
    datasets: dict[str, list[str]] | None,
    error: type[Exception],
) -> None:
    with pytest.raises(error):
        service.request(who, scenario, scope, datasets, "理由", T0)


@pytest.mark.parametrize(
    ("fields", "named_zh", "named_en"),
    [
        (
            ["id", "id_number"],
            "申请的字段中，id_number 不在场景所需范围内",
            "id_number outside the scenario's list",
        ),
        (["id", "idnumbr"], "申请的字段中，1 个未编目的字段 不在", "1 uncatalogued field outside"),
        (
            ["13812345678", "id_number"],
            "申请的字段中，id_number，另有 1 个未编目的字段 不在",
            "id_number and 1",
        ),
        ([], "申请没有列出任何字段", "no fields listed"),
    ],
)
def test_a_field_refused_is_named_when_catalogued_and_only_counted_otherwise(
    service: GrantService, fields: list[str], named_zh: str, named_en: str
) -> None:
    """The refusal said 申请的字段超出了场景所需范围（或一个也没有） whatever was wrong: a cadre asking for
    birth_date under a scenario that does not need it could not tell which of her fields was refused."""
    with pytest.raises(GrantError) as info:
        service.request(CADRE_A1, "ELDERLY_VISIT", VILLAGE_A1, {"residents": fields}, "理由", T0)
    assert named_zh in info.value.message_zh and "本次未提出申请" in info.value.message_zh
    assert named_en in info.value.message_en
    assert "13812345678" not in str(info.value) and "idnumbr" not in str(info.value)


def test_a_reason_is_required(service: GrantService) -> None:
    with pytest.raises(GrantError):
        service.request(CADRE_A1, "ELDERLY_VISIT", VILLAGE_A1, None, "  ", T0)


def test_a_refused_transition_names_the_status_the_grant_is_in(service: GrantService) -> None:
    """'cannot approve a approved grant' / 该授权当前状态不能审批 said neither which status nor why."""
    grant_id = _elderly(service)
    service.reject(grant_id, STEWARD, "材料不全", T0)
    with pytest.raises(InvalidTransitionError) as approving:
        service.approve(grant_id, STEWARD, T0)
    assert approving.value.message_zh == "该授权当前为「已驳回」，不能审批。"
    assert approving.value.message_en == "cannot approve this grant: it is rejected"
    with pytest.raises(InvalidTransitionError) as revoking:
        service.revoke(grant_id, STEWARD, "不再需要", T0)
    assert revoking.value.message_zh == "该授权当前为「已驳回」，不能撤销。只有已批准的授权可以撤销。"


def test_invalid_transitions(service: GrantService) -> None:
    grant_id = _elderly(service)
    with pytest.raises(InvalidTransitionError):
        service.revoke(grant_id, STEWARD, "不再需要", T0)
    service.reject(grant_id, STEWARD, "材料不全", T0)
    with pytest.raises(InvalidTransitionError):
        service.approve(grant_id, STEWARD, T0)
    with pytest.raises(GrantNotFoundError):
        service.approve("grt_missing", STEWARD, T0)


def test_revoke_by_steward_or_supervisor_with_a_reason(service: GrantService) -> None:
    for actor in (STEWARD, SUPERVISOR):
        grant_id = _elderly(service)
        service.approve(grant_id, STEWARD_2, T0)
        with pytest.raises(GrantError):
            service.revoke(grant_id, actor, "", T0)
        revoked, event = service.revoke(grant_id, actor, "人员调整", T0 + timedelta(hours=1))
        assert revoked.status is GrantStatus.REVOKED and revoked.revoked_by == actor.user_id
        # Why it was asked for and why it was taken back are both kept.
        assert (revoked.reason, revoked.decision_reason) == ("季度走访", "人员调整")
        assert service.repository.get(grant_id) == revoked
        assert event["before"]["status"] == "approved" and event["after"]["status"] == "revoked"
    grant_id = _elderly(service)
    service.approve(grant_id, STEWARD_2, T0)
    with pytest.raises(SeparationOfDutiesError):
        service.revoke(grant_id, AUDITOR, "x", T0)


def _engine_req(who: Subject, scenario: str = "ELDERLY_VISIT", hours: int = 0) -> AccessRequest:
    return AccessRequest(who, "read", "residents", scenario, None, T0 + timedelta(hours=hours))


def test_revocation_reaches_another_process_on_its_next_request(
    tmp_path: Path, scenarios: ScenarioCatalog, permissions: PermissionModel
) -> None:
    url = f"sqlite+pysqlite:///{tmp_path / 'policy.db'}"
    db = create_engine(url)
    metadata.create_all(db)

    def process() -> tuple[PolicyEngine, Session]:
        session = Session(create_engine(url))
        repo = GrantRepository(session)
        return PolicyEngine(permissions, scenarios, GrantIndex.from_repository(repo, T0)), session

    with Session(db) as admin:
        service = GrantService(GrantRepository(admin), scenarios, permissions)
        grant_id = _elderly(service)
        service.approve(grant_id, STEWARD, T0)
        admin.commit()
    worker_1, s1 = process()
    worker_2, s2 = process()
    for worker, sess in ((worker_1, s1), (worker_2, s2)):
        assert not worker.refresh_grants(GrantRepository(sess), T0)
        assert worker.decide(_engine_req(CADRE_A1)).allowed
    version_before = worker_1.grants.version
    with Session(db) as admin:
        service = GrantService(GrantRepository(admin), scenarios, permissions)
        service.revoke(grant_id, SUPERVISOR, "发现违规", T0 + timedelta(minutes=5))
        admin.commit()
    for worker, sess in ((worker_1, s1), (worker_2, s2)):
        sess.rollback()  # a new request starts a new transaction
        assert worker.refresh_grants(GrantRepository(sess), T0 + timedelta(minutes=6))
        assert worker.grants.version > version_before
        assert worker.decide(_engine_req(CADRE_A1)).code == "grant_revoked"
        sess.close()


def test_versions_move_only_on_changes_the_index_sees(service: GrantService) -> None:
    repo = service.repository
    assert repo.policy_version() == 0
    grant_id = _elderly(service)
    assert repo.policy_version() == 0  # a request changes no decision
    service.approve(grant_id, STEWARD, T0)
    assert repo.policy_version() == 1
    service.revoke(grant_id, STEWARD, "调整", T0)
    assert repo.policy_version() == 2


def test_expiry_needs_no_sweep_but_the_sweep_records_it(service: GrantService) -> None:
    grant_id = _elderly(service)
    service.approve(grant_id, STEWARD, T0, valid_until=T0 + timedelta(days=1))
    index = GrantIndex.from_repository(service.repository, T0)
    engine = PolicyEngine(service.permissions, service.scenarios, index)
    assert engine.decide(_engine_req(CADRE_A1, hours=23)).allowed
    assert engine.decide(_engine_req(CADRE_A1, hours=24)).code == "grant_expired"
    assert service.expire_due(T0 + timedelta(hours=23)) == []
    events = service.expire_due(T0 + timedelta(days=1))
    assert [e["kind"] for e in events] == ["grant.expired"]
    assert service.repository.list_grants(status=GrantStatus.EXPIRED)[0].grant_id == grant_id


def test_bulk_renewal_staggers_expiry_and_keeps_access_continuous(service: GrantService) -> None:
    ids = []
    for who, scope in ((CADRE_A1, VILLAGE_A1), (CADRE_A2, VILLAGE_A2)) * 5:
        gid = _elderly(service, who=who, scope=scope)
        service.approve(gid, STEWARD, T0)
        ids.append(gid)
    later = T0 + timedelta(days=170)
    reminders = service.reminders(later, within_days=14)
    assert {r.grant_id for r in reminders} == set(ids)
    assert {(r.must_act_role, r.must_act_department) for r in reminders} == {
        ("data_steward", "civil_affairs")
    }
    assert all(r.days_left == 10 for r in reminders)
    renewed, events = service.renew(ids, STEWARD_2, later)
    assert len(renewed) == len(ids) and len(events) == 2 * len(ids)
    assert all(g.renewed_from in ids and g.status is GrantStatus.APPROVED for g in renewed)
    assert len({g.valid_until for g in renewed}) > 1  # not one lapse day for the whole batch
    for g in renewed:
        assert g.valid_until is not None
        shorter = 180 - (g.valid_until - later).days  # the stagger shortens: never past the maximum
        assert shorter == stagger_days(g.grant_id, 14) and 0 <= shorter < 14
    assert all(g.status is GrantStatus.RENEWED for g in (service.repository.get(i) for i in ids) if g)
    engine = PolicyEngine(
        service.permissions, service.scenarios, GrantIndex.from_repository(service.repository, later)
    )
    assert engine.decide(AccessRequest(CADRE_A1, "read", "residents", "ELDERLY_VISIT", None, later)).allowed


def test_renewal_is_all_or_nothing_and_respects_duties(service: GrantService) -> None:
    good = _elderly(service)
    service.approve(good, STEWARD, T0)
    pending = _elderly(service, who=CADRE_A2, scope=VILLAGE_A2)
    with pytest.raises(InvalidTransitionError):
        service.renew([good, pending], STEWARD, T0)
    assert service.repository.get(good) is not None
    assert service.repository.get(good).status is GrantStatus.APPROVED  # type: ignore[union-attr]
    own = _elderly(service, who=CADRE_A1)
    service.approve(own, STEWARD, T0)
    with pytest.raises(SeparationOfDutiesError):
        service.renew([own], CADRE_A1, T0)
    dibao = _dibao(service)
    service.approve(dibao, STEWARD, T0)
    service.approve(dibao, STEWARD_2, T0)
    with pytest.raises(SeparationOfDutiesError):
        service.renew([dibao], STEWARD, T0)  # sensitive fields: second approver required
    with pytest.raises(SeparationOfDutiesError):
        service.renew([dibao], STEWARD, T0, second=STEWARD)
    renewed, _ = service.renew([dibao], STEWARD, T0, second=STEWARD_2)
    assert renewed[0].second_approver == STEWARD_2.user_id


def _approved_dibao(service: GrantService) -> str:
    dibao = _dibao(service)
    service.approve(dibao, STEWARD, T0)
    service.approve(dibao, STEWARD_2, T0)
    return dibao


def test_revoking_a_grant_rejects_its_renewal_waiting_for_a_second_steward(service: GrantService) -> None:
    """A renewal waiting for its second steward, approved after its grant was revoked, gave back the
    access the revocation took away: the revocation now rejects it, saying why."""
    dibao = _approved_dibao(service)
    (successor,), _ = service.renew([dibao], STEWARD, T0, defer_second_approval=True)
    assert successor.status is GrantStatus.AWAITING_SECOND_APPROVAL
    service.revoke(dibao, SUPERVISOR, "发现违规查询", T0 + timedelta(hours=1))
    events = service.take_events()
    closed = service.repository.get(successor.grant_id)
    assert closed is not None and closed.status is GrantStatus.REJECTED
    assert dibao in closed.decision_reason
    assert [(e["kind"], e["grant_id"]) for e in events] == [("grant.rejected", successor.grant_id)]
    with pytest.raises(InvalidTransitionError):
        service.approve(successor.grant_id, STEWARD_2, T0 + timedelta(hours=2))


def test_a_renewal_of_a_grant_no_longer_in_force_is_not_approved(
    service: GrantService, session: Session
) -> None:
    """Defence in depth: a waiting renewal whose grant was revoked some other way is still refused."""
    dibao = _approved_dibao(service)
    (successor,), _ = service.renew([dibao], STEWARD, T0, defer_second_approval=True)
    revoked = service.repository.get(dibao)
    assert revoked is not None
    service.repository.save(replace(revoked, status=GrantStatus.REVOKED))
    with pytest.raises(InvalidTransitionError, match="no longer in force"):
        service.approve(successor.grant_id, STEWARD_2, T0 + timedelta(hours=1))


def test_a_refusal_in_a_renewal_batch_names_the_grant_refused(service: GrantService) -> None:
    good = _elderly(service)
    service.approve(good, STEWARD, T0)
    pending = _elderly(service, who=CADRE_A2, scope=VILLAGE_A2)
    with pytest.raises(InvalidTransitionError) as info:
        service.renew([good, pending], STEWARD, T0)
    assert info.value.message_zh == (
        f"第 2 个授权（{pending}）：该授权当前为「待审批」，不能续期。只有已批准或已过期的授权可以续期。"
        "本批均未续期。"
    )
    assert info.value.message_en.startswith(f"grant 2 ({pending}): ")
    with pytest.raises(GrantNotFoundError) as missing:
        service.renew([good, "13812345678"], STEWARD, T0)
    assert missing.value.message_zh.startswith("第 2 个授权：") and "13812345678" not in str(
        missing.value.message_zh + missing.value.message_en
    )
    with pytest.raises(InvalidTransitionError) as alone:
        service.renew([pending], STEWARD, T0)
    assert alone.value.message_zh.startswith("该授权当前为「待审批」")  # one grant: no place to name


def test_a_grant_is_not_renewed_twice_while_a_renewal_waits(service: GrantService) -> None:
    """Two waiting successors of one grant, both approved, left two grants in force for one scope."""
    dibao = _approved_dibao(service)
    (first,), _ = service.renew([dibao], STEWARD, T0, defer_second_approval=True)
    with pytest.raises(InvalidTransitionError, match=first.grant_id):
        service.renew([dibao], STEWARD, T0 + timedelta(minutes=5), defer_second_approval=True)
    approved, _ = service.approve(first.grant_id, STEWARD_2, T0 + timedelta(hours=1))
    assert approved.status is GrantStatus.APPROVED


# -- break-glass ----------------------------------------------------------------------------------


def test_break_glass_is_immediate_short_noticed_and_reviewed(service: GrantService) -> None:
    grant, review, events = service.break_glass(
        CADRE_A2, "ELDERLY_VISIT", "独居老人失联，需紧急联系", T0, hours=2
    )
    assert grant.break_glass and grant.is_active(T0) and not grant.is_active(T0 + timedelta(hours=2))
    assert grant.org_scope == VILLAGE_A2
    kinds = [e["kind"] for e in events]
    assert kinds == ["grant.break_glass", "break_glass.notice"]
    assert events[1]["notify_org"] == TOWNSHIP_A  # the level above the cadre
    assert review.status == "open" and service.repository.open_reviews() == [review]
    engine = PolicyEngine(
        service.permissions, service.scenarios, GrantIndex.from_repository(service.repository, T0)
    )
    assert engine.authorize(_engine_req(CADRE_A2)).grant_id == grant.grant_id
    with pytest.raises(SeparationOfDutiesError):
        service.close_review(review.review_id, CADRE_A2, "ok", T0)
    with pytest.raises(GrantError):
        service.close_review(review.review_id, SUPERVISOR, " ", T0)
    closed, event = service.close_review(review.review_id, SUPERVISOR, "情况属实", T0 + timedelta(hours=3))
    assert closed.status == "closed" and closed.closed_by == SUPERVISOR.user_id
    assert event["kind"] == "break_glass.review_closed"
    assert service.repository.open_reviews() == []
    with pytest.raises(InvalidTransitionError):
        service.close_review(review.review_id, SUPERVISOR, "again", T0)


def test_a_break_glass_grant_is_no_renewal_reminder(service: GrantService) -> None:
    """The walk-through: after `grants break-glass`, the steward's `grants reminders` listed the
    emergency grant as one she must act on ("must_act": data_steward, days_left 0), though renewing it
    is refused (紧急访问授权不能续期). Only a grant that can be renewed is a reminder."""
    ordinary = _elderly(service)
    service.approve(ordinary, STEWARD, T0)
    later = T0 + timedelta(days=175)
    bg, _, _ = service.break_glass(CADRE_A2, "ELDERLY_VISIT", "独居老人失联，需紧急联系", later, hours=2)
    assert [r.grant_id for r in service.reminders(later, within_days=14)] == [ordinary]
    with pytest.raises(InvalidTransitionError):
        service.renew([bg.grant_id], STEWARD, later)


def test_closing_a_review_that_is_not_there_says_where_the_reviews_are(service: GrantService) -> None:
    """The walk-through's `grants close-review bgr_... --as supervisor`, pasted as written, answered
    review_not_found: 找不到该复核事项。 / review not found, which left the supervisor nothing to do. It
    now says to check the id and where the reviews she may close are listed, never repeating the id."""
    with pytest.raises(ReviewNotFoundError) as refused:
        service.close_review("bgr_...", SUPERVISOR, "已核实", T0)
    assert refused.value.code == "review_not_found"
    assert "grassroots grants reviews" in refused.value.message_zh
    assert "grassroots grants reviews" in refused.value.message_en
    assert "bgr_..." not in refused.value.message_zh + refused.value.message_en


BREAK_GLASS_REFUSALS: list[tuple[str, dict[str, Any], type[Exception]]] = [
    ("no reason", {"reason": "  "}, GrantError),
    ("too long", {"hours": BREAK_GLASS_MAX_HOURS + 1}, GrantError),
    ("zero hours", {"hours": 0}, GrantError),
    ("outside jurisdiction", {"org_scope": VILLAGE_A2}, SeparationOfDutiesError),
    ("role not in scenario", {"who": TOWNSHIP_OFFICER_A, "org_scope": TOWNSHIP_A}, SeparationOfDutiesError),
    ("role may not break glass", {"who": SUPERVISOR}, SeparationOfDutiesError),
    ("unknown scenario", {"scenario": "NOPE"}, GrantError),
]


@pytest.mark.parametrize(
    ("case", "change", "error"), BREAK_GLASS_REFUSALS, ids=[c[0] for c in BREAK_GLASS_REFUSALS]
)
def test_break_glass_refusals(
    service: GrantService, case: str, change: dict[str, Any], error: type[Exception]
) -> None:
    args: dict[str, Any] = {
        "who": CADRE_A1,
        "scenario": "ELDERLY_VISIT",
        "reason": "紧急情况说明",
        "hours": 2,
    }
    args.update(change)
    with pytest.raises(error):
        service.break_glass(
            args["who"],
            args["scenario"],
            args["reason"],
            T0,
            hours=args["hours"],
            org_scope=args.get("org_scope"),
        )


@pytest.mark.parametrize("ask", ["request", "break_glass"])
def test_a_scenario_code_that_names_nothing_is_not_repeated(service: GrantService, ask: str) -> None:
    """What was typed as the scenario may be anything (an ID number pasted into the wrong field); a
    break-glass answered "unknown scenario '11010519491231002X'". The catalog's codes are listed instead."""
    typed = "11010519491231002X"
    with pytest.raises(GrantError) as refused:
        if ask == "request":
            service.request(CADRE_A1, typed, VILLAGE_A1, None, "季度走访", T0)
        else:
            service.break_glass(CADRE_A1, typed, "台风转移安置", T0, hours=2)
    for text in (str(refused.value), refused.value.message_zh, refused.value.message_en):
        assert typed not in text
    assert "ELDERLY_VISIT" in refused.value.message_zh and "ELDERLY_VISIT" in refused.value.message_en


def test_a_too_short_break_glass_reason_is_refused_naming_the_rule(service: GrantService) -> None:
    with pytest.raises(GrantError) as refused:
        service.break_glass(CADRE_A1, "ELDERLY_VISIT", "测试", T0, hours=2)
    # The reason was given; what is wrong is its length, and the message says the rule.
    assert refused.value.message_zh.startswith(f"紧急访问的理由至少需要 {BREAK_GLASS_MIN_REASON_CHARS} 个字")
    assert "（当前 2 个字）" in refused.value.message_zh
    assert f"at least {BREAK_GLASS_MIN_REASON_CHARS} characters" in refused.value.message_en
    grant, _, _ = service.break_glass(CADRE_A1, "ELDERLY_VISIT", "台风转移", T0, hours=2)
    assert grant.break_glass


def test_index_lookup_walks_ancestors_not_all_grants() -> None:
    from .conftest import make_grant

    grants = [
        make_grant(f"g{i}", "ELDERLY_VISIT", f"3101{i % 90 + 10:02d}", ELDERLY_FIELDS) for i in range(2000)
    ]
    grants.append(make_grant("mine", "ELDERLY_VISIT", TOWNSHIP_A, ELDERLY_FIELDS))
    index = GrantIndex(grants)
    assert len(index) == 2001
    found = index.lookup(VILLAGE_A1, "ELDERLY_VISIT")
    assert {g.grant_id for g in found} == {"mine"} | {g.grant_id for g in grants if g.org_scope == "310151"}
    assert index.lookup(VILLAGE_A1, "DIBAO_REVIEW") == []


@pytest.mark.postgres
def test_lifecycle_and_version_row_on_postgres(
    postgres_url: str, scenarios: ScenarioCatalog, permissions: PermissionModel
) -> None:
    db = create_engine(postgres_url)
    metadata.create_all(db)
    with Session(db) as s:
        service = GrantService(GrantRepository(s), scenarios, permissions)
        grant_id = _dibao(service)
        service.approve(grant_id, STEWARD, T0)
        approved, _ = service.approve(grant_id, STEWARD_2, T0)
        s.commit()
    with Session(db) as s:
        repo = GrantRepository(s)
        assert repo.get(grant_id) == approved
        assert repo.policy_version() == 1
        engine = PolicyEngine(permissions, scenarios, GrantIndex.from_repository(repo, T0))
        assert engine.decide(_engine_req(CADRE_A1, "DIBAO_REVIEW")).allowed
        GrantService(repo, scenarios, permissions).revoke(grant_id, STEWARD, "调整", T0)
        s.commit()
        assert engine.refresh_grants(repo, T0)
        assert engine.decide(_engine_req(CADRE_A1, "DIBAO_REVIEW")).code == "grant_revoked"
    db.dispose()


@pytest.mark.parametrize(
    ("beijing", "hours", "opened"),
    [
        ((21, 6), 1, False),  # 21:06 for an hour: every minute outside 7:00-21:00
        ((22, 0), 4, False),
        ((2, 30), 4, False),  # 02:30-06:30
        ((4, 0), 4, True),  # 04:00-08:00 reaches 7:00
        ((20, 30), 2, True),  # half an hour of it is open
    ],
)
def test_break_glass_none_of_whose_hours_are_open_is_refused_before_anyone_is_told(
    service: GrantService, beijing: tuple[int, int], hours: int, opened: bool
) -> None:
    """At 21:06 a cadre broke the glass: the grant was made, the township notified and a post-review
    opened, and every read in those hours was refused (outside_hours). Refused now, saying why."""
    from policies.scenarios import CHINA_STANDARD_TIME

    now = datetime(2025, 3, 3, *beijing, tzinfo=CHINA_STANDARD_TIME).astimezone(UTC)
    if opened:
        grant, _, _ = service.break_glass(CADRE_A1, "ELDERLY_VISIT", "夜间火情核对名单", now, hours=hours)
        assert grant.break_glass
        return
    with pytest.raises(GrantError) as refused:
        service.break_glass(CADRE_A1, "ELDERLY_VISIT", "夜间火情核对名单", now, hours=hours)
    assert refused.value.message_zh.startswith(
        "「高龄老人走访」只能在每天 7:00 至 21:00（北京时间）查看数据，紧急访问也不例外；"
    )
    assert "本次未开通紧急访问，也未通知上级" in refused.value.message_zh
    assert service.repository.open_reviews() == []


def test_the_waiting_request_named_to_a_refused_reader_is_one_covering_her_organisation(
    service: GrantService,
) -> None:
    """``waiting_request`` names a request still waiting for a steward (first or second) whose scope covers
    the reader's organisation, for the scenario and dataset she was refused: never a neighbouring
    township's, another scenario's, one leaving the dataset out, or one already decided."""
    repository = service.repository
    township = _dibao(service)  # TOWNSHIP_A, every DIBAO_REVIEW dataset, waiting
    # (organisation, scenario, dataset, expected)
    table = [
        (VILLAGE_A1, "DIBAO_REVIEW", "residents", township),
        (TOWNSHIP_A, "DIBAO_REVIEW", "residents", township),
        (TOWNSHIP_B, "DIBAO_REVIEW", "residents", None),
        (VILLAGE_A1, "ELDERLY_VISIT", "residents", None),
        (VILLAGE_A1, "DIBAO_REVIEW", "no_such_dataset", None),
    ]
    for org, scenario, dataset, expected in table:
        found = repository.waiting_request(org, scenario, dataset)
        assert (found.grant_id if found else None) == expected, (org, scenario, dataset)
    service.approve(township, STEWARD, T0)  # awaiting its second steward: still waiting
    found = repository.waiting_request(VILLAGE_A1, "DIBAO_REVIEW", "residents")
    assert found is not None and found.status is GrantStatus.AWAITING_SECOND_APPROVAL
    service.approve(township, STEWARD_2, T0)
    assert repository.waiting_request(VILLAGE_A1, "DIBAO_REVIEW", "residents") is None


@pytest.mark.parametrize("hours", [0, -1, BREAK_GLASS_MAX_HOURS + 1])
def test_break_glass_hours_out_of_range_says_the_range_not_only_the_maximum(
    service: GrantService, hours: int
) -> None:
    """`--hours 0` answered 紧急访问最长 4 小时 / "lasts at most 4 hours", which 0 is: the cadre could not
    tell what to type. The refusal names the range and what was typed."""
    with pytest.raises(GrantError) as refused:
        service.break_glass(CADRE_A1, "ELDERLY_VISIT", "紧急情况说明", T0, hours=hours)
    assert f"1 至 {BREAK_GLASS_MAX_HOURS} 小时" in refused.value.message_zh
    assert f"（当前 {hours}）" in refused.value.message_zh
    assert f"from 1 to {BREAK_GLASS_MAX_HOURS}" in refused.value.message_en
    assert f"(got {hours})" in refused.value.message_en
    assert refused.value.message_en.isascii()


@pytest.mark.parametrize(("who", "scope"), [(TOWNSHIP_OFFICER_A, TOWNSHIP_B), (CADRE_A1, VILLAGE_A2)])
def test_a_request_outside_ones_jurisdiction_names_ones_own_organisation(
    service: GrantService, who: Subject, scope: str
) -> None:
    """只能为本辖区内的组织申请授权 alone left an officer who typed a wrong digit guessing which codes she may
    use; her own organisation's code is named now (not what she typed), and that nothing was requested."""
    with pytest.raises(SeparationOfDutiesError) as refused:
        service.request(who, "ELDERLY_VISIT", scope, None, "季度走访", T0)
    assert refused.value.code == "outside_jurisdiction"
    zh, en = refused.value.message_zh, refused.value.message_en
    assert f"您的单位是 {who.org}" in zh and "本次未提出申请" in zh and "--org" in zh
    assert f"your organisation is {who.org}" in en and "nothing was requested" in en and en.isascii()
    assert scope not in zh and scope not in en


def test_a_field_listed_twice_is_requested_once(service: GrantService) -> None:
    """`--fields id,name,id` was filed as ["id", "name", "id"], so the steward approving it read a request
    of three fields, one of them twice."""
    grant, _ = service.request(
        CADRE_A1, "ELDERLY_VISIT", VILLAGE_A1, {"residents": ["id", "name", "id"]}, "季度走访", T0
    )
    assert grant.datasets == {"residents": ("id", "name")}
