"""Stewardship: the catalog, the tag set and the masking rules as managed data with four-eyes approval.

The packaged `catalog.toml` and `rules.toml` are the baseline. A steward proposes a change (a field's
classification, adding or deleting a district dynamic tag, adding, replacing or deleting a rule); a
second person approves or rejects it. Once approved the change becomes part of the effective catalog
and rules of every gateway process: approval bumps the `masking_versions` row that every process polls,
and the effective state is the baseline with every approved change applied in approval order.

Who may do what (issue 4: "adding or deleting a tag needs an approval, and every change is an audit
event"; GB/T 43697-2024 §5: the data-handling department classifies its own data):

* a field's classification (level, semantic type, tags, quasi-identifier flag): proposed and approved by
  data stewards of the department that owns the dataset (or a platform administrator);
* dynamic tags (district-defined): proposed and approved by data stewards of any department (or a
  platform administrator). Base tags come from the city-level standard catalogue and are a fixed set:
  they can be neither added nor deleted here;
* masking rules apply across every department's data, so a rule change is approved by a platform
  administrator only (any steward may propose one and test it with a dry-run first).

Nobody approves their own proposal (four-eyes, 双人复核); the proposer may withdraw it. Every
proposal, approval, rejection and withdrawal returns a change event (plain dict) for the audit log.
Repositories never commit: the caller's unit of work does.
"""

from __future__ import annotations

import contextlib
import copy
import enum
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from grassroots_common.personal_data import personal_data_in
from masking.catalog import Catalog, Level, catalog_document, catalog_from_document, field_code_meant
from masking.errors import (
    CatalogError,
    MaskingError,
    ProposalConflictError,
    ProposalNotFoundError,
    RulesError,
    StewardshipError,
    StewardshipForbiddenError,
    UnknownDatasetError,
)
from masking.rules import RuleSet, rules_document, rules_from_document
from masking.tables import MaskingProposalRow, MaskingVersionRow

__all__ = [
    "MASKING_VERSION",
    "EffectiveMasking",
    "MaskingDocuments",
    "MaskingRepository",
    "Proposal",
    "ProposalKind",
    "ProposalStatus",
    "Steward",
    "StewardshipService",
    "apply_change",
    "load_effective",
    "masking_version",
]

MASKING_VERSION = "masking"
STEWARD = "data_steward"
PLATFORM_ADMIN = "platform_admin"


class ProposalKind(enum.StrEnum):
    FIELD = "field_classification"
    TAG_ADD = "tag_add"
    TAG_DELETE = "tag_delete"
    RULE_UPSERT = "rule_upsert"
    RULE_DELETE = "rule_delete"


class ProposalStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


@dataclass(frozen=True, slots=True)
class Steward:
    """Who proposes or decides (from the SSO token): user id, roles, department."""

    user_id: str
    roles: tuple[str, ...]
    department: str | None = None


@dataclass(frozen=True, slots=True)
class Proposal:
    proposal_id: str
    kind: ProposalKind
    target: str
    payload: Mapping[str, Any]
    before: Mapping[str, Any] | None
    reason: str
    status: ProposalStatus
    proposed_by: str
    proposer_department: str | None
    proposed_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None
    decision_note: str | None = None
    applied_seq: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "proposal_id": self.proposal_id,
            "kind": self.kind.value,
            "target": self.target,
            "payload": dict(self.payload),
            "before": None if self.before is None else dict(self.before),
            "reason": self.reason,
            "status": self.status.value,
            "proposed_by": self.proposed_by,
            "proposer_department": self.proposer_department,
            "proposed_at": self.proposed_at.isoformat(),
            "decided_by": self.decided_by,
            "decided_at": None if self.decided_at is None else self.decided_at.isoformat(),
            "decision_note": self.decision_note,
            "applied_seq": self.applied_seq,
        }


