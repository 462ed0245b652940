from __future__ import annotations

import datetime as dt
import re
import string
from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stdnum.iso7064 import mod_11_2

from masking import (
    REDACTED,
    BindContext,
    Operator,
    OperatorError,
    get_operator,
    mask_value,
    register_operator,
)
from masking.operators import _ADDRESS as _ADDRESS_PATTERN
from masking.operators import ADDRESS_LEVELS, OPERATORS, MaskFn, ParamValue, _parse_date, generalise_address

_STRUCTURED = ("cn_id", "mobile", "landline", "address", "bank_card", "credit_code", "date")
# (operator, params, input, expected)
TABLE: list[tuple[str, dict[str, ParamValue], object, object]] = [
    ("keep", {}, "abc", "abc"),
    ("keep", {}, 42, 42),
    ("redact", {}, "13812345678", REDACTED),
    ("redact", {"replacement": "已隐藏"}, "x", "已隐藏"),
    ("partial", {"keep_first": 2, "keep_last": 2}, "abcdefgh", "ab****gh"),
    ("partial", {"keep_first": 4, "keep_last": 4}, "abcdef", "ab*def"),
    ("partial", {"keep_last": 4}, "H3305230042", "*******0042"),
    ("partial", {}, "", ""),
    # an empty value (a resident with no phone on file) stays empty: *** said there was one
    *((op, {}, blank, "") for op in _STRUCTURED for blank in ("", "  ")),
    ("cn_id", {}, "44011320141005001X", "440113************"),
    ("cn_id", {}, "44011320141005001x", "440113************"),
    ("cn_id", {"keep_region": 2}, "110102199101010078", "11****************"),
    ("cn_id", {"keep_birth_year": True}, "110102199101010078", "1101021991********"),
    ("cn_id", {"keep_check": True}, "44011320141005001x", "440113***********X"),
    ("cn_id", {}, "440113141005001", "440113*********"),
    ("cn_id", {}, "4401132014", REDACTED),
    ("cn_id", {}, None, None),
    ("mobile", {}, "13812345678", "138****5678"),
    ("mobile", {}, "+86 138-1234-5678", "138****5678"),
    ("mobile", {}, 13812345678, "138****5678"),
    ("mobile", {"keep_first": 0}, "13812345678", "*******5678"),
    ("mobile", {}, "12812345678", REDACTED),
    ("mobile", {}, "1381234567", REDACTED),
    ("landline", {}, "010-12345678", "010-******78"),
    ("landline", {}, "(0571)87654321转123", "0571-******21"),
    ("landline", {"keep_last": 0}, "0571-8765432", "0571-*******"),
    ("landline", {}, "021 5961 2345", "021-******45"),  # the local number in groups
    ("landline", {}, "0571-8888-8888", "0571-******88"),
    # the area code left out, as residents write the home phone: still the last 2 digits only
    ("landline", {}, "87654321", "******21"),
    ("landline", {}, "5961234", "*****34"),
    ("landline", {}, "12345678", REDACTED),  # 1 begins mobiles and service numbers, not a local number
    ("landline", {}, "596123", REDACTED),
    # the area code is read by the numbering plan: 021 + 5961 2345, not "0215"
    ("landline", {}, "02159612345", "021-******45"),
    ("landline", {}, "057188881234", "0571-******34"),
    ("landline", {}, "0123-4567890", REDACTED),  # no area code starts 01 but 010
    ("name", {}, "张三", "张*"),
    ("name", {}, "王建国", "王**"),
    ("name", {}, "欧阳娜娜", "欧阳**"),
    ("name", {}, "司马光", "司马*"),
    ("name", {}, "诸葛孔明", "诸葛**"),
    ("name", {}, "欧阳", "欧*"),
    ("name", {}, "阿卜杜·热合曼", "阿**·***"),
    ("name", {"preserve_length": False}, "王建国", "王**"),
    ("name", {"preserve_length": False}, "张三", "张**"),
    ("address", {}, "浙江省湖州市安吉县天荒坪镇余村3组12号", "浙江省湖州市安吉县天荒坪镇余村"),
    ("address", {"level": "township"}, "浙江省湖州市安吉县天荒坪镇余村3组12号", "浙江省湖州市安吉县天荒坪镇"),
    ("address", {"level": "county"}, "浙江省湖州市安吉县天荒坪镇余村3组12号", "浙江省湖州市安吉县"),
    ("address", {"level": "city"}, "浙江省湖州市安吉县天荒坪镇余村3组12号", "浙江省湖州市"),
    ("address", {"level": "province"}, "浙江省湖州市安吉县天荒坪镇余村3组12号", "浙江省"),
    ("address", {}, "北京市朝阳区望京街道花家地社区5号楼2单元", "北京市朝阳区望京街道花家地社区"),
    ("address", {}, "上海市浦东新区张江镇新丰村12组45号", "上海市浦东新区张江镇新丰村"),
    ("address", {}, "广东省广州市番禺区大石街道17号", "广东省广州市番禺区大石街道"),
    (
        "address",
        {},
        "内蒙古自治区呼伦贝尔市鄂温克族自治旗巴彦托海镇巴彦嘎查3号",
        "内蒙古自治区呼伦贝尔市鄂温克族自治旗巴彦托海镇巴彦嘎查",
    ),
    ("address", {}, "幸福路12号", REDACTED),
    ("bank_card", {}, "6222021234567890128", "622202*********0128"),
    ("bank_card", {}, "6222 0212 3456 7890", "622202******7890"),
    ("bank_card", {}, "12345", REDACTED),
    ("credit_code", {}, "91110000600037341L", "91110000**********"),
    ("credit_code", {}, "91 110000 600037341L", "91110000**********"),
    ("credit_code", {"keep_last": 1}, "91110000600037341L", "91110000*********L"),
    ("credit_code", {}, "9111000060003IOZSV", REDACTED),
    ("date", {}, "1991-03-04", "1991"),
    ("date", {"granularity": "month"}, "1991-03-04", "1991-03"),
    ("date", {"granularity": "month"}, dt.date(2001, 12, 31), "2001-12"),
    ("date", {}, "19910304", "1991"),
    ("date", {}, "1991-02-30", REDACTED),
    # birth dates as registries write them, once all redacted
    ("date", {}, "1957年3月2日", "1957"),
    ("date", {"granularity": "month"}, "1957/3/2", "1957-03"),
    ("date", {}, "1957.03.02", "1957"),
    ("date", {}, "1957-03", "1957"),
    ("date", {"granularity": "month"}, "1957年3月", "1957-03"),
    ("date", {"granularity": "month"}, "1957", "1957"),  # known to the year only
    ("date", {}, "1957-13", REDACTED),
    ("date", {}, "1957/03-02", REDACTED),
    ("age_bucket", {}, "1957年3月2日", "60-69"),
    ("age_bucket", {}, "1957-03", REDACTED),  # the age is not known to the year
    ("age_bucket", {}, "1991-03-04", "30-39"),
    ("age_bucket", {}, "1995-06-01", "30-39"),
    ("age_bucket", {}, "1995-06-02", "20-29"),
    ("age_bucket", {"width": 5}, 42, "40-44"),
    ("age_bucket", {}, 85, "80+"),
    ("age_bucket", {"top": 75}, 72, "70-74"),
    ("age_bucket", {}, "2030-01-01", REDACTED),
]


