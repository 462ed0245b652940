"""Typed text (grant reasons, complaint summaries, notes) is refused when it holds personal data the
response scan masks: the refusal names the kind and never repeats the value."""

from __future__ import annotations

import pytest
from stdnum import luhn

from gateway.errors import InvalidRequest
from gateway.free_text import personal_data_kind, refuse_personal_data

TYPED = [
    ("回电一三八一二三四五六七八", "mobile"),
    ("加微信号：wang_jg88再联系", "wechat_id"),
    ("护照号：E12345678已核", "passport"),
    ("二〇二四年三月走访三组五户", None),
    ("微信群已通知，护照业务另办", None),
    ("vx：wang_jg88", "wechat_id"),
    ("回电138一二三四5678", "mobile"),
    ("投诉人家住幸福路88弄12号", "address"),
    ("3组12号门前路灯损坏，已报修", None),
    # a name before what the person said (称) is a name; 王某 and words after a cue that begin with a
    # surname character (陆续、强烈) name nobody, here as in the response scan
    ("村民郭春刚称已搬走", "person"),
    ("户主王某，其子李某称", None),
    ("村民陆续领取，居民强烈要求", None),
    # a birth date tied to a birth cue word; a visit date or a review year is none
    ("户主出生于1948年3月12日，申请高龄补贴", "birth_date"),
    ("于一九四八年三月十二日出生", "birth_date"),
    ("2024年3月5日走访，2023年度低保复核", None),
    # a QQ number or a travel permit's after its cue; a QQ group's number is no one's account
    ("投诉人QQ：123456789", "qq_number"),
    ("QQ群：123456789已建", None),
    ("港澳通行证C12345678已核", "passport"),
    # a name before when the person did it (今日、下午、多次…); such a word is no name itself
    ("投诉人王伟今日来电", "person"),
    ("群众李娜下午来访", "person"),
    ("户主上午已到村委会，年底已搬走", None),
]


@pytest.mark.parametrize(("text", "kind"), TYPED)
def test_kind_of_personal_data_in_typed_text(text: str, kind: str | None) -> None:
    assert personal_data_kind(text) == kind


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("微信号：wang_jg88", "wang_jg88"),
        ("护照E12345678", "E12345678"),
        ("户主出生于1948年3月12日", "3月12日"),
    ],
)
def test_refusal_names_the_kind_and_not_the_value(text: str, value: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        refuse_personal_data(text, "事由", "reason", code="personal_data_in_reason")
    assert value not in str(refused.value.__dict__)


def test_a_birth_date_in_typed_text_is_refused_naming_a_birth_date() -> None:
    """A note holding a resident's birth date was kept in the audit log as typed; it is refused as the
    response scan masks it, the message saying what to take out (出生日期) and not the date."""
    with pytest.raises(InvalidRequest) as refused:
        refuse_personal_data("核实户主出生于1948年3月12日", "事由", "reason", code="personal_data_in_reason")
    error = refused.value
    assert error.extra == {"personal_data_kind": "birth_date"}
    assert "事由中含有出生日期" in error.message_zh and "a date of birth" in error.message_en
    assert "1948" not in error.message_zh + error.message_en


def test_work_order_numbers_are_not_taken_for_bank_cards() -> None:
    # The README's ticket shape, 12345-YYYY-MM-NNNN: 15 digits, one in ten passing the Luhn check, was
    # refused as a bank card (12345-2026-12-0001 among them) when a supervisor registered a complaint.
    tickets = [f"12345-2026-{month:02d}-{serial:04d}" for month in (1, 11, 12) for serial in range(1, 120)]
    assert "12345-2026-12-0001" in tickets
    assert [t for t in tickets if personal_data_kind(t) is not None] == []
    assert personal_data_kind("工单号 12345-2026-12-0001，已转办") is None


@pytest.mark.parametrize(
    ("sizes", "separator"),
    [
        ((19,), ""),  # one piece
        ((4, 4, 4, 4, 3), " "),  # groups of four, as printed on most cards
        ((4, 4, 4, 4, 3), "-"),
        ((6, 13), " "),  # 6 + 13, as some banks print a 19-digit card
        ((1,) * 19, " "),  # read out digit by digit
    ],
)
def test_bank_cards_written_as_cards_are_still_refused(sizes: tuple[int, ...], separator: str) -> None:
    base = "622202123456789012"
    card = base + luhn.calc_check_digit(base)  # a number that passes the check card numbers carry
    groups, at = [], 0
    for size in sizes:
        groups.append(card[at : at + size])
        at += size
    assert personal_data_kind("退款卡号 " + separator.join(groups)) == "bank_card"