@dataclass(frozen=True, slots=True)
class MaskingDocuments:
    """A catalog document and a rules document (the TOML files' shape)."""

    catalog: Mapping[str, Any]
    rules: Mapping[str, Any]

    @classmethod
    def of(cls, catalog: Catalog, rules: RuleSet) -> MaskingDocuments:
        return cls(catalog_document(catalog), rules_document(rules))

    def build(self, source: str = "<effective>") -> tuple[Catalog, RuleSet]:
        """Validate both documents (raises `CatalogError` / `RulesError`)."""
        return (
            catalog_from_document(self.catalog, source=f"{source} catalog"),
            rules_from_document(self.rules, source=f"{source} rules"),
        )


@dataclass(frozen=True, slots=True)
class EffectiveMasking:
    """The catalog and rules in force, the version they were built at, and changes that no longer
    apply to the baseline (e.g. a field a new release removed); those are reported, not guessed at."""

    catalog: Catalog
    rules: RuleSet
    version: int
    documents: MaskingDocuments
    applied: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()


# ------------------------------------------------------------------------------------- pure changes


@dataclass(frozen=True, slots=True)
class _Planned:
    target: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    payload: dict[str, Any]
    documents: MaskingDocuments
    dataset: str | None = None


_FIELD_KEYS = frozenset({"level", "semantic_type", "tags", "quasi_identifier", "title"})
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}", re.ASCII)
_RULE_ID = re.compile(r"[A-Za-z0-9_.\-]{1,64}", re.ASCII)
# An identity number (GB 11643) or a mobile number has 11+ consecutive digits; nothing a steward writes
# in a reason, a tag or a title needs that many, and those strings end up in the audit log.
_LONG_DIGITS = re.compile(r"\d{11,}")


def _fail(zh: str, en: str) -> StewardshipError:
    return StewardshipError(zh, en)