@pytest.mark.parametrize(("op", "params", "value", "expected"), TABLE)
def test_operator_table(op: str, params: dict[str, ParamValue], value: object, expected: object) -> None:
    assert mask_value(op, value, BindContext(as_of=dt.date(2025, 6, 1)), **params) == expected


@pytest.mark.parametrize(
    ("op", "params"),
    [
        ("partial", {"keep_first": -1}),
        ("partial", {"mask_char": "**"}),
        ("cn_id", {"keep_region": 3}),
        ("mobile", {"keep_first": True}),
        ("address", {"level": "street"}),
        ("date", {"granularity": "day"}),
        ("redact", {"colour": "red"}),
    ],
)
def test_invalid_parameters_are_refused(op: str, params: dict[str, ParamValue]) -> None:
    with pytest.raises(OperatorError):
        get_operator(op).resolve_params(params)


def test_every_builtin_is_registered_and_extension_needs_no_core_change() -> None:
    assert {
        "keep", "redact", "partial", "cn_id", "mobile", "landline", "name", "address", "bank_card",
        "credit_code", "date", "age_bucket", "hmac_pseudonym", "ff1_id", "aes_gcm", "freetext",
    } <= set(OPERATORS)  # fmt: skip

    class Upper(Operator):
        name = "test_upper"

        def bind(self, params: Mapping[str, ParamValue], ctx: BindContext) -> MaskFn:
            return lambda v: str(v).upper()

    register_operator(Upper())
    try:
        assert mask_value("test_upper", "abc") == "ABC"
        with pytest.raises(OperatorError):
            register_operator(Upper())
    finally:
        del OPERATORS["test_upper"]


# --- laws: masked output never reveals more than the operator allows ---------------------------------


def _id_numbers() -> st.SearchStrategy[str]:
    body = st.from_regex(
        r"[1-6][0-9]{5}(19[5-9][0-9]|20[01][0-9])(0[1-9]|1[0-2])(0[1-9]|1[0-9]|2[0-8])[0-9]{3}",
        fullmatch=True,
    )
    return body.map(lambda b: b + mod_11_2.calc_check_digit(b))


@given(_id_numbers())
def test_cn_id_reveals_only_the_region(number: str) -> None:
    out = str(mask_value("cn_id", number))
    assert len(out) == 18
    assert out[:6] == number[:6]
    assert set(out[6:]) == {"*"}


@given(st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True))
def test_mobile_reveals_only_three_plus_four(number: str) -> None:
    out = str(mask_value("mobile", number))
    assert out == number[:3] + "****" + number[7:]


