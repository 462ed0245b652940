"""The personal-data check on typed text (reasons, notes, summaries) and the audit event tripwire."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from grassroots_common.personal_data import looks_like_identifier, personal_data_in

# The public test vectors every test reads from the one shared place (as tests/audit/test_merkle.py does).
VECTORS = json.loads(Path("/work/shared/vectors/cn_numbers.json").read_text("utf-8"))
# Every number of the ID shape (17 digits and a check character), valid or not: all are refused in text.
ID_NUMBERS = [v["compact"] for v in VECTORS["resident_id"] if re.fullmatch(r"[1-9]\d{16}[\dX]", v["compact"])]
VALID_IDS = [v["compact"] for v in VECTORS["resident_id"] if v["checksum_valid"] and len(v["compact"]) == 18]


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        # The ways people actually write numbers: groups, hyphens, full-width digits, glued to letters.
        ("紧急核查 身份证 110105 19491231 002X", "id_number"),
        ("身份证110105-19491231-002x", "id_number"),
        ("ID110105194912310029", "id_number"),  # a wrong check character is still someone's number
        ("旧证号 110105491231002", "id_number"),  # 15-digit first-generation card
        ("１１０１０５１９４９１２３１００２Ｘ", "id_number"),
        ("联系人 138 1234 5678", "mobile"),
        ("电话138-1234-5678", "mobile"),
        ("Tel13812345678", "mobile"),
        ("+86 138 1234 5678", "mobile"),
        ("１３８１２３４５６７８", "mobile"),
        ("座机 021-62345678", "landline"),
        ("卡号 6222 0212 3456 7890 128", "bank_card"),
        ("邮箱 zhang.san@example.cn", "email"),
        # Ordinary reasons are not refused.
        ("低保年度复核，材料已齐", None),
        ("依据民发〔2021〕57号第十三条", None),
        ("核查 2025-06-02 至 2025-07-01 的走访记录", None),
        ("网格 310151101201 复核 3 户", None),
        ("请求编号 4bf92f3577b34da6a3ce929d0e0e4736", None),
        ("圆周率 3.14159265358979", None),
        ("卡号 6222 1212 3456 7890 123", None),  # fails Luhn: not a card number
        ("工单 12345-2026-11-0042", None),  # a 12345 work order is not a 15-digit ID number
        ("批次 2026-1102-0042", None),
    ],
)
def test_typed_text(text: str, kind: str | None) -> None:
    assert personal_data_in(text) == kind


#: What the response scan masks in a remark is refused in typed text by this same check, which every
#: library applies (admission, complaints, stewardship), not only at the gateway: a mobile in Chinese
#: numerals, a WeChat id or passport number after its cue. The shapes are the scanner's own.
AFTER_A_CUE_OR_IN_NUMERALS = [
    ("回电一三八一二三四五六七八", "mobile"),
    ("电话幺三八 幺二三四 五六七八", "mobile"),
    ("加微信号：wang_jg88再联系", "wechat_id"),
    ("微信 zhangsan-1990", "wechat_id"),
    ("护照号E12345678", "passport"),
    ("其子护照号码：EA1234567", "passport"),
    # not anyone's: dates, groups, counts and amounts in numerals; the cue words alone
    ("二〇二四年三月走访三组五户，补助一千二百元", None),
    ("一二三四五六七八九〇一", None),
    ("微信群已通知，护照业务另办", None),
    ("护照 20240301到期", None),
    # after a Latin cue, digits and numerals mixed
    ("vx：wang_jg88", "wechat_id"),
    ("加V信wang_jg88", "wechat_id"),
    ("回电138一二三四5678", "mobile"),
    ("wechat channel notice", None),
    # a house number where someone lives; a place no one is said to live at, groups, a stay in hospital
    ("投诉人家住幸福路88弄12号", "address"),
    ("住3号楼2单元501室", "address"),
    ("3组12号门前路灯损坏，已报修", None),
    ("住院3天，住2组", None),
    # a house number in Chinese numerals, or a dwelling's number with no word before it (unit and room,
    # building and room): masked in remarks, so refused in typed text too; a building, a stairwell, a
    # meeting room or years lived are not anyone's home
    ("投诉人住三号楼二单元五零一室", "address"),
    ("其母住在十二栋", "address"),
    ("投诉人是3号楼2单元501室的住户", "address"),
    ("二单元五零一的老人反映漏水", "address"),
    ("5栋302室漏水", "address"),
    ("3号楼2单元楼道灯不亮，村委会201室开会", None),
    ("居住二十年，三栋楼顶漏水", None),
    # vx/wx typed onto the id, and WeChat's own ids, which need no cue; a group, a model number
    ("加vxwang88联系", "wechat_id"),
    ("对方wxid_a1b2c3d4e5f6g7已添加", "wechat_id"),
    ("vx群已建好，型号WX2000", None),
]


@pytest.mark.parametrize(("text", "kind"), AFTER_A_CUE_OR_IN_NUMERALS)
def test_typed_text_after_a_cue_or_in_numerals(text: str, kind: str | None) -> None:
    assert personal_data_in(text) == kind


def test_the_scanner_is_built_from_the_same_shapes() -> None:
    """One implementation: the recognizers' patterns are this module's text, not a copy of it."""
    from grassroots_common import personal_data as shapes
    from masking import recognizers

    patterns = {
        p.name: p.regex
        for r in recognizers.build_recognizers()
        for p in r.patterns
        if p.name
        in {"cn_mobile_numerals", "wechat_after_cue", "passport_after_cue", "wechat_glued", "wechat_own_id"}
        | {"address_after_cue", "dwelling"}
    }
    assert patterns["cn_mobile_numerals"] == shapes.MOBILE_IN_NUMERALS
    assert patterns["wechat_own_id"] == shapes.WECHAT_OWN_ID
    assert patterns["dwelling"] == shapes.DWELLING
    assert (
        shapes.WECHAT_GLUED_CUE in patterns["wechat_glued"]
        and shapes.WECHAT_GLUED_ID in patterns["wechat_glued"]
    )
    assert shapes.ADDRESS_DETAIL in patterns["address_after_cue"]
    assert (
        shapes.WECHAT_CUE in patterns["wechat_after_cue"] and shapes.WECHAT_ID in patterns["wechat_after_cue"]
    )
    assert shapes.PASSPORT_CUE in patterns["passport_after_cue"]


@given(
    number=st.sampled_from(ID_NUMBERS),
    seps=st.lists(st.sampled_from(["", " ", "-", "\u3000", "\u00a0"]), min_size=2, max_size=2),
    before=st.text(st.characters(categories=["Lo"]), max_size=8),
    after=st.text(st.characters(categories=["Lo"]), max_size=8),
)
def test_every_id_number_is_found_however_it_is_split(
    number: str, seps: list[str], before: str, after: str
) -> None:
    text = before + number[:6] + seps[0] + number[6:14] + seps[1] + number[14:] + after
    assert personal_data_in(text) == "id_number"


@pytest.mark.parametrize("number", VALID_IDS)
def test_the_tripwire_finds_valid_id_numbers_whole_and_grouped(number: str) -> None:
    assert looks_like_identifier(f"x {number} y")
    assert looks_like_identifier(f"{number[:6]} {number[6:14]} {number[14:]}")


@pytest.mark.parametrize(
    "text",
    [
        "2025-06-02T02:00:00.000000Z",
        "sha256:" + "0" * 64,
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "310151101201",
        "u00001234",
        "data.list\ncadre_a\nDIBAO_REVIEW",
    ],
)
def test_the_tripwire_leaves_what_the_system_writes_alone(text: str) -> None:
    assert not looks_like_identifier(text)
