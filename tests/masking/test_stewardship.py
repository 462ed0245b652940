"""Stewardship: proposals and four-eyes approvals turn into the effective catalog and rules."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from masking import Catalog, Level, RuleSet, load_catalog, load_rules, mask_record, plan_masking
from masking.catalog import field_code_meant
from masking.errors import (
    CatalogError,
    ProposalConflictError,
    ProposalNotFoundError,
    RulesError,
    StewardshipError,
    StewardshipForbiddenError,
    UnknownDatasetError,
    closest_name,
    unknown_name,
)
from masking.operators import FoundItem, MaskFn, TextMasker
from masking.stewardship import (
    MaskingDocuments,
    MaskingRepository,
    ProposalKind,
    ProposalStatus,
    Steward,
    StewardshipService,
    apply_change,
    load_effective,
)
from masking.tables import metadata

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
STEWARD = Steward("u-steward", ("data_steward",), "civil_affairs")
STEWARD2 = Steward("u-steward2", ("data_steward",), "civil_affairs")
HEALTH_STEWARD = Steward("u-health", ("data_steward",), "health")
ADMIN = Steward("u-admin", ("platform_admin",), None)
CADRE = Steward("u-cadre", ("village_cadre",), None)


@pytest.fixture(scope="module")
def baseline() -> MaskingDocuments:
    return MaskingDocuments.of(load_catalog(), load_rules())


@pytest.fixture
def session() -> Iterator[Session]:
    engine = sa.create_engine("sqlite://")
    metadata.create_all(engine)
    with Session(engine) as s:
        yield s
    engine.dispose()


def service(session: Session, baseline: MaskingDocuments) -> StewardshipService:
    return StewardshipService(MaskingRepository(session), baseline)


class _Scanner:
    def mask(self, text: str) -> str:
        return text

    def scan_and_mask(self, text: str) -> tuple[str, list[FoundItem]]:
        return text, []

    def masked_by(self, maskers: Mapping[str, MaskFn]) -> TextMasker:
        return self


def plan_of(catalog: Catalog, rules: RuleSet, *fields: str) -> dict[str, str]:
    plan = plan_masking(
        catalog,
        rules,
        dataset="residents",
        fields=fields,
        role="village_cadre",
        scenario="DIBAO_REVIEW",
        profile="standard",
        scanner=_Scanner(),
    )
    return {d.field: d.operator for d in plan.decisions}


def test_documents_round_trip_the_packaged_catalog_and_rules(baseline: MaskingDocuments) -> None:
    catalog, rules = baseline.build()
    assert catalog.datasets == load_catalog().datasets
    assert catalog.tags == load_catalog().tags
    assert rules.rules == load_rules().rules


# (kind, payload, expected target, expected (before, after) summary)
GOOD_CHANGES: list[tuple[ProposalKind, dict[str, Any], str]] = [
    (ProposalKind.FIELD, {"dataset": "residents", "field": "remark", "level": 4}, "residents.remark"),
    (
        ProposalKind.FIELD,
        {"dataset": "residents", "field": "mobile", "tags": ["联系方式", "重点关爱对象"]},
        "residents.mobile",
    ),
    (
        ProposalKind.FIELD,
        {
            "dataset": "residents",
            "field": "sex",
            "level": 2,
            "semantic_type": "sex",
            "quasi_identifier": True,
        },
        "residents.sex",
    ),
    (ProposalKind.TAG_ADD, {"tag": "独居老人"}, "tag:独居老人"),
    (ProposalKind.TAG_DELETE, {"tag": "重点关爱对象"}, "tag:重点关爱对象"),
    (
        ProposalKind.RULE_UPSERT,
        {
            "rule": {
                "id": "standard.mobile",
                "profile": "standard",
                "semantic_types": ["mobile"],
                "operator": "redact",
            }
        },
        "rule:standard.mobile",
    ),
    (
        ProposalKind.RULE_UPSERT,
        {
            "rule": {
                "id": "standard.cadre_name",
                "profile": "standard",
                "semantic_types": ["person_name"],
                "roles": ["village_cadre"],
                "operator": "keep",
            },
            "before": "standard.name",
        },
        "rule:standard.cadre_name",
    ),
    (ProposalKind.RULE_DELETE, {"rule_id": "standard.landline"}, "rule:standard.landline"),
]


@pytest.mark.parametrize(("kind", "payload", "target"), GOOD_CHANGES)
def test_valid_changes_apply_to_copies_and_validate(
    baseline: MaskingDocuments, kind: ProposalKind, payload: dict[str, Any], target: str
) -> None:
    before_catalog = repr(baseline.catalog)
    planned = apply_change(baseline, kind, payload)
    assert planned.target == target
    assert repr(baseline.catalog) == before_catalog  # pure: the baseline is untouched
    planned.documents.build()


# (kind, payload, error type, words the message must contain)
BAD_CHANGES: list[tuple[ProposalKind, dict[str, Any], type[Exception], str]] = [
    (ProposalKind.TAG_DELETE, {"tag": "身份信息"}, StewardshipForbiddenError, "基础标签"),
    (ProposalKind.TAG_ADD, {"tag": "人口基础信息"}, StewardshipForbiddenError, "基础标签"),
    (ProposalKind.TAG_ADD, {"tag": "低保对象"}, StewardshipError, "已存在"),
    (ProposalKind.TAG_DELETE, {"tag": "低保对象"}, StewardshipError, "residents.dibao_status"),
    (ProposalKind.TAG_DELETE, {"tag": "无此标签"}, StewardshipError, "不存在"),
    (ProposalKind.TAG_ADD, {"tag": "13812345678"}, StewardshipError, "个人信息"),
    (ProposalKind.TAG_ADD, {"tag": "微信号wang_jg88"}, StewardshipError, "个人信息"),
    (ProposalKind.FIELD, {"dataset": "nope", "field": "x", "level": 1}, UnknownDatasetError, "nope"),
    (ProposalKind.FIELD, {"dataset": "residents", "field": "remark", "level": 7}, StewardshipError, "分级"),
    (
        ProposalKind.FIELD,
        {"dataset": "residents", "field": "remark", "level": 3},
        StewardshipError,
        "无需变更",
    ),
    (ProposalKind.FIELD, {"dataset": "residents", "field": "id", "level": 3}, CatalogError, "记录标识"),
    (
        ProposalKind.FIELD,
        {"dataset": "residents", "field": "remark", "tags": ["没登记"]},
        CatalogError,
        "标签",
    ),
    (ProposalKind.FIELD, {"dataset": "residents", "field": "sex", "level": 2}, StewardshipError, "语义类型"),
    (
        ProposalKind.FIELD,
        {"dataset": "residents", "field": "remark", "owner": "x"},
        StewardshipError,
        "owner",
    ),
    (
        ProposalKind.RULE_UPSERT,
        {"rule": {"id": "standard.mobile", "profile": "standard", "operator": "no_such_op"}},
        RulesError,
        "no_such_op",
    ),
    (
        ProposalKind.RULE_UPSERT,
        {"rule": {"id": "x", "profile": "standard", "operator": "partial", "params": {"keep_first": "2"}}},
        RulesError,
        "keep_first",
    ),
    (
        ProposalKind.RULE_UPSERT,
        {"rule": {"id": "x", "profile": "nope", "operator": "keep"}},
        RulesError,
        "nope",
    ),
    (
        ProposalKind.RULE_UPSERT,
        {
            "rule": {
                "id": "standard.mobile",
                "profile": "standard",
                "semantic_types": ["mobile"],
                "operator": "mobile",
            }
        },
        StewardshipError,
        "无需变更",
    ),
    (ProposalKind.RULE_DELETE, {"rule_id": "nope"}, StewardshipError, "不存在"),
    # What a steward types first: the field's Chinese title, and near misses of a code, each answered
    # with the code meant and the valid ones.
    (
        ProposalKind.FIELD,
        {"dataset": "residents", "field": "备注", "level": 4},
        StewardshipError,
        "请改用 remark",
    ),
    (
        ProposalKind.FIELD,
        {"dataset": "residents", "field": "Remark", "level": 4},
        StewardshipError,
        "remark（备注）",
    ),
    (
        ProposalKind.FIELD,
        {"dataset": "residnets", "field": "remark", "level": 4},
        UnknownDatasetError,
        "是否指 residents",
    ),
    (
        ProposalKind.FIELD,
        {"dataset": "residents", "field": "remark", "semantic_type": "freetext"},
        CatalogError,
        "提议的变更：datasets.residents.fields.remark.semantic_type：未知的语义类型 freetext；"
        "是否指 free_text？",
    ),
    (
        ProposalKind.RULE_UPSERT,
        {"rule": {"id": "x", "profile": "standard", "semantic_types": ["mobile"], "operator": "mobil"}},
        RulesError,
        "未知的脱敏算子 mobil；是否指 mobile？可用的有：keep、",
    ),
    (
        ProposalKind.RULE_UPSERT,
        {"rule": {"id": "x", "profile": "standard", "semantic_types": ["mobil"], "operator": "mobile"}},
        RulesError,
        "未知的语义类型 mobil；是否指 mobile？",
    ),
    (
        ProposalKind.RULE_UPSERT,
        {"rule": {"id": "x", "profile": "standrad", "operator": "mobile"}},
        RulesError,
        "未知的脱敏方案 standrad；是否指 standard？",
    ),
]


def test_an_invalid_proposed_rule_is_named_by_its_id_not_its_place_in_the_rule_list(
    baseline: MaskingDocuments,
) -> None:
    typo = {"id": "standard.mobile", "profile": "standard", "semantic_types": ["mobile"], "operator": "mobil"}
    with pytest.raises(RulesError) as info:
        apply_change(baseline, ProposalKind.RULE_UPSERT, {"rule": typo})
    assert info.value.message_zh.startswith(
        "提议的规则：standard.mobile：未知的脱敏算子 mobil；是否指 mobile？"
    )
    assert info.value.message_en.startswith("proposed rule: standard.mobile: unknown operator 'mobil'")


def test_an_unknown_name_that_looks_like_personal_data_is_not_repeated(baseline: MaskingDocuments) -> None:
    pasted = {"id": "x", "profile": "standard", "semantic_types": ["mobile"], "operator": "13812345678"}
    with pytest.raises(RulesError) as info:
        apply_change(baseline, ProposalKind.RULE_UPSERT, {"rule": pasted})
    assert "未知的脱敏算子；可用的有" in str(info.value)
    assert "13812345678" not in str(info.value)


RULE_TO_MOVE = {
    "rule": {"id": "x", "profile": "standard", "semantic_types": ["mobile"], "operator": "redact"}
}


@pytest.mark.parametrize(("kind", "payload", "error", "words"), BAD_CHANGES)
def test_invalid_changes_are_refused_with_a_reason(
    baseline: MaskingDocuments,
    kind: ProposalKind,
    payload: dict[str, Any],
    error: type[Exception],
    words: str,
) -> None:
    with pytest.raises(error) as info:
        apply_change(baseline, kind, payload)
    assert words in f"{info.value}"


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        (ProposalKind.RULE_DELETE, {"rule_id": "11010519491231002X"}),
        (ProposalKind.RULE_UPSERT, {**RULE_TO_MOVE, "before": "11010519491231002X"}),
    ],
)
def test_a_rule_id_that_names_no_rule_is_not_repeated(
    baseline: MaskingDocuments, kind: ProposalKind, payload: dict[str, Any]
) -> None:
    """A rule id is typed; one that names no rule may be anything (it was repeated: 规则“…”不存在)."""
    with pytest.raises(StewardshipError) as info:
        apply_change(baseline, kind, payload)
    assert "不存在" in info.value.message_zh
    assert "11010519491231002X" not in f"{info.value}"


def test_a_typo_of_a_catalogued_field_is_named_not_taken_for_a_new_field(baseline: MaskingDocuments) -> None:
    # "remrk" used to be answered only "a new field needs a level and a semantic type": a steward could go
    # on to catalogue the typo. The answer now names the catalogued field it is close to.
    with pytest.raises(StewardshipError) as info:
        apply_change(baseline, ProposalKind.FIELD, {"dataset": "residents", "field": "remrk", "level": 4})
    assert "是否指 remark" in info.value.message_zh and "did you mean remark?" in info.value.message_en
    with pytest.raises(StewardshipError) as far:
        apply_change(baseline, ProposalKind.FIELD, {"dataset": "residents", "field": "hobby", "level": 2})
    assert "是否指" not in far.value.message_zh and "did you mean" not in far.value.message_en


# (typed, what the proposal, the dry-run and the unknown-name messages offer) — one lookup behind all three.
MEANT = [("remrk", "remark"), ("mobil", "mobile"), ("id_numbr", "id_number"), ("hobby", None), ("", None)]


@pytest.mark.parametrize(("typed", "meant"), MEANT)
def test_the_proposal_the_dry_run_and_unknown_names_offer_the_same_field(
    baseline: MaskingDocuments, typed: str, meant: str | None
) -> None:
    fields = load_catalog().dataset("residents").fields
    assert closest_name(typed, fields, cutoff=0.75) == field_code_meant(typed, fields) == meant
    assert load_catalog().dataset("residents").field_meant(typed) == meant
    zh, en = unknown_name("字段", "field", typed, list(fields))
    assert (f"是否指 {meant}？" in zh, f"did you mean {meant}?" in en) == (meant is not None,) * 2
    if typed:
        with pytest.raises(StewardshipError) as info:
            apply_change(baseline, ProposalKind.FIELD, {"dataset": "residents", "field": typed, "level": 4})
        assert (f"是否指 {meant}？" in info.value.message_zh) == (meant is not None)


def test_closest_name_reads_only_typed_text_and_keeps_each_cutoff() -> None:
    assert closest_name(42, ["a42"]) is None  # not a name: nothing offered
    assert closest_name("standrad", ["standard", "strict"]) == "standard"
    assert closest_name("stdnrd", ["standard"]) == "standard"  # 0.71: close enough for a rule name
    assert field_code_meant("stdnrd", ["standard"]) is None  # a field code must be closer (0.75)


# (proposer, approver, kind, payload, ok) — who may propose and who may decide.
FIELD = {"dataset": "residents", "field": "remark", "level": 4}
RULE = {
    "rule": {
        "id": "standard.mobile",
        "profile": "standard",
        "semantic_types": ["mobile"],
        "operator": "redact",
    }
}
AUTHORITY = [
    (STEWARD, STEWARD2, ProposalKind.FIELD, FIELD, "approved"),
    (STEWARD, ADMIN, ProposalKind.FIELD, FIELD, "approved"),
    (STEWARD, STEWARD, ProposalKind.FIELD, FIELD, "forbidden"),  # self-approval
    (STEWARD, HEALTH_STEWARD, ProposalKind.FIELD, FIELD, "forbidden"),  # not the owning department
    (HEALTH_STEWARD, STEWARD, ProposalKind.FIELD, FIELD, "propose-forbidden"),
    (CADRE, STEWARD, ProposalKind.FIELD, FIELD, "propose-forbidden"),
    (STEWARD, HEALTH_STEWARD, ProposalKind.TAG_ADD, {"tag": "独居老人"}, "approved"),
    (HEALTH_STEWARD, STEWARD, ProposalKind.TAG_ADD, {"tag": "独居老人"}, "approved"),
    (STEWARD, STEWARD2, ProposalKind.RULE_UPSERT, RULE, "forbidden"),  # rules: platform admin decides
    (STEWARD, ADMIN, ProposalKind.RULE_UPSERT, RULE, "approved"),
    (ADMIN, ADMIN, ProposalKind.RULE_UPSERT, RULE, "forbidden"),
]


@pytest.mark.parametrize(("proposer", "approver", "kind", "payload", "expected"), AUTHORITY)
def test_who_may_propose_and_approve(
    session: Session,
    baseline: MaskingDocuments,
    proposer: Steward,
    approver: Steward,
    kind: ProposalKind,
    payload: dict[str, Any],
    expected: str,
) -> None:
    svc = service(session, baseline)
    if expected == "propose-forbidden":
        with pytest.raises(StewardshipForbiddenError):
            svc.propose(proposer, kind.value, payload, "理由", NOW)
        return
    proposal, change = svc.propose(proposer, kind.value, payload, "年度分级复核", NOW)
    assert change["kind"] == "masking.change_proposed" and change["actor"] == proposer.user_id
    if expected == "forbidden":
        with pytest.raises(StewardshipForbiddenError):
            svc.approve(proposal.proposal_id, approver, None, NOW)
        assert svc.repository.get(proposal.proposal_id).status is ProposalStatus.PENDING
        assert svc.repository.version() == 0
        return
    decided, change = svc.approve(proposal.proposal_id, approver, "同意", NOW)
    assert decided.status is ProposalStatus.APPROVED and decided.applied_seq == 1
    assert change["kind"] == "masking.change_approved" and change["version"] == 1


def test_approved_changes_become_the_effective_catalog_and_rules(
    session: Session, baseline: MaskingDocuments
) -> None:
    svc = service(session, baseline)
    first, _ = svc.propose(STEWARD, "field_classification", {**FIELD, "semantic_type": "other"}, "r", NOW)
    rule, _ = svc.propose(STEWARD, "rule_upsert", RULE, "r", NOW)
    pending = load_effective(session, baseline)
    assert pending.version == 0 and pending.catalog.level_of("residents", "remark") is Level.L3
    assert plan_of(pending.catalog, pending.rules, "remark", "mobile") == {
        "remark": "freetext",
        "mobile": "mobile",
    }

    svc.approve(first.proposal_id, STEWARD2, None, NOW)
    svc.approve(rule.proposal_id, ADMIN, None, NOW)
    effective = load_effective(session, baseline)
    assert effective.version == 2 and effective.applied == (first.proposal_id, rule.proposal_id)
    assert effective.catalog.level_of("residents", "remark") is Level.L4
    # remark is now level 4 "other": no standard rule covers it, so it is redacted (fail closed).
    assert plan_of(effective.catalog, effective.rules, "remark", "mobile") == {
        "remark": "redact",
        "mobile": "redact",
    }


def test_preview_shows_a_pending_rule_before_anyone_approves_it(
    session: Session, baseline: MaskingDocuments
) -> None:
    svc = service(session, baseline)
    proposal, _ = svc.propose(STEWARD, "rule_upsert", RULE, "r", NOW)
    catalog, rules = svc.preview(proposal.proposal_id)
    plan = plan_masking(
        catalog, rules, dataset="residents", fields=("mobile",), role="r", scenario="s", profile="standard"
    )
    assert mask_record({"mobile": "13812345678"}, plan) == {"mobile": "***"}
    in_force = load_effective(session, baseline)
    assert plan_of(in_force.catalog, in_force.rules, "mobile") == {"mobile": "mobile"}


def test_a_dry_run_of_a_decided_proposal_says_what_to_do_not_that_it_cannot_be_approved(
    session: Session, baseline: MaskingDocuments
) -> None:
    """dry-run --proposal of a rejected or approved proposal answered 不能再审批 (cannot be approved
    again), though nobody was approving anything."""
    svc = service(session, baseline)
    rejected, _ = svc.propose(STEWARD, "rule_upsert", RULE, "r", NOW)
    svc.reject(rejected.proposal_id, STEWARD, None, NOW)  # withdrawn by the proposer
    with pytest.raises(ProposalConflictError) as exc:
        svc.preview(rejected.proposal_id)
    assert "不能再审批" not in exc.value.message_zh
    assert "只能试运行待审批的申请" in exc.value.message_zh and "propose it again" in exc.value.message_en


def test_a_proposal_overtaken_by_another_approval_is_a_conflict(
    session: Session, baseline: MaskingDocuments
) -> None:
    svc = service(session, baseline)
    a, _ = svc.propose(STEWARD, "field_classification", {**FIELD, "level": 4}, "r", NOW)
    b, _ = svc.propose(STEWARD, "field_classification", {**FIELD, "level": 2}, "r", NOW)
    svc.approve(a.proposal_id, STEWARD2, None, NOW)
    with pytest.raises(ProposalConflictError) as info:
        svc.approve(b.proposal_id, STEWARD2, None, NOW)
    # The approver is told what changed it and what to do: reject; the proposer may propose again.
    assert info.value.message_zh == (
        f"此申请提出后，{b.target} 已被另一项获批的变更（变更申请 {a.proposal_id}）修改，不能再按原内容批准。"
        "请驳回此申请；如仍需要，请提出人按现行内容重新提出。"
    )
    assert a.proposal_id in info.value.message_en
    with pytest.raises(ProposalConflictError):
        svc.approve(a.proposal_id, ADMIN, None, NOW)  # no longer pending


def test_reject_needs_a_reason_and_the_proposer_may_withdraw(
    session: Session, baseline: MaskingDocuments
) -> None:
    svc = service(session, baseline)
    a, _ = svc.propose(STEWARD, "tag_add", {"tag": "独居老人"}, "r", NOW)
    with pytest.raises(StewardshipError):
        svc.reject(a.proposal_id, STEWARD2, "", NOW)
    rejected, change = svc.reject(a.proposal_id, STEWARD2, "目录已有同义标签", NOW)
    assert (rejected.status, change["kind"]) == (ProposalStatus.REJECTED, "masking.change_rejected")
    b, _ = svc.propose(STEWARD, "tag_add", {"tag": "独居老人"}, "r", NOW)
    withdrawn, change = svc.reject(b.proposal_id, STEWARD, None, NOW)
    assert (withdrawn.status, change["kind"]) == (ProposalStatus.WITHDRAWN, "masking.change_withdrawn")
    assert load_effective(session, baseline).version == 0
    with pytest.raises(ProposalNotFoundError):
        svc.approve("mp-nope", STEWARD2, None, NOW)


@pytest.mark.parametrize("proposal_id", ["11010519491231002X", "13812345678", "mp-nope"])
def test_a_proposal_that_is_not_there_is_not_repeated_in_the_error(
    session: Session, baseline: MaskingDocuments, proposal_id: str
) -> None:
    """The id comes from a link (``GET /masking/proposals/{id}``) and may hold anything; the answer used to
    repeat it (变更申请“11010519491231002X”不存在)."""
    svc = service(session, baseline)
    for call in (lambda: svc.preview(proposal_id), lambda: svc.approve(proposal_id, STEWARD2, None, NOW)):
        with pytest.raises(ProposalNotFoundError) as caught:
            call()
        error = caught.value
        assert error.message_zh.startswith("没有这个变更申请") and error.message_en.startswith(
            "There is no such"
        )
        for text in (str(error), error.message_zh, error.message_en):
            assert proposal_id not in text


def test_an_approval_the_baseline_no_longer_supports_is_skipped_and_reported(
    session: Session, baseline: MaskingDocuments
) -> None:
    svc = service(session, baseline)
    p, _ = svc.propose(STEWARD, "field_classification", {**FIELD, "level": 4}, "r", NOW)
    svc.approve(p.proposal_id, STEWARD2, None, NOW)
    catalog = dict(baseline.catalog)
    catalog["datasets"] = {"other": {**baseline.catalog["datasets"]["residents"]}}
    moved = MaskingDocuments(catalog, baseline.rules)
    effective = load_effective(session, moved)
    assert effective.skipped == (p.proposal_id,) and effective.applied == ()


def test_reasons_with_personal_data_never_reach_the_change_event(
    session: Session, baseline: MaskingDocuments
) -> None:
    with pytest.raises(StewardshipError, match="个人信息"):
        service(session, baseline).propose(
            STEWARD, "tag_add", {"tag": "独居老人"}, "见 110102199003071234", NOW
        )


@pytest.mark.parametrize(
    ("decide", "status_zh", "code"),
    [
        ("withdraw", "已撤回", "withdrawn"),
        ("reject", "已驳回", "rejected"),
        ("approve", "已批准", "approved"),
    ],
)
def test_a_decided_proposal_is_named_by_its_chinese_status(
    session: Session, baseline: MaskingDocuments, decide: str, status_zh: str, code: str
) -> None:
    """The Chinese message says the status in Chinese; the English one keeps the status code."""
    svc = service(session, baseline)
    proposal, _ = svc.propose(STEWARD, "tag_add", {"tag": "独居老人"}, "r", NOW)
    if decide == "withdraw":
        svc.reject(proposal.proposal_id, STEWARD, None, NOW)
    elif decide == "reject":
        svc.reject(proposal.proposal_id, STEWARD2, "目录已有同义标签", NOW)
    else:
        svc.approve(proposal.proposal_id, STEWARD2, None, NOW)
    for again in (
        lambda: svc.approve(proposal.proposal_id, ADMIN, None, NOW),
        lambda: svc.reject(proposal.proposal_id, STEWARD2, "再议", NOW),
    ):
        with pytest.raises(ProposalConflictError) as info:
            again()
        assert status_zh in info.value.message_zh and code not in info.value.message_zh
        assert code in info.value.message_en