@given(st.text(min_size=0, max_size=40), st.integers(0, 10), st.integers(0, 10))
def test_partial_keeps_at_most_first_n_last_m_and_always_hides_something(text: str, n: int, m: int) -> None:
    out = str(mask_value("partial", text, keep_first=n, keep_last=m))
    assert len(out) == len(text)
    revealed = [i for i, (a, b) in enumerate(zip(text, out, strict=True)) if b != "*"]
    assert len(revealed) <= n + m
    assert all(i < n or i >= len(text) - m for i in revealed)
    if text:
        assert "*" in out


_SURNAMES = st.sampled_from(["王", "李", "欧阳", "司马", "诸葛", "张"])
_GIVEN = st.text(alphabet="建国明华娜丽伟强秀英", min_size=1, max_size=3)


@given(_SURNAMES, _GIVEN)
def test_name_keeps_the_surname_only(surname: str, given_name: str) -> None:
    full = surname + given_name
    out = str(mask_value("name", full))
    kept = out.rstrip("*")
    assert full.startswith(kept) and 1 <= len(kept) <= 2
    assert len(kept) <= len(surname)  # never a character of the given name


_ADDRESS = st.tuples(
    st.sampled_from(["浙江省", "四川省", "广西壮族自治区", ""]),
    st.sampled_from(["杭州市", "成都市", "南宁市", ""]),
    st.sampled_from(["余杭区", "安吉县", "武鸣区"]),
    st.sampled_from(["良渚街道", "天荒坪镇", "双桥乡", ""]),
    st.sampled_from(["新港村", "幸福社区", "余村", ""]),
    st.from_regex(r"[0-9]{1,2}组[0-9]{1,3}号", fullmatch=True),
)


@given(_ADDRESS, st.sampled_from(["province", "city", "county", "township", "village"]))
def test_address_generalisation_is_a_prefix_without_house_numbers(parts: tuple[str, ...], level: str) -> None:
    address = "".join(parts)
    out = str(mask_value("address", address, level=level))
    depth = ["province", "city", "county", "township", "village"].index(level)
    if out == REDACTED:  # nothing at or above the asked level: hidden, not shown
        assert not "".join(parts[: depth + 1])
        return
    assert out == "".join(parts[: depth + 1])
    assert address.startswith(out)
    assert not re.search(r"\d", out)
    assert "组" not in out and "号" not in out


@given(st.from_regex(r"[1-9][0-9]{12,18}", fullmatch=True))
def test_bank_card_reveals_six_plus_four(number: str) -> None:
    out = str(mask_value("bank_card", number))
    assert out[:6] == number[:6] and out[-4:] == number[-4:]
    assert set(out[6:-4]) == {"*"}


@given(st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2099, 12, 31)))
def test_date_generalisation_reveals_no_day(day: dt.date) -> None:
    assert mask_value("date", day.isoformat()) == f"{day.year:04d}"
    assert mask_value("date", day, granularity="month") == f"{day.year:04d}-{day.month:02d}"


@given(st.text(alphabet=string.printable + "张王省市", max_size=30))
def test_structured_operators_never_echo_unparseable_input(text: str) -> None:
    for op in ("cn_id", "mobile", "landline", "bank_card", "credit_code", "date"):
        out = mask_value(op, text)
        if out != REDACTED:
            assert out != text or text == ""


# --- fast paths answer exactly as the general parsers do ------------------------------------------------


def _address_by_pattern(text: str, level: str) -> str | None:
    m = _ADDRESS_PATTERN.match(text.strip())
    if m is None:
        return None
    depth = ADDRESS_LEVELS.index(level)
    return "".join(m.group(name) or "" for name in ADDRESS_LEVELS[: depth + 1]) or None


@given(
    st.text(alphabet="浙江省杭州市余杭区安吉县良渚街道镇乡村社区居委会组号路弄 0123456789１２", max_size=40),
    st.sampled_from(ADDRESS_LEVELS),
)
def test_address_generalisation_depends_only_on_the_text_before_the_first_digit(
    text: str, level: str
) -> None:
    assert generalise_address(text, level) == _address_by_pattern(text, level)


_ISO_LIKE = st.from_regex(r"[0-9０-９+ ]{4}-[0-9A-Z]{2}-[0-9 ]{2}", fullmatch=True)


@given(st.one_of(_ISO_LIKE, st.dates().map(dt.date.isoformat)), st.sampled_from(["year", "month"]))
def test_date_fast_path_agrees_with_the_general_parser(text: str, granularity: str) -> None:
    day = _parse_date(text)
    if day is None:
        expected: object = REDACTED
    else:
        expected = f"{day.year:04d}-{day.month:02d}" if granularity == "month" else f"{day.year:04d}"
    assert mask_value("date", text, granularity=granularity) == expected


@given(st.from_regex(r"[0-9１]{11}", fullmatch=True))
def test_mobile_fast_path_agrees_with_the_pattern(text: str) -> None:
    m = re.fullmatch(r"(?:\+?86|0086)?(1[3-9]\d{9})", text, re.ASCII)
    expected = REDACTED if m is None else m.group(1)[:3] + "****" + m.group(1)[7:]
    assert mask_value("mobile", text) == expected
