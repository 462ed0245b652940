"""Registration validation, the burden checklist, API payload parsing and the packaged configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from admission import (
    BurdenChecklist,
    ConfigurationError,
    InvalidRegistration,
    ProvidedDataset,
    SystemStatus,
    load_admission_config,
    registration_from_mapping,
)

from .conftest import make_registration


@pytest.mark.parametrize(
    ("field", "overrides"),
    [
        ("system_id", {"system_id": "Bad_ID"}),
        ("system_id", {"system_id": "x"}),
        ("name", {"name": "  "}),
        ("department", {"department": "Health Dept"}),
        ("purpose", {"purpose": ""}),
        ("reaches", {"reaches": ()}),
        ("reaches", {"reaches": ("31015x",)}),
        ("reaches", {"reaches": "310151"}),
        ("reaches_villages", {"reaches": ("310151101001",), "reaches_villages": False}),
        ("collects_fields", {"collects_fields": ("residents mobile",)}),
        ("security_level", {"security_level": 0}),
        ("security_level", {"security_level": 6}),
        ("contact", {"contact": " "}),
    ],
)
def test_invalid_registrations(field: str, overrides: dict[str, Any]) -> None:
    with pytest.raises(InvalidRegistration) as info:
        make_registration(**overrides)
    assert info.value.field == field
    assert info.value.message_zh.startswith(field)


@pytest.mark.parametrize(
    ("base_url", "endpoints"),
    [
        ("ftp://x.test", ()),
        ("https://", ()),
        ("https://user:pw@x.test", ()),
        ("https://x.test", ("residents",)),
    ],
)
def test_invalid_provided_datasets(base_url: str, endpoints: tuple[str, ...]) -> None:
    with pytest.raises(InvalidRegistration) as info:
        ProvidedDataset("residents", base_url, endpoints)
    assert "pw" not in str(info.value)


def test_normalisation() -> None:
    reg = make_registration(
        reaches=("310151101", "310151101000", "31"), collects_fields=(" residents.name", "residents.name")
    )
    assert reg.reaches == ("310151101000", "310000000000")
    assert reg.collects_fields == ("residents.name",)


def test_contact_is_kept_out_of_repr_and_default_dict() -> None:
    reg = make_registration()
    assert "13800000000" not in repr(reg)
    assert "contact" not in reg.as_dict()
    assert reg.as_dict(include_contact=True)["contact"] == "13800000000"


@pytest.mark.parametrize(
    ("answers", "concerns"),
    [
        ({}, ()),
        ({"duplicates_platform_function": True}, ("duplicates_platform",)),
        ({"can_embed_in_platform": True}, ("embeddable",)),
        ({"forces_checkins": True}, ("forced_checkins",)),
        ({"forces_points_or_rankings": True}, ("points_rankings",)),
        ({"offers_complaint_entry": False}, ("no_complaint_entry",)),
    ],
)
def test_checklist_concerns(answers: dict[str, bool], concerns: tuple[str, ...]) -> None:
    base = {
        "duplicates_platform_function": False,
        "can_embed_in_platform": False,
        "forces_checkins": False,
        "forces_points_or_rankings": False,
        "offers_complaint_entry": True,
    }
    checklist = BurdenChecklist.from_mapping({**base, **answers})
    assert tuple(c.code for c in checklist.concerns()) == concerns
    assert checklist.unanswered() == ()


def test_unanswered_checklist() -> None:
    assert BurdenChecklist(forces_checkins=False).unanswered() == (
        "duplicates_platform_function",
        "can_embed_in_platform",
        "forces_points_or_rankings",
        "offers_complaint_entry",
    )


PAYLOAD: dict[str, Any] = {
    "system_id": "elderly-care",
    "name": "养老服务",
    "department": "civil_affairs",
    "purpose": "老年人走访",
    "reaches": ["310151101"],
    "reaches_villages": True,
    "collects_fields": ["residents.name"],
    "provides": [
        {"dataset": "visits", "base_url": "https://care.test", "endpoints": ["/v"], "fields": ["id"]}
    ],
    "security_level": 2,
    "contact": "care@example.test",
    "checklist": {"forces_checkins": False},
    "status": "approved",
    "filing_number": "forged",
}


def test_payload_parsing_ignores_status_and_filing() -> None:
    reg = registration_from_mapping(PAYLOAD, created_by="u-1")
    assert (reg.status, reg.filing_number, reg.created_by) == (SystemStatus.DRAFT, None, "u-1")
    assert reg.provides[0].endpoints == ("/v",)
    assert reg.checklist.forces_checkins is False


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"reaches": "310151101"}, "reaches"),
        ({"security_level": True}, "security_level"),
        ({"security_level": "2"}, "security_level"),
        ({"reaches_villages": "yes"}, "reaches_villages"),
        ({"provides": [{"dataset": "v"}]}, "provides"),
        ({"checklist": {"forces_checkins": "no"}}, "checklist.forces_checkins"),
        ({"checklist": {"duplicates_platform": False}}, "checklist"),  # misspelt: refused, not dropped
        ({"name": None}, "name"),
    ],
)
def test_payload_errors_name_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRegistration) as info:
        registration_from_mapping({**PAYLOAD, **change}, created_by="u-1")
    assert info.value.field == field


def test_a_question_not_on_the_checklist_is_answered_with_the_questions_in_chinese() -> None:
    with pytest.raises(InvalidRegistration) as info:
        registration_from_mapping({**PAYLOAD, "checklist": {"是否强制打卡": False}}, created_by="u-1")
    assert "forces_checkins（是否强制打卡、留痕）" in info.value.message_zh
    assert "是否强制打卡" not in info.value.message_en


def test_a_missing_text_field_is_said_to_be_required() -> None:
    payload = {k: v for k, v in PAYLOAD.items() if k != "name"}
    with pytest.raises(InvalidRegistration) as info:
        registration_from_mapping(payload, created_by="u-1")
    assert (info.value.field, info.value.message_zh) == (
        "name",
        "登记内容缺少 1 项必填内容：系统名称（name）。请一并补齐后再登记。",
    )


def test_every_missing_item_is_named_in_one_answer() -> None:
    """A department typing ``admission register`` with only an id learned one missing item per attempt
    (five attempts), the first named being security_level though name and purpose were missing too."""
    with pytest.raises(InvalidRegistration) as info:
        registration_from_mapping(
            {"system_id": "hb-x", "department": "health", "name": "  ", "reaches": []}, created_by="u-1"
        )
    assert info.value.fields == ("name", "purpose", "reaches", "security_level", "contact")  # type: ignore[attr-defined]
    assert info.value.message_zh == (
        "登记内容缺少 5 项必填内容：系统名称（name）、建设目的（purpose）、覆盖范围（reaches，区划代码）、"
        "等保级别（security_level，1–5）、联系人（contact）。请一并补齐后再登记。"
    )
    assert info.value.message_en == (
        "The registration lacks 5 required item(s): name, purpose, reaches, security_level, contact. "
        "Fill them all in."
    )


@pytest.mark.parametrize(
    ("change", "field", "kind"),
    [
        ({"purpose": "联系户主张三，电话13812345678"}, "purpose", "手机号"),
        ({"name": "110105194912310021 专用"}, "name", "身份证号"),
        ({"checklist": {"notes": "投诉找 139 1234 5678"}}, "checklist.notes", "手机号"),
    ],
)
def test_personal_data_in_the_registration_text_is_refused(
    change: dict[str, Any], field: str, kind: str
) -> None:
    """Every reviewing office reads the registry: no resident's data in what a department types there."""
    with pytest.raises(InvalidRegistration) as info:
        registration_from_mapping({**PAYLOAD, **change}, created_by="u-1")
    assert info.value.field == field and kind in info.value.message_zh
    for secret in ("13812345678", "110105194912310021", "1234 5678", "张三"):
        assert secret not in info.value.message_zh + info.value.message_en