def _clean_text(value: object, what_zh: str, what_en: str, *, max_len: int, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise _fail(f"请填写{what_zh}", f"{what_en} is required")
    text = value.strip()
    if len(text) > max_len:
        raise _fail(f"{what_zh}不能超过 {max_len} 个字", f"{what_en} must be at most {max_len} characters")
    if _LONG_DIGITS.search(text) or personal_data_in(text) is not None:
        raise _fail(
            f"{what_zh}中不得包含身份证号、手机号等个人信息",
            f"{what_en} must not contain personal data such as ID or phone numbers",
        )
    return text


def apply_change(documents: MaskingDocuments, kind: ProposalKind, payload: Mapping[str, Any]) -> _Planned:
    """Apply one change to copies of the documents and validate the result. Pure; raises on any error."""
    if not isinstance(payload, Mapping):
        raise _fail("变更内容应为对象", "the change must be an object")
    catalog = copy.deepcopy(dict(documents.catalog))
    rules = copy.deepcopy(dict(documents.rules))
    if kind is ProposalKind.FIELD:
        planned = _field_change(catalog, rules, payload)
    elif kind is ProposalKind.TAG_ADD:
        planned = _tag_add(catalog, rules, payload)
    elif kind is ProposalKind.TAG_DELETE:
        planned = _tag_delete(catalog, rules, payload)
    elif kind is ProposalKind.RULE_UPSERT:
        planned = _rule_upsert(catalog, rules, payload)
    else:
        planned = _rule_delete(catalog, rules, payload)
    try:
        planned.documents.build("proposal")
    except CatalogError as exc:
        raise CatalogError(
            "proposed change", exc.entry, exc.detail_zh, exc.detail_en, path_zh="提议的变更"
        ) from None
    return planned


def _field_change(catalog: dict[str, Any], rules: dict[str, Any], payload: Mapping[str, Any]) -> _Planned:
    unknown = set(payload) - _FIELD_KEYS - {"dataset", "field"}
    if unknown:
        raise _fail("含有不能修改的项", f"cannot change: {', '.join(sorted(unknown))}")
    dataset, name = payload.get("dataset"), payload.get("field")
    datasets: dict[str, Any] = catalog.get("datasets", {})
    if not isinstance(dataset, str) or dataset not in datasets:
        raise UnknownDatasetError(str(dataset), known=sorted(datasets))
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise _field_name_invalid(datasets[dataset].get("fields", {}), name)
    changes = {k: payload[k] for k in _FIELD_KEYS if k in payload}
    if not changes:
        raise _fail("请至少修改分级、语义类型、标签之一", "change at least one of level, semantic type, tags")
    if "level" in changes:
        try:
            changes["level"] = Level.parse(changes["level"]).document_value
        except ValueError as exc:
            raise _fail("分级无效（1–4、important、core）", str(exc)) from None
    if "tags" in changes:
        tags = changes["tags"]
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise _fail("标签应为字符串列表", "tags must be a list of strings")
        changes["tags"] = sorted(set(tags))
    if "title" in changes:
        changes["title"] = _clean_text(changes["title"], "字段名称", "title", max_len=64)
    fields: dict[str, Any] = catalog["datasets"][dataset]["fields"]
    current = fields.get(name)
    if current is None and not {"level", "semantic_type"} <= set(changes):
        # Most often a typo of a catalogued field ("remrk"): name it, before a steward catalogues a new one.
        close = field_code_meant(name, fields)
        hint_zh = f"；若要修改已编目的字段，是否指 {close}？" if close else ""
        hint_en = f"; to change a catalogued field, did you mean {close}?" if close else ""
        raise _fail(
            f"数据集 {dataset} 尚无字段 {name}：新编目的字段须同时给出分级和语义类型{hint_zh}",
            f"dataset {dataset} has no field {name}: a newly catalogued field needs a level and a semantic "
            f"type{hint_en}",
        )
    before = None if current is None else _field_view(current)
    new = dict(current or {"title": name})
    new.update(changes)
    after = _field_view(new)
    if before == after:
        raise _fail("提议的分级与现行一致，无需变更", "the proposal would change nothing")
    fields[name] = new
    return _Planned(
        target=f"{dataset}.{name}",
        before=before,
        after=after,
        payload={"dataset": dataset, "field": name, **changes},
        documents=MaskingDocuments(catalog, rules),
        dataset=dataset,
    )


def _field_name_invalid(fields: Mapping[str, Any], name: object) -> StewardshipError:
    """Fields are named by their code (remark), not their title (备注), which is what a steward sees
    on screen and types first: name the code the title belongs to. The name typed is repeated only
    when it is a catalogued title (it may be anything pasted)."""
    codes = [code for code, spec in fields.items() if isinstance(spec, Mapping) and spec.get("title") == name]
    if codes:
        return _fail(
            f"字段须用英文代码指定：“{name}”是字段 {codes[0]} 的名称，请改用 {codes[0]}",
            f"name the field by its code: '{name}' is the title of field {codes[0]}; use {codes[0]}",
        )
    listed = "、".join(f"{code}（{spec.get('title', code)}）" for code, spec in fields.items())
    return _fail(
        f"字段名须为小写英文代码（字母开头，可含数字和下划线）；本数据集的字段有：{listed}",
        "the field must be named by its lower-case code (a letter, then letters, digits or '_'); "
        f"this dataset's fields: {', '.join(fields)}",
    )


def _field_view(doc: Mapping[str, Any]) -> dict[str, Any]:
    level = doc.get("level")
    with contextlib.suppress(ValueError):
        level = Level.parse(level).document_value
    return {
        "title": doc.get("title"),
        "level": level,
        "semantic_type": doc.get("semantic_type"),
        "tags": sorted(doc.get("tags", [])),
        "quasi_identifier": bool(doc.get("quasi_identifier", False)),
    }


def _tag_name(payload: Mapping[str, Any]) -> str:
    if set(payload) - {"tag"}:
        raise _fail("只需给出标签名 tag", "give only the tag name (tag)")
    tag = _clean_text(payload.get("tag"), "标签名", "tag", max_len=32)
    if any(ch.isspace() or ch in ",，;；" for ch in tag):
        raise _fail("标签名不能含空白或分隔符", "a tag must not contain spaces or separators")
    return tag


def _base_tag_refused(tag: str) -> StewardshipForbiddenError:
    return StewardshipForbiddenError(
        f"“{tag}”是市级统一基础标签，基础标签目录固定，不能在此增删",
        f"{tag!r} is a base tag of the city-level standard catalogue (a fixed set): "
        "it cannot be added or deleted",
    )


def _tags(catalog: dict[str, Any]) -> tuple[list[str], list[str]]:
    tags = catalog.setdefault("tags", {})
    return list(tags.get("base", [])), tags.setdefault("dynamic", [])


def _tag_add(catalog: dict[str, Any], rules: dict[str, Any], payload: Mapping[str, Any]) -> _Planned:
    tag = _tag_name(payload)
    base, dynamic = _tags(catalog)
    if tag in base:
        raise _base_tag_refused(tag)
    if tag in dynamic:
        raise _fail(f"动态标签“{tag}”已存在", f"dynamic tag {tag!r} already exists")
    dynamic.append(tag)
    return _Planned(
        target=f"tag:{tag}",
        before=None,
        after={"tag": tag, "kind": "dynamic"},
        payload={"tag": tag},
        documents=MaskingDocuments(catalog, rules),
    )


def _tag_delete(catalog: dict[str, Any], rules: dict[str, Any], payload: Mapping[str, Any]) -> _Planned:
    tag = _tag_name(payload)
    base, dynamic = _tags(catalog)
    if tag in base:
        raise _base_tag_refused(tag)
    if tag not in dynamic:
        raise _fail(f"动态标签“{tag}”不存在", f"there is no dynamic tag {tag!r}")
    users: list[str] = []
    for dname, ds in catalog.get("datasets", {}).items():
        if tag in ds.get("tags", []):
            users.append(dname)
        users.extend(
            f"{dname}.{f}" for f, spec in ds.get("fields", {}).items() if tag in spec.get("tags", [])
        )
    if users:
        raise _fail(
            f"标签“{tag}”仍在使用（{'、'.join(users)}），请先修改这些字段的标签",
            f"tag {tag!r} is still used by {', '.join(users)}; change their tags first",
        )
    dynamic.remove(tag)
    return _Planned(
        target=f"tag:{tag}",
        before={"tag": tag, "kind": "dynamic"},
        after=None,
        payload={"tag": tag},
        documents=MaskingDocuments(catalog, rules),
    )


def _rule_list(rules: dict[str, Any]) -> list[dict[str, Any]]:
    listed = rules.get("rules")
    if not isinstance(listed, list):
        raise _fail("规则文档无效", "the rules document has no rules")
    return listed


def _index_of(listed: Sequence[Mapping[str, Any]], rule_id: str) -> int | None:
    return next((i for i, r in enumerate(listed) if r.get("id") == rule_id), None)


def _rule_upsert(catalog: dict[str, Any], rules: dict[str, Any], payload: Mapping[str, Any]) -> _Planned:
    if set(payload) - {"rule", "before"}:
        raise _fail("只需给出规则 rule 和可选的位置 before", "give rule and optionally before")
    rule = payload.get("rule")
    if not isinstance(rule, Mapping):
        raise _fail("规则应为对象", "rule must be an object")
    rule = copy.deepcopy(dict(rule))
    rule_id = rule.get("id")
    if not isinstance(rule_id, str) or not _RULE_ID.fullmatch(rule_id):
        raise _fail("规则标识 id 无效", "rule id must be 1-64 letters, digits, '_', '.', '-'")
    if "description" in rule:
        rule["description"] = _clean_text(
            rule["description"], "规则说明", "description", max_len=200, required=False
        )
    listed = _rule_list(rules)
    at = _index_of(listed, rule_id)
    before = None if at is None else copy.deepcopy(listed[at])
    anchor = payload.get("before")
    if at is not None:
        listed.pop(at)
    if anchor is None:
        position = at if at is not None else len(listed)
    else:
        if not isinstance(anchor, str) or anchor == rule_id:
            raise _fail("before 应为另一条规则的标识", "before must name another rule")
        found = _index_of(listed, anchor)
        if found is None:
            # The id typed is not repeated (it may be anything); the rule ids are in the rules listing.
            raise _fail("before 所指的规则不存在，请核对规则标识", "before names no rule; check the rule id")
        position = found
    listed.insert(position, rule)
    new_rules = MaskingDocuments(catalog, rules)
    # Normalise what is stored to what the validator understood (defaults filled in).
    try:
        built = rules_from_document(rules, source="proposal rules")
    except RulesError as exc:
        # Named by the rule proposed, not by its place in the whole list ("rules[22]").
        raise RulesError(
            "proposed rule", rule_id, exc.detail_zh, exc.detail_en, path_zh="提议的规则"
        ) from None
    after = next(_doc for _doc in rules_document(built)["rules"] if _doc["id"] == rule_id)
    if before is not None:
        old = rules_from_document({**rules, "rules": [before]}, source="current rules")
        if rules_document(old)["rules"][0] == after and anchor is None:
            raise _fail("提议的规则与现行一致，无需变更", "the proposal would change nothing")
    out_payload: dict[str, Any] = {"rule": after}
    if anchor is not None:
        out_payload["before"] = anchor
    return _Planned(
        target=f"rule:{rule_id}", before=before, after=after, payload=out_payload, documents=new_rules
    )


def _rule_delete(catalog: dict[str, Any], rules: dict[str, Any], payload: Mapping[str, Any]) -> _Planned:
    if set(payload) - {"rule_id"}:
        raise _fail("只需给出规则标识 rule_id", "give only rule_id")
    rule_id = payload.get("rule_id")
    listed = _rule_list(rules)
    at = _index_of(listed, rule_id) if isinstance(rule_id, str) else None
    if at is None:
        raise _fail("规则不存在，请核对规则标识 rule_id", "there is no such rule; check rule_id")
    before = copy.deepcopy(listed.pop(at))
    return _Planned(
        target=f"rule:{rule_id}",
        before=before,
        after=None,
        payload={"rule_id": rule_id},
        documents=MaskingDocuments(catalog, rules),
    )


# -------------------------------------------------------------------------------------- persistence


def _to_proposal(row: MaskingProposalRow) -> Proposal:
    return Proposal(
        proposal_id=row.proposal_id,
        kind=ProposalKind(row.kind),
        target=row.target,
        payload=dict(row.payload),
        before=None if row.before is None else dict(row.before),
        reason=row.reason,
        status=ProposalStatus(row.status),
        proposed_by=row.proposed_by,
        proposer_department=row.proposer_department,
        proposed_at=row.proposed_at,
        decided_by=row.decided_by,
        decided_at=row.decided_at,
        decision_note=row.decision_note,
        applied_seq=row.applied_seq,
    )


class MaskingRepository:
    """All queries on proposals and the version row. Never commits."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def version(self) -> int:
        row = self.session.get(MaskingVersionRow, MASKING_VERSION)
        return row.version if row is not None else 0

    def bump_version(self, now: datetime) -> int:
        """Atomically increment the version row (insert-or-increment) in the caller's transaction."""
        dialect = self.session.get_bind().dialect.name
        insert_fn: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
        stmt = (
            insert_fn(MaskingVersionRow)
            .values(name=MASKING_VERSION, version=1, updated_at=now)
            .on_conflict_do_update(
                index_elements=[MaskingVersionRow.name],
                set_={"version": MaskingVersionRow.version + 1, "updated_at": now},
            )
            .returning(MaskingVersionRow.version)
        )
        version = int(self.session.execute(stmt).scalar_one())
        self.session.expire_all()
        return version

    def add(self, proposal: Proposal) -> None:
        self.session.add(
            MaskingProposalRow(
                proposal_id=proposal.proposal_id,
                kind=proposal.kind.value,
                target=proposal.target,
                payload=dict(proposal.payload),
                before=None if proposal.before is None else dict(proposal.before),
                reason=proposal.reason,
                status=proposal.status.value,
                proposed_by=proposal.proposed_by,
                proposer_department=proposal.proposer_department,
                proposed_at=proposal.proposed_at,
            )
        )
        self.session.flush()

    def _row(self, proposal_id: str, *, for_update: bool = False) -> MaskingProposalRow:
        stmt = select(MaskingProposalRow).where(MaskingProposalRow.proposal_id == proposal_id)
        if for_update:
            stmt = stmt.with_for_update()
        row = self.session.scalars(stmt).one_or_none()
        if row is None:
            raise ProposalNotFoundError(proposal_id)
        return row

    def get(self, proposal_id: str) -> Proposal:
        return _to_proposal(self._row(proposal_id))

    def find(
        self, *, status: ProposalStatus | None = None, kind: ProposalKind | None = None, limit: int = 200
    ) -> list[Proposal]:
        stmt = select(MaskingProposalRow)
        if status is not None:
            stmt = stmt.where(MaskingProposalRow.status == status.value)
        if kind is not None:
            stmt = stmt.where(MaskingProposalRow.kind == kind.value)
        stmt = stmt.order_by(MaskingProposalRow.proposed_at.desc(), MaskingProposalRow.proposal_id).limit(
            max(1, min(limit, 1000))
        )
        return [_to_proposal(r) for r in self.session.scalars(stmt)]

    def approved(self) -> list[Proposal]:
        stmt = (
            select(MaskingProposalRow)
            .where(MaskingProposalRow.status == ProposalStatus.APPROVED.value)
            .order_by(MaskingProposalRow.applied_seq, MaskingProposalRow.proposal_id)
        )
        return [_to_proposal(r) for r in self.session.scalars(stmt)]

    def decide(
        self,
        proposal_id: str,
        *,
        status: ProposalStatus,
        decided_by: str,
        decided_at: datetime,
        note: str | None,
        applied_seq: int | None = None,
    ) -> Proposal:
        row = self._row(proposal_id, for_update=True)
        if row.status != ProposalStatus.PENDING.value:
            raise _not_pending(proposal_id, row.status)
        row.status = status.value
        row.decided_by = decided_by
        row.decided_at = decided_at
        row.decision_note = note
        row.applied_seq = applied_seq
        self.session.flush()
        return _to_proposal(row)


#: How a proposal's status reads in a Chinese message (the English message keeps the code).
_STATUS_ZH = {
    ProposalStatus.PENDING: "待审批",
    ProposalStatus.APPROVED: "已批准",
    ProposalStatus.REJECTED: "已驳回",
    ProposalStatus.WITHDRAWN: "已撤回",
}


def _not_pending(proposal_id: str, status: str, *, dry_run: bool = False) -> ProposalConflictError:
    label = next((zh for known, zh in _STATUS_ZH.items() if known.value == status), status)
    if not dry_run:
        return ProposalConflictError(
            f"变更申请“{proposal_id}”已办结（{label}），不能再审批",
            f"proposal {proposal_id!r} is already {status}",
        )
    # A dry-run of a decided proposal: what it changed is in force (approved) or never will be.
    now_zh, now_en = (
        ("其内容已生效，请去掉 --proposal 试运行现行规则", "drop --proposal to dry-run what is in force")
        if status == ProposalStatus.APPROVED.value
        else ("其内容不会生效；如仍需要，请重新提出后再试运行", "propose it again to dry-run it")
    )
    return ProposalConflictError(
        f"变更申请“{proposal_id}”已办结（{label}），只能试运行待审批的申请：{now_zh}",
        f"proposal {proposal_id!r} is already {status}; only a pending proposal is dry-run: {now_en}",
    )


def masking_version(session: Session) -> int:
    """The version the effective catalog and rules are at (one primary-key read; polled)."""
    return MaskingRepository(session).version()


def load_effective(session: Session, baseline: MaskingDocuments) -> EffectiveMasking:
    """The baseline with every approved change applied in approval order, validated."""
    repository = MaskingRepository(session)
    version = repository.version()
    documents = MaskingDocuments(copy.deepcopy(dict(baseline.catalog)), copy.deepcopy(dict(baseline.rules)))
    applied: list[str] = []
    skipped: list[str] = []
    for proposal in repository.approved():
        try:
            documents = apply_change(documents, proposal.kind, proposal.payload).documents
        except MaskingError:  # the baseline moved under an old approval (e.g. a field removed)
            skipped.append(proposal.proposal_id)
            continue
        applied.append(proposal.proposal_id)
    catalog, rules = documents.build()
    return EffectiveMasking(
        catalog=catalog,
        rules=rules,
        version=version,
        documents=documents,
        applied=tuple(applied),
        skipped=tuple(skipped),
    )


# ------------------------------------------------------------------------------------------ service


class StewardshipService:
    """Propose, approve, reject. Returns (proposal, change event); never commits."""

    def __init__(self, repository: MaskingRepository, baseline: MaskingDocuments) -> None:
        self.repository = repository
        self.baseline = baseline

    def effective(self) -> EffectiveMasking:
        return load_effective(self.repository.session, self.baseline)

    def propose(
        self,
        steward: Steward,
        kind: str,
        payload: Mapping[str, Any],
        reason: str,
        now: datetime,
    ) -> tuple[Proposal, dict[str, Any]]:
        try:
            proposal_kind = ProposalKind(kind)
        except ValueError:
            raise _fail(
                "变更类型无效",
                f"kind must be one of {', '.join(k.value for k in ProposalKind)}",
            ) from None
        why = _clean_text(reason, "变更理由", "reason", max_len=500)
        effective = self.effective()
        planned = apply_change(effective.documents, proposal_kind, payload)
        self._may_propose(steward, proposal_kind, planned, effective.catalog)
        proposal = Proposal(
            proposal_id=f"mp-{uuid.uuid4().hex[:16]}",
            kind=proposal_kind,
            target=planned.target,
            payload=planned.payload,
            before=planned.before,
            reason=why,
            status=ProposalStatus.PENDING,
            proposed_by=steward.user_id,
            proposer_department=steward.department,
            proposed_at=now,
        )
        self.repository.add(proposal)
        return proposal, self._change("masking.change_proposed", steward, proposal, planned.after)

    def approve(
        self, proposal_id: str, steward: Steward, note: str | None, now: datetime
    ) -> tuple[Proposal, dict[str, Any]]:
        proposal = self.repository.get(proposal_id)
        if proposal.status is not ProposalStatus.PENDING:
            raise _not_pending(proposal_id, proposal.status.value)
        if steward.user_id == proposal.proposed_by:
            raise StewardshipForbiddenError(
                "不能审批自己提出的变更，须由另一位有权限的人员审批（双人复核）",
                "you cannot approve your own proposal; another authorised person must (four-eyes)",
            )
        effective = self.effective()
        self._may_decide(steward, proposal, effective.catalog)
        try:
            planned = apply_change(effective.documents, proposal.kind, proposal.payload)
        except MaskingError as exc:
            raise ProposalConflictError(
                f"该变更已不适用于现行目录或规则：{exc.message_zh}",
                f"the change no longer applies to the catalog or rules in force: {exc.message_en}",
            ) from None
        if planned.before != (None if proposal.before is None else dict(proposal.before)):
            # Name what changed it, so the approver can compare the two before rejecting.
            since = [p.proposal_id for p in self.repository.approved() if p.target == proposal.target]
            by_zh, by_en = (f"（变更申请 {since[-1]}）", f" ({since[-1]})") if since else ("", "")
            raise ProposalConflictError(
                f"此申请提出后，{proposal.target} 已被另一项获批的变更{by_zh}修改，不能再按原内容批准。"
                "请驳回此申请；如仍需要，请提出人按现行内容重新提出。",
                f"{proposal.target} was changed by another approved proposal{by_en} after this one was made, "
                "so it cannot be approved as it stands; reject it, and the proposer may propose again "
                "against what is in force",
            )
        clean_note = _clean_text(note, "审批意见", "note", max_len=500, required=False) or None
        seq = self.repository.bump_version(now)
        decided = self.repository.decide(
            proposal_id,
            status=ProposalStatus.APPROVED,
            decided_by=steward.user_id,
            decided_at=now,
            note=clean_note,
            applied_seq=seq,
        )
        change = self._change("masking.change_approved", steward, decided, planned.after)
        change["version"] = seq
        return decided, change

    def reject(
        self, proposal_id: str, steward: Steward, note: str | None, now: datetime
    ) -> tuple[Proposal, dict[str, Any]]:
        proposal = self.repository.get(proposal_id)
        if proposal.status is not ProposalStatus.PENDING:
            raise _not_pending(proposal_id, proposal.status.value)
        withdrawn = steward.user_id == proposal.proposed_by
        if withdrawn:
            clean_note = _clean_text(note, "撤回说明", "note", max_len=500, required=False) or None
        else:
            self._may_decide(steward, proposal, self.effective().catalog)
            clean_note = _clean_text(note, "驳回理由", "note", max_len=500)
        status = ProposalStatus.WITHDRAWN if withdrawn else ProposalStatus.REJECTED
        decided = self.repository.decide(
            proposal_id, status=status, decided_by=steward.user_id, decided_at=now, note=clean_note
        )
        kind = "masking.change_withdrawn" if withdrawn else "masking.change_rejected"
        return decided, self._change(kind, steward, decided, None)

    def preview(self, proposal_id: str) -> tuple[Catalog, RuleSet]:
        """The catalog and rules as they would be if this pending proposal were approved (dry-runs)."""
        proposal = self.repository.get(proposal_id)
        if proposal.status is not ProposalStatus.PENDING:
            raise _not_pending(proposal_id, proposal.status.value, dry_run=True)
        planned = apply_change(self.effective().documents, proposal.kind, proposal.payload)
        return planned.documents.build("preview")

    # -- authority ----------------------------------------------------------------------------------

    @staticmethod
    def _owner(catalog: Catalog, target: str) -> str:
        return catalog.dataset(target.split(".", 1)[0]).owner_department

    def _may_propose(self, steward: Steward, kind: ProposalKind, planned: _Planned, catalog: Catalog) -> None:
        roles = set(steward.roles)
        if PLATFORM_ADMIN in roles:
            return
        if STEWARD not in roles:
            raise StewardshipForbiddenError(
                "只有数据管理员可以提出分级、标签或规则变更",
                "only data stewards propose classification, tag or rule changes",
            )
        if kind is ProposalKind.FIELD and planned.dataset is not None:
            owner = catalog.dataset(planned.dataset).owner_department
            if steward.department != owner:
                raise StewardshipForbiddenError(
                    "只能为本部门的数据集提出字段分级变更",
                    f"only stewards of {owner} may reclassify fields of {planned.dataset}",
                )

    def _may_decide(self, steward: Steward, proposal: Proposal, catalog: Catalog) -> None:
        roles = set(steward.roles)
        if PLATFORM_ADMIN in roles:
            return
        if proposal.kind in (ProposalKind.RULE_UPSERT, ProposalKind.RULE_DELETE):
            raise StewardshipForbiddenError(
                "脱敏规则适用于所有部门的数据，须由平台管理员审批",
                "masking rules apply to every department's data; a platform administrator approves them",
            )
        if STEWARD not in roles:
            raise StewardshipForbiddenError(
                "只有数据管理员可以审批分级或标签变更",
                "only data stewards decide classification or tag changes",
            )
        if proposal.kind is ProposalKind.FIELD:
            owner = self._owner(catalog, proposal.target)
            if steward.department != owner:
                raise StewardshipForbiddenError(
                    "只能审批本部门数据集的字段分级变更",
                    f"only stewards of {owner} may decide on fields of their datasets",
                )

    @staticmethod
    def _change(
        kind: str, steward: Steward, proposal: Proposal, after: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        return {
            "kind": kind,
            "actor": steward.user_id,
            "proposal_id": proposal.proposal_id,
            "proposal_kind": proposal.kind.value,
            "target": proposal.target,
            "before": None if proposal.before is None else dict(proposal.before),
            "after": None if after is None else dict(after),
            "reason": proposal.reason,
            "proposed_by": proposal.proposed_by,
            "note": proposal.decision_note,
        }
