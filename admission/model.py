"""The registration model: what a department declares before its system may reach villages.

The fields follow the district plan's admission review (准入联审, seeds/003: 区政府办公室、区政务服务办联合
相关部门进行联审确认) and the burden-reduction checklist (《关于进一步为居村组织减负的若干措施》): no
duplicate of the unified platform's functions, embed in the platform where possible, no forced check-ins,
points or rankings, and a complaint entry for village users.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import urlsplit

from admission import _divisions
from admission.errors import InvalidRegistration, MissingRegistrationFields
from grassroots_common.personal_data import KIND_NAMES, identity_number_in, personal_data_in


class SystemStatus(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    CHANGES_REQUESTED = "changes_requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    SUSPENDED = "suspended"
    REVOKED = "revoked"
    LAPSED = "lapsed"


STATUS_LABELS_ZH: Mapping[SystemStatus, str] = {
    SystemStatus.DRAFT: "草稿",
    SystemStatus.SUBMITTED: "联审中",
    SystemStatus.CHANGES_REQUESTED: "待修改",
    SystemStatus.APPROVED: "已准入",
    SystemStatus.REJECTED: "未通过",
    SystemStatus.SUSPENDED: "已暂停",
    SystemStatus.REVOKED: "已撤销",
    SystemStatus.LAPSED: "已过期",
}


class ReviewVote(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    REQUEST_CHANGES = "request_changes"


_SLUG = re.compile(r"^[a-z][a-z0-9-]{1,62}[a-z0-9]$")
_DEPARTMENT = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
_FIELD_REF = re.compile(r"^[A-Za-z0-9_\-.:]{1,128}$")
_DATASET = re.compile(r"^[a-z][a-z0-9_\-]{0,63}$")


def _dedupe(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


@dataclass(frozen=True, slots=True)
class ReviewOffice:
    """One office of the joint review. ``department`` is used for recusal: an office never reviews a system
    of its own department (separation of duties), so it is not required for that registration."""

    code: str
    name_zh: str
    name_en: str
    department: str
    required: bool = True


@dataclass(frozen=True, slots=True)
class ProvidedDataset:
    """A dataset the system would serve as an upstream of the gateway; ``fields`` is its schema."""

    dataset: str
    base_url: str
    endpoints: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _DATASET.fullmatch(self.dataset):
            raise InvalidRegistration("provides.dataset", "数据集标识格式不正确", "malformed dataset id")
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidRegistration(
                "provides.base_url", "必须是 http(s) 地址", "must be an http(s) URL with a host"
            )
        if parts.username or parts.password:
            # Credentials belong in the encrypted outbound-credential store, never in a URL.
            raise InvalidRegistration(
                "provides.base_url", "地址中不得包含账号口令", "must not carry credentials"
            )
        for endpoint in self.endpoints:
            if not endpoint.startswith("/"):
                raise InvalidRegistration("provides.endpoints", "路径须以 / 开头", "paths start with /")
        object.__setattr__(self, "endpoints", _dedupe(self.endpoints))
        object.__setattr__(self, "fields", _dedupe(f.strip() for f in self.fields))


@dataclass(frozen=True, slots=True)
class Concern:
    """A checklist answer that reviewers should weigh; it does not block submission on its own."""

    code: str
    message_zh: str
    message_en: str


@dataclass(frozen=True, slots=True)
class BurdenChecklist:
    """The burden-reduction questions (减负清单). ``None`` means unanswered: a registration cannot be
    submitted until every question has an answer."""

    duplicates_platform_function: bool | None = None
    can_embed_in_platform: bool | None = None
    forces_checkins: bool | None = None
    forces_points_or_rankings: bool | None = None
    offers_complaint_entry: bool | None = None
    notes: str = ""

    QUESTIONS = (
        "duplicates_platform_function",
        "can_embed_in_platform",
        "forces_checkins",
        "forces_points_or_rankings",
        "offers_complaint_entry",
    )
    # What each question asks, in the words of the burden-reduction checklist, for the department's
    # system admin who has to answer it.
    QUESTIONS_ZH = MappingProxyType(
        {
            "duplicates_platform_function": "是否与统一平台已有功能重复",
            "can_embed_in_platform": "能否嵌入统一平台",
            "forces_checkins": "是否强制打卡、留痕",
            "forces_points_or_rankings": "是否设置积分、排名",
            "offers_complaint_entry": "是否提供投诉反馈入口",
        }
    )

    def unanswered(self) -> tuple[str, ...]:
        return tuple(q for q in self.QUESTIONS if getattr(self, q) is None)

    def concerns(self) -> tuple[Concern, ...]:
        found: list[Concern] = []
        if self.duplicates_platform_function:
            found.append(
                Concern(
                    "duplicates_platform",
                    "与统一平台（新版社区云）已有功能重复",
                    "duplicates a function the unified platform already has",
                )
            )
        if self.can_embed_in_platform:
            found.append(
                Concern(
                    "embeddable",
                    "可嵌入统一平台，不应单独下沉村居",
                    "could be embedded in the unified platform instead of a separate system",
                )
            )
        if self.forces_checkins:
            found.append(Concern("forced_checkins", "强制打卡、留痕", "forces check-ins"))
        if self.forces_points_or_rankings:
            found.append(Concern("points_rankings", "设置积分、排名", "imposes points or rankings"))
        if self.offers_complaint_entry is False:
            found.append(Concern("no_complaint_entry", "未提供投诉反馈入口", "offers no complaint entry"))
        return tuple(found)

    def as_dict(self) -> dict[str, Any]:
        return {q: getattr(self, q) for q in (*self.QUESTIONS, "notes")}

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> BurdenChecklist:
        if set(data) - {*cls.QUESTIONS, "notes"}:
            # A misspelt question must not be dropped: the answer would be lost and submission refused
            # later as "unanswered" for a question the department did answer. The keys it takes are named,
            # never what was typed.
            raise InvalidRegistration(
                "checklist",
                "含有清单之外的问题；可回答的问题是 "
                f"{'、'.join(f'{q}（{cls.QUESTIONS_ZH[q]}）' for q in cls.QUESTIONS)}，以及 notes（说明）",
                f"holds a question not on the checklist; it takes {', '.join(cls.QUESTIONS)} and notes",
            )
        values: dict[str, Any] = {}
        for q in cls.QUESTIONS:
            v = data.get(q)
            if v is not None and not isinstance(v, bool):
                raise InvalidRegistration(f"checklist.{q}", "须为是/否", "must be true or false")
            values[q] = v
        notes = data.get("notes", "")
        if not isinstance(notes, str):
            raise InvalidRegistration("checklist.notes", "须为文本", "must be text")
        return cls(**values, notes=notes)


@dataclass(frozen=True, slots=True)
class SystemRegistration:
    """A departmental system in the admission registry.

    ``reaches`` are division codes (normalised to 12 digits); with ``reaches_villages`` the system extends
    down to every village and community under them, which is what the burden view counts.
    ``collects_fields`` are catalog field refs (``residents.mobile``) or tag names the system would make
    villages enter. ``contact`` is kept out of ``repr`` (it may be a person's phone number).
    """

    system_id: str
    name: str
    department: str
    purpose: str
    reaches: tuple[str, ...]
    reaches_villages: bool
    collects_fields: tuple[str, ...]
    provides: tuple[ProvidedDataset, ...]
    security_level: int
    contact: str = field(repr=False)
    checklist: BurdenChecklist = field(default_factory=BurdenChecklist)
    status: SystemStatus = SystemStatus.DRAFT
    filing_number: str | None = None
    approved_until: datetime | None = None
    created_by: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    review_round: int = 0
    renewal_open: bool = False

    def __post_init__(self) -> None:
        if not _SLUG.fullmatch(self.system_id):
            raise InvalidRegistration(
                "system_id",
                "须为 3–64 位小写字母、数字或连字符",
                "must be a 3-64 character slug of lowercase letters, digits and hyphens",
            )
        if not self.name.strip() or len(self.name) > 200:
            raise InvalidRegistration("name", "不能为空，且不超过 200 字", "required, at most 200 characters")
        if not _DEPARTMENT.fullmatch(self.department):
            raise InvalidRegistration("department", "部门标识格式不正确", "malformed department id")
        if not self.purpose.strip():
            raise InvalidRegistration("purpose", "须说明建设目的", "the purpose is required")
        if isinstance(self.reaches, str) or isinstance(self.collects_fields, str):
            raise InvalidRegistration("reaches", "须为列表", "must be a list, not a string")
        try:
            reaches = _dedupe(_divisions.normalize(c) for c in self.reaches)
        except ValueError:
            raise InvalidRegistration(
                "reaches",
                "须为 2、4、6、9 或 12 位的统计用区划代码，用半角数字"
                "（例如乡镇 310151101、村居 310151101201）",
                "must be division codes of 2, 4, 6, 9 or 12 digits "
                "(a township 310151101, a village 310151101201)",
            ) from None
        if not reaches:
            raise InvalidRegistration("reaches", "须至少覆盖一个区域", "must reach at least one area")
        if any(_divisions.is_village(c) for c in reaches) and not self.reaches_villages:
            raise InvalidRegistration(
                "reaches_villages",
                "覆盖村居代码时必须声明下沉村居",
                "must be true when a village or community code is reached",
            )
        fields = _dedupe(f.strip() for f in self.collects_fields)
        bad = [f for f in fields if not _FIELD_REF.fullmatch(f)]
        if bad:
            raise InvalidRegistration(
                "collects_fields", "字段须为目录字段或标签名", "must be catalog field refs or tag names"
            )
        if not isinstance(self.security_level, int) or not 1 <= self.security_level <= 5:
            # 网络安全等级保护 (GB/T 22239) defines levels 1 to 5.
            raise InvalidRegistration("security_level", "等保级别须为 1–5", "must be a level from 1 to 5")
        if not self.contact.strip():
            raise InvalidRegistration("contact", "须填写联系人", "a contact is required")
        if self.approved_until is not None and self.approved_until.tzinfo is None:
            raise InvalidRegistration("approved_until", "须带时区", "must be timezone-aware")
        object.__setattr__(self, "reaches", reaches)
        object.__setattr__(self, "collects_fields", fields)
        object.__setattr__(self, "provides", tuple(self.provides))
        object.__setattr__(self, "status", SystemStatus(self.status))

    @property
    def is_admitted(self) -> bool:
        return self.status is SystemStatus.APPROVED

    def replace(self, **changes: Any) -> SystemRegistration:
        return dataclasses.replace(self, **changes)

    def as_dict(self, *, include_contact: bool = False) -> dict[str, Any]:
        """JSON-ready view; the contact is left out unless asked for (it may be personal data)."""
        data: dict[str, Any] = {
            "system_id": self.system_id,
            "name": self.name,
            "department": self.department,
            "purpose": self.purpose,
            "reaches": list(self.reaches),
            "reaches_villages": self.reaches_villages,
            "collects_fields": list(self.collects_fields),
            "provides": [
                {
                    "dataset": p.dataset,
                    "base_url": p.base_url,
                    "endpoints": list(p.endpoints),
                    "fields": list(p.fields),
                }
                for p in self.provides
            ],
            "security_level": self.security_level,
            "checklist": self.checklist.as_dict(),
            "concerns": [c.code for c in self.checklist.concerns()],
            "status": self.status.value,
            "filing_number": self.filing_number,
            "approved_until": self.approved_until.isoformat() if self.approved_until else None,
            "created_by": self.created_by,
            "review_round": self.review_round,
            "renewal_open": self.renewal_open,
        }
        if include_contact:
            data["contact"] = self.contact
        return data


def refuse_personal_data(field_name: str, text: str) -> str:
    """``text``, or :class:`InvalidRegistration` naming the kind of personal data it holds (never the
    value): what is typed into the registry is read by every reviewing office and kept (PIPL Art. 51)."""
    return _refused_if_any(
        field_name,
        text,
        personal_data_in(text),
        "请不要填写身份证号、手机号等个人信息",
        "leave out ID and phone numbers and other personal data",
    )


def refuse_identity_numbers(field_name: str, text: str) -> str:
    """``text``, or :class:`InvalidRegistration` when it holds an ID or bank card number (never the value):
    the contact is a person to call about the system, so a name and a work phone belong there and are shown
    to the reviewing offices; an ID or card number never does (PIPL Art. 6, minimum necessary)."""
    return _refused_if_any(
        field_name,
        text,
        identity_number_in(text),
        "联系人只需填写姓名和工作电话（或电子邮箱），不要填写身份证号、银行卡号",
        "a contact needs a name and a work phone (or e-mail), never an ID or bank card number",
    )


def _refused_if_any(field_name: str, text: str, kind: str | None, advice_zh: str, advice_en: str) -> str:
    if kind is not None:
        what_zh, what_en = KIND_NAMES[kind]
        raise InvalidRegistration(field_name, f"含有{what_zh}，{advice_zh}", f"holds {what_en}; {advice_en}")
    return text


#: What a registration must hold, in the order a form asks for it: (key, Chinese name, what to write).
_REQUIRED = (
    ("system_id", "系统标识", "，小写字母、数字和连字符"),
    ("name", "系统名称", ""),
    ("purpose", "建设目的", ""),
    ("reaches", "覆盖范围", "，区划代码"),
    ("security_level", "等保级别", "，1–5"),
    ("contact", "联系人", ""),
)
#: The keys a draft registration is refused without (documented as required in the OpenAPI document).
REQUIRED_KEYS: Final = tuple(key for key, _, _ in _REQUIRED)
#: The shapes of a system id and a provided dataset's id (documented as patterns in the OpenAPI document).
SYSTEM_ID_PATTERN: Final = _SLUG.pattern
DATASET_ID_PATTERN: Final = _DATASET.pattern


def _blank(value: Any) -> bool:
    if isinstance(value, str):
        return not value.strip()
    return value is None or (isinstance(value, list | tuple) and not value)


def registration_from_mapping(data: Mapping[str, Any], *, created_by: str) -> SystemRegistration:
    """Build a draft registration from an API or CLI payload; the status and filing fields are never taken
    from the caller. The name, the purpose and the checklist notes may hold no personal data (the contact,
    a person to call about the system, is kept out of the views instead)."""

    def _str(name: str, default: str | None = None) -> str:
        value = data.get(name, default)
        if value is None:
            raise InvalidRegistration(name, "必须填写", "is required")
        if not isinstance(value, str):
            raise InvalidRegistration(name, "须为文本", "must be text")
        return value

    def _strs(name: str) -> tuple[str, ...]:
        value = data.get(name, ())
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise InvalidRegistration(name, "须为列表", "must be a list")
        if not all(isinstance(v, str) for v in value):
            raise InvalidRegistration(name, "列表项须为文本", "items must be text")
        return tuple(value)

    missing = [(key, zh, hint) for key, zh, hint in _REQUIRED if _blank(data.get(key))]
    if missing:
        raise MissingRegistrationFields(missing)
    provides_raw = data.get("provides", ())
    if not isinstance(provides_raw, list | tuple):
        raise InvalidRegistration("provides", "须为列表", "must be a list")
    provides: list[ProvidedDataset] = []
    for item in provides_raw:
        if not isinstance(item, Mapping):
            raise InvalidRegistration("provides", "列表项须为对象", "items must be objects")
        dataset, base_url = item.get("dataset"), item.get("base_url")
        if not isinstance(dataset, str) or not isinstance(base_url, str):
            raise InvalidRegistration("provides", "须包含 dataset 与 base_url", "needs dataset and base_url")
        endpoints, fields = item.get("endpoints", ()), item.get("fields", ())
        if not isinstance(endpoints, list | tuple) or not all(isinstance(e, str) for e in endpoints):
            raise InvalidRegistration("provides.endpoints", "须为文本列表", "must be a list of text")
        if not isinstance(fields, list | tuple) or not all(isinstance(f, str) for f in fields):
            raise InvalidRegistration("provides.fields", "须为文本列表", "must be a list of text")
        provides.append(ProvidedDataset(dataset, base_url, tuple(endpoints), tuple(fields)))
    reaches_villages = data.get("reaches_villages", False)
    level = data.get("security_level")
    checklist = data.get("checklist", {})
    if not isinstance(reaches_villages, bool):
        raise InvalidRegistration("reaches_villages", "须为是/否", "must be true or false")
    if not isinstance(level, int) or isinstance(level, bool):
        raise InvalidRegistration("security_level", "等保级别须为 1–5", "must be a level from 1 to 5")
    if not isinstance(checklist, Mapping):
        raise InvalidRegistration("checklist", "须为对象", "must be an object")
    notes = checklist.get("notes")
    if isinstance(notes, str):
        refuse_personal_data("checklist.notes", notes)
    return SystemRegistration(
        system_id=_str("system_id"),
        name=refuse_personal_data("name", _str("name")),
        department=_str("department"),
        purpose=refuse_personal_data("purpose", _str("purpose")),
        reaches=_strs("reaches"),
        reaches_villages=reaches_villages,
        collects_fields=_strs("collects_fields"),
        provides=tuple(provides),
        security_level=level,
        contact=refuse_identity_numbers("contact", _str("contact")),
        checklist=BurdenChecklist.from_mapping(checklist),
        created_by=created_by,
    )


@dataclass(frozen=True, slots=True)
class ReviewRecord:
    """One office's signed vote in one review round."""

    system_id: str
    round: int
    office: str
    reviewer_id: str
    reviewer_department: str
    vote: ReviewVote
    comment: str
    at: datetime