@pytest.mark.parametrize(
    ("contact", "kind"),
    [
        ("张三 110105194912310021", "身份证号"),
        ("李四，13812345678，卡号 6222 0212 3456 7890 128", "银行卡号"),  # the card, not the phone
    ],
)
def test_a_contact_holding_an_id_or_card_number_is_refused(contact: str, kind: str) -> None:
    """The contact (a person to call about the system) is shown to every reviewing office: a name and a
    work phone belong there, and were taken with an ID or bank card number beside them."""
    with pytest.raises(InvalidRegistration) as info:
        registration_from_mapping({**PAYLOAD, "contact": contact}, created_by="u-1")
    assert info.value.field == "contact" and kind in info.value.message_zh
    assert "姓名和工作电话" in info.value.message_zh and "a name and a work phone" in info.value.message_en
    for digits in ("110105194912310021", "6222", "13812345678"):
        assert digits not in info.value.message_zh + info.value.message_en


@pytest.mark.parametrize("contact", ["张三 13812345678", "王科长 021-69612345", "care@example.test", "李四"])
def test_a_contact_with_a_name_and_a_work_phone_is_taken(contact: str) -> None:
    assert registration_from_mapping({**PAYLOAD, "contact": contact}, created_by="u-1").contact == contact


def test_default_offices_follow_the_district_plan() -> None:
    config = load_admission_config()
    assert [o.name_zh for o in config.offices] == [
        "区政府办公室",
        "区政务服务办",
        "区民政局",
        "区科委",
        "区城运中心",
        "区大数据中心",
    ]
    assert all(o.required for o in config.offices)
    assert config.approval_period.days == 365
    assert config.reminder_days_before == (60, 30, 7)


@pytest.mark.parametrize(
    "toml",
    [
        "offices = []",
        'approval_period_days = 0\n[[offices]]\ncode="a"\nname_zh="甲"\nname_en="A"\ndepartment="a"',
        '[[offices]]\ncode="a"\nname_zh="甲"\nname_en="A"\ndepartment="a"\n'
        '[[offices]]\ncode="a"\nname_zh="乙"\nname_en="B"\ndepartment="b"',
        '[[offices]]\ncode="a"\nname_zh="甲"\nname_en="A"\ndepartment="a"\nrequired=false',
        '[[offices]]\ncode="a"\nname_zh="甲"',
        "not toml ===",
    ],
)
def test_bad_configuration(tmp_path: Path, toml: str) -> None:
    path = tmp_path / "offices.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(ConfigurationError):
        load_admission_config(path)


@pytest.mark.parametrize("typed", ["3101511", "3101511012", "31015", "310151101201000", "31015110a"])
def test_a_reach_of_no_level_length_is_refused_not_padded_into_another_area(typed: str) -> None:
    """``3101511`` (a township code cut short) used to pad to 310151100000, an area nobody meant."""
    with pytest.raises(InvalidRegistration) as info:
        make_registration(reaches=(typed,))
    assert info.value.field == "reaches"
    assert "2、4、6、9 或 12 位" in info.value.message_zh
    assert "半角数字" in info.value.message_zh  # ３１０１５１１０１ typed full-width is refused: say why


def test_a_missing_security_level_is_said_to_be_required_not_out_of_range() -> None:
    """Left out (``admission register`` without ``--security-level``), it read 'must be 1-5' as if a wrong
    level had been given."""
    payload = {k: v for k, v in PAYLOAD.items() if k != "security_level"}
    with pytest.raises(InvalidRegistration) as info:
        registration_from_mapping(payload, created_by="u-1")
    assert info.value.message_zh == (
        "登记内容缺少 1 项必填内容：等保级别（security_level，1–5）。请一并补齐后再登记。"
    )
    assert info.value.message_en == (
        "The registration lacks 1 required item(s): security_level. Fill them all in."
    )
